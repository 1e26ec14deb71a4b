"""Ephemeral frames across nodes: an assistant reply's `reply.started`/`reply.delta` pieces and
`typing` notices are produced on one node, but the session's subscribers may be on any node.

`FrameRelay.publish` hands a frame to this node's channels at once and, on PostgreSQL, queues it
for the others: a sender task sends the queue in batches (`SELECT pg_notify('chronicle_frames',
…)`, one transaction per batch) on a connection of its own; a listener task `LISTEN`s on another
and publishes what other nodes sent to this node's channels, where every stream checks it as it
checks a local frame (membership per reply).

The same carriage takes a request to cancel a reply to the node that leads (only it runs the
chat engine): `request_cancel` on the node that took the HTTP request, `on_cancel` on every
other node, where the engine cancels the reply if it is running there.

Only ephemeral frames travel this way, and they may be lost (a full queue, a payload over
PostgreSQL's 8000-byte limit, a dropped connection): a reply's stored outcome reaches every
node through its own projection of the log, as every committed frame does. A positioned
(committed) frame is never accepted from the relay, so the relay cannot duplicate, reorder or
forge what the feeds carry (ADR-042).

Any role that may connect to the database may also `NOTIFY`, so every payload is signed when it
is sent: an HMAC-SHA256 under a key derived from the nodes' shared secret key, over the sending
node, its sequence number (rising by one per payload), its clock in milliseconds and the frame. A
node ignores a payload whose signature does not check (`forged`), one whose number is not above
the last it took from that node (`replayed`), and one more than `FRESH_SECONDS` from its own
clock (`stale`), so a captured payload cannot be replayed either."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import time
from collections.abc import Callable
from uuid import UUID, uuid4

import psycopg
from prometheus_client import Counter

from infrastructure.storage.postgres_notifications import KEEPALIVES
from projections.frames import POSITIONED, session_channel

log = logging.getLogger(__name__)

FRAMES_CHANNEL = "chronicle_frames"
MAX_PAYLOAD_BYTES = 7999
"""PostgreSQL refuses a NOTIFY payload of 8000 bytes or more."""
BATCH = 200
_SEPARATOR = "\x1f"
_STORED = POSITIONED.decode()
_SESSION = session_channel("")
_MAC_CHARACTERS = 32
"""The signature's first 128 bits, hex."""
_SIGNING_OVERHEAD = _MAC_CHARACTERS + 32 + 20 + 20 + 5
"""The most a payload adds to its channel and body: the signature, the node, its sequence
number and its clock (up to 20 digits each) and five separators."""
_KEY_LABEL = b"chronicle frame relay v2"
"""What the relay's key is derived under; v2 since payloads carry a sequence number (a v1 payload
is refused as forged rather than misread)."""
FRESH_SECONDS = 30.0
"""How old a payload may be when it arrives; the nodes' clocks must agree that closely (NTP)."""
_CANCEL = "reply-cancel"
"""The relay's channel name for a request to cancel a reply (no stream's channel has it)."""

RELAYED_FRAMES = Counter(
    "chronicle_relayed_frames",
    "Ephemeral frames carried between nodes over PostgreSQL (sent, received, dropped; refused, forged, replayed, stale)",
    ["outcome"],
)


class FrameRelay:
    """This node's end of the relay; with no database URL (one SQLite node) it only publishes locally."""

    def __init__(
        self,
        database_url: str | None,
        secret_key: str,
        publish_local: Callable[[str, bytes], None],
        on_cancel: Callable[[UUID, UUID], object] = lambda session_id, reply_id: None,
        queue_frames: int = 10_000,
    ) -> None:
        self.node = uuid4().hex
        """Tells this node's own notifications (which it hears too) from the others'."""
        self._url = database_url
        self._key = hmac.new(secret_key.encode(), _KEY_LABEL, hashlib.sha256).digest()
        self._sequence = 0
        self._newest: dict[str, tuple[int, float]] = {}
        """Each other node's highest sequence number taken, and when: nothing at or below it is
        taken again. A node not heard from for three times `FRESH_SECONDS` is forgotten (whatever
        it sent is stale by then, with a margin)."""
        self._warned_at = 0.0
        self._local = publish_local
        self._on_cancel = on_cancel
        self._queue_frames = queue_frames
        self._queue: asyncio.Queue[tuple[str, str]] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.listening = asyncio.Event()

    def publish(self, channel: str, body: bytes) -> None:
        """Called on the event loop; never blocks: a frame that cannot be queued is dropped."""
        self._local(channel, body)
        self._enqueue(channel, body.decode())

    def _sign(self, signed: str) -> str:
        return hmac.new(self._key, signed.encode(), hashlib.sha256).hexdigest()[:_MAC_CHARACTERS]

    def _signed(self, channel: str, body: str) -> str:
        """The payload for a frame, signed as it is sent (so time in the queue does not age it)."""
        self._sequence += 1
        signed = _SEPARATOR.join((self.node, str(self._sequence), str(time.time_ns() // 1_000_000), channel, body))
        return f"{self._sign(signed)}{_SEPARATOR}{signed}"

    def _enqueue(self, channel: str, body: str) -> bool:
        if self._queue is None:
            return False
        if len(channel.encode()) + len(body.encode()) + _SIGNING_OVERHEAD > MAX_PAYLOAD_BYTES:
            RELAYED_FRAMES.labels("dropped").inc()
            return False
        try:
            self._queue.put_nowait((channel, body))
        except asyncio.QueueFull:
            RELAYED_FRAMES.labels("dropped").inc()
            return False
        return True

    def request_cancel(self, session_id: UUID, reply_id: UUID) -> bool:
        """Asks the other nodes to cancel a reply (the one that runs it does); False without a
        database (one SQLite node) or when the request cannot be queued."""
        return self._enqueue(_CANCEL, f"{session_id} {reply_id}")

    def start(self) -> None:
        if self._url is None:
            return
        self._queue = asyncio.Queue(self._queue_frames)
        self._tasks = [
            asyncio.get_running_loop().create_task(self._send(), name="frame-relay-send"),
            asyncio.get_running_loop().create_task(self._listen(), name="frame-relay-listen"),
        ]

    async def stop(self) -> None:
        self._queue = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    async def _connect(self, role: str) -> psycopg.AsyncConnection[tuple[object, ...]]:
        assert self._url is not None
        return await psycopg.AsyncConnection.connect(
            self._url, autocommit=True, connect_timeout=5, application_name=f"chronicle frame relay {role}", **KEEPALIVES
        )

    async def _send(self) -> None:
        """Sends what is queued, up to BATCH frames per transaction; a batch that fails is lost."""
        backoff = 0.1
        while True:
            try:
                async with await self._connect("sender") as conn:
                    backoff = 0.1
                    while True:
                        assert self._queue is not None
                        batch = [self._signed(*await self._queue.get())]
                        while len(batch) < BATCH and not self._queue.empty():
                            batch.append(self._signed(*self._queue.get_nowait()))
                        await conn.execute(
                            "SELECT pg_notify(%s, f.p) FROM unnest(%s::text[]) WITH ORDINALITY AS f(p, n) ORDER BY f.n",
                            (FRAMES_CHANNEL, batch),
                        )
                        RELAYED_FRAMES.labels("sent").inc(len(batch))
            except Exception as error:  # noqa: BLE001 - a lost connection, or anything else: the sender must go on
                log.warning("the frame relay cannot send (%r); reconnecting in %.1fs", error, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            try:
                async with await self._connect("listener") as conn:
                    await conn.execute(f"LISTEN {FRAMES_CHANNEL}")
                    self.listening.set()
                    async for notification in conn.notifies():
                        backoff = 0.1  # reset once a payload came through, not on connecting
                        try:
                            self._receive(notification.payload)
                        except Exception:  # noqa: BLE001 - no payload may stop the listener
                            self._warn("a relayed payload could not be handled", exc_info=True)
            except Exception as error:  # noqa: BLE001 - a lost connection, or a payload psycopg cannot decode
                self.listening.clear()
                self._warn(f"stopped listening ({error!r}); reconnecting in {backoff:.1f}s")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def _receive(self, payload: str) -> None:
        """Another node's ephemeral frame, to this node's channel; anything else is ignored."""
        mac, _, signed = payload.partition(_SEPARATOR)
        node, _, rest = signed.partition(_SEPARATOR)
        if node == self.node:
            return
        if not hmac.compare_digest(mac.encode(), self._sign(signed).encode()):
            RELAYED_FRAMES.labels("forged").inc()
            self._warn("a relayed payload's signature does not check: another key, or not from a node")
            return
        sequence, sent_ms, channel, body = rest.split(_SEPARATOR, 3)  # signed by a node, so as it wrote it
        if not self._taken(node, int(sequence), int(sent_ms)):
            return
        if channel == _CANCEL:
            self._cancel(body)
            return
        if not channel.startswith(_SESSION) or not body.startswith("{") or body.startswith(_STORED):
            RELAYED_FRAMES.labels("refused").inc()
            return
        RELAYED_FRAMES.labels("received").inc()
        with contextlib.suppress(RuntimeError):  # the channels plugin has stopped: the server is shutting down
            self._local(channel, body.encode())

    def _taken(self, node: str, sequence: int, sent_ms: int) -> bool:
        """A signed payload is taken once, and only while fresh."""
        now = time.time()
        newest = self._newest.get(node)
        if newest is not None and sequence <= newest[0]:
            RELAYED_FRAMES.labels("replayed").inc()
            return False
        off = now - sent_ms / 1000
        if abs(off) > FRESH_SECONDS:
            RELAYED_FRAMES.labels("stale").inc()
            self._warn(f"a relayed payload is {off:.0f} s off this node's clock (more than {FRESH_SECONDS:g}); are the clocks in sync?")
            return False
        if newest is None:  # a node not heard from before: forget those long silent
            self._newest = {n: taken for n, taken in self._newest.items() if now - taken[1] < 3 * FRESH_SECONDS}
        self._newest[node] = (sequence, now)
        return True

    def _warn(self, message: str, exc_info: bool = False) -> None:
        """At most one warning a minute: a misconfigured or hostile sender could send thousands."""
        now = time.monotonic()
        if now - self._warned_at >= 60.0 or self._warned_at == 0.0:
            self._warned_at = now
            log.warning("frame relay: %s (further ones for a minute are only counted)", message, exc_info=exc_info)

    def _cancel(self, body: str) -> None:
        try:
            session_id, reply_id = (UUID(part) for part in body.split(" "))
        except ValueError:
            RELAYED_FRAMES.labels("refused").inc()
            return
        RELAYED_FRAMES.labels("received").inc()
        try:
            self._on_cancel(session_id, reply_id)
        except Exception:  # noqa: BLE001 - the listener must go on relaying frames
            log.exception("a relayed request to cancel reply %s failed", reply_id)
