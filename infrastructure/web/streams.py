"""Live streams over WebSocket: a session's frames, and a user's own frames.

On connect the stream subscribes to its channel first, then replays the stored frames after
the client's position from the read model, then forwards live frames, skipping any it has
already sent: so nothing is missed and nothing is repeated, even for frames committed while
the client connects. Projectors publish only after their transaction commits, so a frame never
arrives before a query could read its data.

Each client's backlog is bounded: a client whose backlog is at `CHRONICLE_WS_QUEUE` frames at two
checks a second apart cannot keep up and is closed with 4429, told the position to resume from,
so it never slows the others or grows the server's memory without bound.

Every frame, stored or ephemeral, reaches only a current member: a `member.removed` frame about
the client ends the stream whatever position it resumed from, and an assistant reply's
ephemeral frames are sent only after membership was read for that reply. An `after` beyond the
log's head is treated as the head.

A browser authenticates with its sign-in cookie; such a stream is accepted only from the
server's own origin or `CHRONICLE_ALLOWED_ORIGINS` (cross-site WebSocket hijacking).

Close codes: 4400 bad request (e.g. `after` is not a position), 4401 missing or invalid token
(also when the token expires, or the user is disabled, while the stream is open), 4403 not a
member of the session (also sent when the client is removed from it), or a cookie from a foreign
origin, 4429 too slow, 1013 try again later (the token names a user this node's replica has not
caught up with in time, ADR-041).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

import anyio
import msgspec
import structlog
from litestar import WebSocket, websocket
from litestar.channels import ChannelsPlugin
from litestar.exceptions import HTTPException, NotAuthorizedException, WebSocketDisconnect
from litestar.security.jwt import Token

from infrastructure.metrics import FRAMES_DROPPED, FRAMES_SENT, SLOW_CONSUMER_CLOSES, WEBSOCKETS, WEBSOCKETS_OPENED
from infrastructure.web.auth import AUTH_COOKIE, Principal, PrincipalCache, token_generation
from infrastructure.web.frame_relay import FrameRelay
from infrastructure.web.request_context import SERVER_SEND
from projections.frames import (
    POSITIONED,
    Frame,
    decode_frame,
    frame_position,
    session_channel,
    user_channel,
)
from projections.members import is_member
from projections.session_feed import session_frames_after
from projections.storage import ReadConnection, Row
from projections.user_feed import user_frames_after
from projections.users import user_by_id

log = structlog.stdlib.get_logger(__name__)

CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_TOO_SLOW = 4429
CLOSE_TRY_AGAIN = 1013
"""RFC 6455's "try again later": the user could not be checked now (see `_admit`)."""
REPLAY_PAGE = 500
CLOSE_TIMEOUT = 10
ACCESS_CHECK_SECONDS = 2.0
BACKLOG_CHECK_SECONDS = 1.0
TYPING_SECONDS = 2.0


REPLAY = b"replay"
"""Put in a stream's queue: replay the stored frames after the last one sent."""


class OpenStream:
    """One open stream as `LiveStreams` watches it: its channel queue, its token, the last
    position sent, and how to end it (its task group's cancel scope)."""

    __slots__ = ("subscriber", "token", "expires_at", "channel", "last", "over", "outcome", "_scope")

    def __init__(self, subscriber: Any, token: Token, channel: str, after: int) -> None:
        self.subscriber = subscriber
        self.token = token
        self.expires_at = token.exp.timestamp()
        self.channel = channel
        self.last = after
        self.over = 0
        """Consecutive backlog checks that found the queue at its limit."""
        self.outcome: tuple[int, str] | None = None
        self._scope: anyio.CancelScope | None = None

    def run_in(self, scope: anyio.CancelScope) -> None:
        self._scope = scope

    def end(self, code: int, reason: str) -> None:
        """Closes the stream with `code` (once its tasks have stopped)."""
        if self.outcome is None:
            self.outcome = (code, reason)
        if self._scope is not None:
            self._scope.cancel()


class LiveStreams:
    """The streams open in this server, and the one watch over all of them.

    An idle stream costs no wake-ups of its own: a single task checks every stream's backlog
    each second and each stream's token and user every two seconds (ADR-047). Per stream, only
    the task waiting for frames and the one waiting for what the client sends remain, both
    asleep until something arrives."""

    def __init__(self, principals: PrincipalCache | None = None, queue_limit: int = 1000) -> None:
        self._streams: set[OpenStream] = set()
        self._principals = principals
        self._limit = queue_limit

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: OpenStream) -> None:
        self._streams.add(stream)

    def discard(self, stream: OpenStream) -> None:
        self._streams.discard(stream)

    def replay_missed_frames(self) -> None:
        """Every open stream replays from its position: the projection process restarted, and
        the frames of a batch it had committed but not reported were never published."""
        for stream in list(self._streams):
            stream.subscriber.put_nowait(REPLAY)

    async def watch(self) -> None:
        """Runs for the life of the server: the backlog and the access checks."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_backlogs)
            tg.start_soon(self._watch_access)

    def check_backlogs(self) -> None:
        """A client whose backlog is at the limit at two checks in a row cannot keep up (one
        that stops reading blocks `send` mid-frame); a burst of frames from one read-model
        batch that it drains in time is not held against it. Expired tokens end here too."""
        now = time.time()
        for stream in list(self._streams):
            if stream.outcome is not None:
                continue
            if stream.expires_at <= now:
                stream.end(CLOSE_UNAUTHORIZED, "the token has expired; reconnect with a new one")
                continue
            backlog = stream.subscriber.qsize
            stream.over = stream.over + 1 if backlog >= self._limit else 0
            if stream.over >= 2:
                stream.end(CLOSE_TOO_SLOW, f"too slow; reconnect with after={stream.last}")
                SLOW_CONSUMER_CLOSES.inc()
                FRAMES_DROPPED.labels("slow_consumer").inc(backlog)
                log.info("stream closed: the client is too slow", channel=stream.channel, backlog=backlog, resume_after=stream.last)

    async def check_access(self) -> None:
        """A stream lives no longer than its user's access (a disabled user, or a token of an
        older generation, is cut off within the principal cache's few seconds, as on HTTP):
        one look-up per user and token generation, however many streams they hold."""
        if self._principals is None:
            return
        allowed: dict[tuple[str | None, int | None], bool] = {}
        for stream in list(self._streams):
            if stream.outcome is not None:
                continue
            key = (stream.token.sub, token_generation(stream.token))
            if key not in allowed:
                try:
                    allowed[key] = await self._principals.principal(stream.token) is not None
                except Exception:  # noqa: BLE001 - not known now (the database, a replica behind): checked next round
                    log.warning("a stream's access could not be checked", channel=stream.channel, exc_info=True)
                    allowed[key] = True
            if not allowed[key]:
                stream.end(CLOSE_UNAUTHORIZED, "access revoked")

    async def _watch_backlogs(self) -> None:
        while True:
            await anyio.sleep(BACKLOG_CHECK_SECONDS)
            try:
                self.check_backlogs()
            except Exception:  # noqa: BLE001 - one failed check must not end the watch over every stream
                log.exception("the streams' backlog check failed")

    async def _watch_access(self) -> None:
        while True:
            await anyio.sleep(ACCESS_CHECK_SECONDS)
            try:
                await self.check_access()
            except Exception:  # noqa: BLE001 - e.g. the database briefly unreachable: checked again next time
                log.exception("the streams' access check failed")


class FrameSender:
    """Sends text messages to one WebSocket through the ASGI server's own `send`.

    A frame is JSON-encoded once, by its projector; every subscriber gets the same bytes,
    decoded to the `str` that ASGI asks for text messages (≈ 0.1 µs for a frame). Litestar's
    `send_data` and the wrappers around its `send` (the WebSocket's state check, two exception
    middlewares, the request context) do nothing for a frame but cost a coroutine each, per frame
    and subscriber; this skips them (ADR-040). A closed connection raises the server's disconnect
    error (an `OSError`)."""

    def __init__(self, socket: WebSocket[Any, Any, Any]) -> None:
        self._send = socket.scope["state"][SERVER_SEND]

    async def text(self, body: bytes | str) -> None:
        await self._send({"type": "websocket.send", "text": body if isinstance(body, str) else body.decode()})


def _same_origin(socket: WebSocket[Any, Any, Any]) -> bool:
    """A browser always sends `Origin` on a WebSocket; it must be this server or an allowed one."""
    origin = socket.headers.get("origin")
    if origin is None:
        return False
    allowed = socket.app.state.settings.allowed_origins
    own = {f"{scheme}://{socket.headers.get('host', '')}" for scheme in ("http", "https")}
    return origin in own or origin in allowed


async def _principal(socket: WebSocket[Any, Any, Any]) -> tuple[Principal, Token] | None | bool:
    """The caller and their verified token; False for a cookie from a foreign origin."""
    token = socket.query_params.get("token")
    if not token:
        header = socket.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else None
    if not token:
        token = socket.cookies.get(AUTH_COOKIE)
        if token and not _same_origin(socket):
            return False
    if not token:
        return None
    jwt = socket.app.state.jwt
    try:
        decoded = jwt.token_cls.decode(token, jwt.token_secret, jwt.algorithm)
    except NotAuthorizedException:
        return None
    principal = await socket.app.state.principals.principal(decoded)
    return None if principal is None else (principal, decoded)


def _after(socket: WebSocket[Any, Any, Any]) -> int | None:
    raw = socket.query_params.get("after", "0")
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None


def _client_message_type(message: str) -> str | None:
    """The `type` of what a client sent (`ping`, `typing`); anything else, however malformed
    or deeply nested, is None and ignored."""
    if message.strip() == "ping":
        return "ping"
    try:
        decoded = _decode_ephemeral(message)
    except (msgspec.DecodeError, RecursionError, ValueError):
        return None
    kind = decoded.get("type") if isinstance(decoded, dict) else None
    return kind if isinstance(kind, str) else None


async def _stream(
    socket: WebSocket[Any, Any, Any],
    channel: str,
    after: int,
    replay: Callable[[int], Awaitable[list[Row]]],
    token: Token,
    me: str,
    still_allowed: Callable[[Frame], Awaitable[bool]] | None = None,
    is_member_now: Callable[[], Awaitable[bool]] | None = None,
    on_typing: Callable[[], None] | None = None,
) -> None:
    """Subscribes, replays, then forwards live frames. `still_allowed` is asked about every
    `member.removed` frame, even one before the resume position: the stream closes with 4403
    when the client may no longer see it. `is_member_now` is asked once per assistant reply
    before its first ephemeral frame goes out."""
    channels: ChannelsPlugin = socket.app.state.channels
    subscriber = await channels.subscribe([channel])
    live: LiveStreams = socket.app.state.live_streams
    stream = OpenStream(subscriber, token, channel, after)
    WEBSOCKETS.inc()
    WEBSOCKETS_OPENED.inc()
    sent_stored, sent_ephemeral = FRAMES_SENT.labels("stored"), FRAMES_SENT.labels("ephemeral")
    gone = False
    finished_replies: set[str] = set()
    admitted_replies: set[str] = set()
    sender = FrameSender(socket)

    def removed() -> bool:
        stream.end(CLOSE_FORBIDDEN, "removed from the session")
        return False

    async def deliver(body: bytes) -> bool:
        """Sends one frame; False when the stream must end (the client was removed)."""
        if not body.startswith(POSITIONED):  # ephemeral (reply.started, reply.delta, typing)
            frame = _ephemeral(body)
            reply_id = str(frame.get("reply_id", ""))
            if reply_id in finished_replies:
                return True
            if is_member_now is not None and reply_id not in admitted_replies:
                if not await is_member_now():
                    return removed()
                if reply_id:
                    admitted_replies.add(reply_id)
            if frame.get("type") == "typing" and frame.get("user_id") == me:
                return True
            await sender.text(body)
            sent_ephemeral.inc()
            return True
        position = frame_position(body)
        head = body[:64]  # `{"position":N,"type":"…"`: the type is read without decoding the frame
        if position > stream.last:
            await sender.text(body)
            sent_stored.inc()
            stream.last = position
            if b'"type":"reply.' in head:
                finished_replies.add(str(decode_frame(body).data.get("reply_id", "")))
        if still_allowed is not None and b'"type":"member.removed"' in head and not await still_allowed(decode_frame(body)):
            return removed()
        return True

    async def catch_up() -> bool:
        """Sends the stored frames after the last one sent; False when the stream must end."""
        while True:
            rows = await replay(stream.last)
            for row in rows:
                if not await deliver(row["body"]):
                    return False
            if len(rows) < REPLAY_PAGE:
                return True

    async def send() -> None:
        """Replays, then forwards live frames straight from the channel's queue (which fills
        from the moment of subscribing, replay included); replays again when told that live
        frames may have been lost."""
        if await catch_up():
            async for body in subscriber.iter_events():
                if not await (catch_up() if body is REPLAY else deliver(body)):
                    break
        tg.cancel_scope.cancel()

    async def receive() -> None:
        """Answers application-level pings, passes typing notices on; returns when the client goes away."""
        nonlocal gone
        try:
            while True:
                kind = _client_message_type(await socket.receive_data(mode="text"))
                if kind == "ping":
                    await sender.text('{"type":"pong"}')
                elif kind == "typing" and on_typing is not None:
                    on_typing()
        except WebSocketDisconnect:
            gone = True
        tg.cancel_scope.cancel()

    try:
        try:
            # Two tasks per stream, both asleep while it is idle: this one sends, the other
            # receives; the backlog, the token and the user's access are watched by `live`.
            async with anyio.create_task_group() as tg:
                stream.run_in(tg.cancel_scope)
                live.add(stream)
                tg.start_soon(receive)
                await send()
        except* (WebSocketDisconnect, OSError):
            gone = True
        await channels.unsubscribe(subscriber, channel)
        if stream.outcome is not None and not gone:
            code, reason = stream.outcome
            with anyio.move_on_after(CLOSE_TIMEOUT):
                await socket.close(code, reason)  # waits until the client has read what was already sent
    finally:
        WEBSOCKETS.dec()
        live.discard(stream)
        await channels.unsubscribe(subscriber, channel)


def _ephemeral(body: bytes) -> dict[str, Any]:
    try:
        frame = _decode_ephemeral(body)
    except (msgspec.DecodeError, RecursionError, ValueError):
        return {}
    return frame if isinstance(frame, dict) else {}


_decode_ephemeral = msgspec.json.Decoder(Any).decode


async def _refuse(socket: WebSocket[Any, Any, Any], code: int, reason: str) -> None:
    await socket.accept()
    await socket.close(code, reason)


async def _admit(socket: WebSocket[Any, Any, Any]) -> tuple[Principal, Token, int] | None:
    """The caller, their token's expiry and the position to resume after; refuses the
    connection (4401, 4400, or 1013 when its user cannot be checked now) otherwise."""
    try:
        caller = await _principal(socket)
    except HTTPException as refused:  # this node's replica is behind the token (503), or a database error
        await _refuse(socket, CLOSE_TRY_AGAIN, str(refused.detail)[:120])
        return None
    if caller is False:
        await _refuse(socket, CLOSE_FORBIDDEN, "a signed-in browser may open streams only from this site")
        return None
    if caller is None or caller is True:
        await _refuse(socket, CLOSE_UNAUTHORIZED, "missing or invalid token")
        return None
    after = _after(socket)
    if after is None:
        await _refuse(socket, CLOSE_BAD_REQUEST, "after must be a position")
        return None
    head = await anyio.to_thread.run_sync(socket.app.state.write.runner.head)
    return caller[0], caller[1], min(after, head)


async def _typing_notice(db: ReadConnection, sid: str, me: str) -> bytes:
    """The frame the other members get when this user types; built once per stream (the user's
    row is not kept for the stream's life)."""
    user = await user_by_id(db, me)
    return msgspec.json.encode({"session_id": sid, "type": "typing", "user_id": me, "display_name": user["display_name"] if user else ""})


@websocket("/api/sessions/{session_id:uuid}/stream", exclude_from_auth=True)
async def session_stream(socket: WebSocket[Any, Any, Any], session_id: UUID) -> None:
    """Every frame of the session after `?after=POSITION`, then live. The sign-in cookie,
    `?token=` or a bearer header. The client may send `{"type":"typing"}`; the other members get
    an ephemeral `typing` frame."""
    admitted = await _admit(socket)
    if admitted is None:
        return
    principal, token, after = admitted
    db = socket.app.state.db
    sid, me = str(session_id), str(principal.id)
    if not await is_member(db, sid, me):
        write = socket.app.state.write
        head = await anyio.to_thread.run_sync(write.runner.head)
        try:
            await socket.app.state.progress.wait(("session_members",), head)
        except Exception:  # noqa: BLE001 - a lagging read model reads as "not a member"
            pass
        if not await is_member(db, sid, me):
            return await _refuse(socket, CLOSE_FORBIDDEN, "not a member of this session")
    await socket.accept()
    relay: FrameRelay = socket.app.state.relay
    typing = await _typing_notice(db, sid, me)
    typed_at = 0.0

    async def still_allowed(frame: Frame) -> bool:
        """A removal of someone else, or an old one (the client was added back), lets it stay."""
        return frame.data.get("user_id") != me or await is_member(db, sid, me)

    def on_typing() -> None:
        """At most one typing notice per connection every TYPING_SECONDS; never stored."""
        nonlocal typed_at
        now = time.monotonic()
        if now - typed_at >= TYPING_SECONDS:
            typed_at = now
            relay.publish(session_channel(sid), typing)  # to this node's subscribers and the other nodes

    await _stream(
        socket,
        session_channel(sid),
        after,
        lambda last: session_frames_after(db, sid, last, REPLAY_PAGE),
        token,
        me,
        still_allowed,
        lambda: is_member(db, sid, me),
        on_typing,
    )


@websocket("/api/stream", exclude_from_auth=True)
async def user_stream(socket: WebSocket[Any, Any, Any]) -> None:
    """Everything about the user's sessions (new sessions, invitations, renames, members,
    archiving) after `?after=POSITION`, then live."""
    admitted = await _admit(socket)
    if admitted is None:
        return
    principal, token, after = admitted
    await socket.accept()
    db, me = socket.app.state.db, str(principal.id)
    await _stream(socket, user_channel(me), after, lambda last: user_frames_after(db, me, last, REPLAY_PAGE), token, me)
