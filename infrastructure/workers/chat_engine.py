"""The chat engine: follows the event log and has the assistant answer every user message posted
in a session whose assistant is on.

It follows the log with a `LogFollower` (position `chat_engine` in the read store's tracking
table, a low-water mark: the position before the oldest message whose reply is not yet recorded),
so after a restart it skips messages that already have an outcome and answers the rest. A
reply's id derives from the message it answers, so the event store holds at most one outcome per
message: none is ever answered twice.

While a reply is produced its pieces go to the session's channel as ephemeral frames
(`reply.started`, `reply.delta` with a sequence number); the outcome is stored once, as
`AssistantReplyCompleted` (completed or cancelled, with provider, model, token counts, latency
and sources) or `AssistantReplyFailed` (with a reason), and reaches subscribers as a stored frame.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import replace
from typing import Any
from uuid import UUID

import anyio
import msgspec
import structlog
from eventsourcing.application import AggregateNotFoundError
from opentelemetry import trace

from application.assistant import (
    AssistantProvider,
    RecordReply,
    RecordReplyFailure,
    ReplyRequest,
    ReplyUsage,
    wants_reply,
)
from application.chronicle import Chronicle
from application.command_bus import CommandBus
from domain.assistant_reply import reply_id_for
from domain.chat_session import CONTENT_MAX, ChatSession
from domain.identity import new_id
from infrastructure.metrics import REPLIES, REPLIES_IN_FLIGHT, REPLY_SECONDS
from infrastructure.storage.event_reading import EventDecoder, log_reader
from infrastructure.storage.read_store import SQLiteReadStore
from infrastructure.workers.log_follower import Found, LogFollower, recorded_with_retries
from infrastructure.workers.threads import run_in_thread
from projections.frames import session_channel

log = structlog.stdlib.get_logger(__name__)
tracer = trace.get_tracer("chronicle.assistant")

ENGINE = "chat_engine"
ASSISTANT_ACTOR = "assistant"
_POSTED = "domain.message:Message.MessagePosted"
_TOPICS = (
    _POSTED,
    "domain.chat_session:ChatSession.SessionStarted",
    "domain.chat_session:ChatSession.AssistantSettingChanged",
)
_SCAN_LIMIT = 500
_encode = msgspec.json.Encoder().encode


class _StoredId(msgspec.Struct):
    """An id as the log stores it (`{"_type_": "uuid_hex", "_data_": hex}`, `event_encoding`)."""

    hex: str = msgspec.field(name="_data_")


class _PostedHead(msgspec.Struct):
    """The two fields of a stored `MessagePosted` that decide whether the assistant may answer it."""

    session_id: _StoredId
    role: str


_peek_posted = msgspec.json.Decoder(_PostedHead).decode


class ChatEngine:
    def __init__(
        self,
        app: Chronicle,
        bus: CommandBus,
        tracking: SQLiteReadStore,
        provider: AssistantProvider,
        publish: Callable[[str, bytes], None],
        *,
        concurrency: int = 4,
        timeout_seconds: float = 60.0,
        may_reply: Callable[[str], Awaitable[bool]] | None = None,
        grounded_at: Callable[[int], Awaitable[None]] | None = None,
        answers: Callable[[str], bool] = wants_reply,
    ) -> None:
        """`may_reply(user_id)` says whether the asker's replies-per-day quota has room; when it
        has not, the reply is recorded as failed (`quota_exceeded`) without asking the provider.
        `grounded_at(position)` returns once the read models the provider reads (messages,
        search) hold everything up to the question's position, so that a reply never misses
        a message posted just before the question."""
        self._app = app
        self._log = log_reader(app.recorder)
        self._bus = bus
        self._provider = provider
        self._publish = publish
        self._timeout = timeout_seconds
        self._follower = LogFollower(ENGINE, tracking, self._unanswered_after, self._answer, concurrency=concurrency)
        self._sessions: dict[UUID, UUID] = {}
        self._assistant_on: dict[UUID, bool] = {}
        self._cancelled: set[UUID] = set()
        self._streaming: set[UUID] = set()
        """Replies whose provider is streaming: only then may a cancel stop the job (before, it
        would end it with no outcome; after, it would interrupt the recording)."""
        self._may_reply = may_reply
        self._grounded_at = grounded_at
        self._answers = answers

    def start(self) -> None:
        """Starts (or starts again, on a node that leads once more: what it learnt of the
        sessions' assistant settings may be stale, so it is learnt again)."""
        self._assistant_on.clear()
        self._follower.start()

    async def stop(self) -> None:
        """Stops following and abandons replies in progress without recording them: they are
        answered again after the next start."""
        await self._follower.stop()

    def wake(self) -> None:
        self._follower.wake()

    def cancel(self, session_id: UUID, reply_id: UUID) -> bool:
        """Stops a reply in progress in that session; its text so far is recorded as a
        cancelled reply."""
        job = self._follower.jobs.get(reply_id)
        if job is None or job.done() or self._sessions.get(reply_id) != session_id or reply_id not in self._streaming:
            return False
        self._cancelled.add(reply_id)
        job.cancel()
        return True

    def _unanswered_after(self, after: int) -> tuple[list[Found[tuple[Any, int]]], int, bool]:
        """Reads (in a worker thread) the user messages after `after` that sessions with the
        assistant on still wait on, the position the scan reached, and whether that is short of
        the head (at most `_SCAN_LIMIT` rows a scan). Only the topics that
        matter are read; each session's assistant setting is learnt from its events as they
        pass (so a message is answered by the setting in force when it was posted), and loaded
        once from the store for a session started before the scan began. What a scan learnt
        is kept only if the scan completes, so a scan that fails is repeated from scratch."""
        head = self._app.recorder.max_notification_id() or 0
        rows = self._log.rows_after(after, _SCAN_LIMIT, topics=_TOPICS, stop=head)
        keys = getattr(self._app.mapper, "keys", None)
        cached = (lambda subject: keys.cipher(subject, create=False)) if keys is not None else None  # as the mapper finds keys
        decode = EventDecoder(keys, cipher_of=cached).decode
        learnt: dict[UUID, bool] = {}
        found: list[Found[tuple[Any, int]]] = []
        for position, originator_id, version, topic, state in rows:
            if topic != _POSTED:
                setting = decode(originator_id, version, topic, state)
                learnt[setting.originator_id] = setting.assistant
                continue
            try:
                posted = _peek_posted(state)  # most posts are passed over: nothing else of them is decoded or opened
            except msgspec.ValidationError:  # a post stored in another shape (an older version): decoded as it is
                event = decode(originator_id, version, topic, state)
                posted = _PostedHead(_StoredId(event.session_id.hex), event.role)
            if posted.role != "user" or not self._assistant_in(UUID(posted.session_id.hex), learnt):
                continue
            event = decode(originator_id, version, topic, state)
            if self._answers(event.content) and not self._answered(event.originator_id):
                found.append(Found(position, reply_id_for(event.originator_id), (event, position)))
        self._assistant_on.update(learnt)
        short = len(rows) == _SCAN_LIMIT
        return found, rows[-1][0] if short else head, short

    def _assistant_in(self, session_id: UUID, learnt: dict[UUID, bool]) -> bool:
        if session_id in learnt:
            return learnt[session_id]
        if session_id not in self._assistant_on:
            try:
                session = self._app.repository.get(session_id)
            except AggregateNotFoundError:
                return False
            learnt[session_id] = isinstance(session, ChatSession) and session.assistant
            return learnt[session_id]
        return self._assistant_on[session_id]

    def _answered(self, message_id: UUID) -> bool:
        return self.has_outcome(reply_id_for(message_id))

    def has_outcome(self, reply_id: UUID) -> bool:
        """Whether the log holds the reply's outcome (completed, cancelled or failed: both kinds
        share the reply's id), read from the event store, which every node shares, not from
        a read model that may lag. One indexed read, nothing decoded. Blocks: call it from a
        worker thread."""
        return bool(self._app.recorder.select_events(reply_id, limit=1))

    def _question(self, message_id: UUID) -> str | None:
        """The question as it reads now (edited since it was posted, perhaps), or None once it is
        deleted: a reply that waited behind others must not quote what its author took back.
        Blocks: call it from a worker thread."""
        try:
            message = self._app.repository.get(message_id)
        except AggregateNotFoundError:
            return None
        return None if message.deleted else message.content

    async def _grounded(self, position: int) -> bool:
        """Whether the read models the reply searches have reached the question. Behind them, a
        reply could quote what was deleted or detached since (a stopped projector stays behind),
        so it fails instead."""
        if self._grounded_at is None:
            return True
        try:
            await self._grounded_at(position)
        except Exception:  # noqa: BLE001 - ReadModelBehind, or the read store unreadable
            log.warning("read models behind the question; the reply fails", position=position)
            return False
        return True

    def _frame(self, session_id: str, **fields: Any) -> None:
        """Ephemeral frames are best effort: if they cannot be published (the server is
        shutting down), the reply goes on and its stored outcome still reaches clients."""
        try:
            self._publish(session_channel(session_id), _encode({"session_id": session_id, **fields}))
        except RuntimeError:
            log.debug("reply frame not published", exc_info=True)

    async def _answer(self, found: tuple[Any, int]) -> bool:
        """Produces and records the reply; True once its outcome is stored."""
        posted, position = found
        reply_id = reply_id_for(posted.originator_id)
        session_id = str(posted.session_id)
        self._sessions[reply_id] = posted.session_id
        REPLIES_IN_FLIGHT.inc()
        correlation_id = str(new_id())
        structlog.contextvars.bind_contextvars(correlation_id=correlation_id)  # this task's context only
        started = time.perf_counter()
        span = tracer.start_span("assistant reply", attributes={"chronicle.correlation_id": correlation_id})
        try:
            grounded = await self._grounded(position)  # before the question is read: a deletion meanwhile counts
            question = await run_in_thread(self._question, posted.originator_id)
            if question is None or not self._answers(question):  # deleted, or edited into what gets no reply: nothing to record
                return True
            request = ReplyRequest(posted.session_id, posted.originator_id, posted.author_id, question, position)
            if self._may_reply is not None and not await self._may_reply(str(posted.author_id)):
                outcome: RecordReply | RecordReplyFailure = RecordReplyFailure(
                    posted.originator_id,
                    posted.session_id,
                    "quota_exceeded",
                    "your assistant replies per day are used up; they reset at midnight UTC",
                    "",
                )
            elif not grounded:
                outcome = RecordReplyFailure(
                    posted.originator_id,
                    posted.session_id,
                    "timeout",
                    "the search tables were behind the question; ask again in a moment",
                    "",
                )
            else:
                with trace.use_span(span):
                    outcome = await self._produce(request, session_id, reply_id)
            recorded_outcome = replace(outcome, asker_id=posted.author_id)  # the reply is sealed with the asker's key
            label = _outcome_label(recorded_outcome)
            span.set_attribute("chronicle.reply.outcome", label)

            async def record() -> None:
                with trace.use_span(span):
                    await self._bus.execute(recorded_outcome, ASSISTANT_ACTOR, correlation_id)

            recorded = await recorded_with_retries(record, f"the reply to {posted.originator_id}")
            if recorded:
                seconds = time.perf_counter() - started
                REPLIES.labels(label).inc()
                REPLY_SECONDS.labels(label).observe(seconds)
                facts = {"reply_id": str(reply_id), "session_id": session_id, "outcome": label, "duration_ms": round(seconds * 1000)}
                if isinstance(recorded_outcome, RecordReplyFailure):
                    log.warning("assistant reply failed", reason=recorded_outcome.reason, provider=self._provider.name, **facts)
                else:
                    log.info("assistant replied", provider=self._provider.name, **facts)
            return recorded
        finally:
            span.end()
            REPLIES_IN_FLIGHT.dec()
            self._sessions.pop(reply_id, None)
            self._cancelled.discard(reply_id)

    async def _produce(self, request: ReplyRequest, session_id: str, reply_id: UUID) -> RecordReply | RecordReplyFailure:
        usage = ReplyUsage()
        parts: list[str] = []
        started = time.perf_counter()
        self._frame(session_id, type="reply.started", reply_id=str(reply_id), reply_to=str(request.message_id))

        def completed(status: str) -> RecordReply:
            return RecordReply(
                request.message_id,
                request.session_id,
                "".join(parts),
                status,
                self._provider.name,
                usage.model,
                usage.prompt_tokens,
                usage.completion_tokens,
                int((time.perf_counter() - started) * 1000),
                tuple(usage.sources),
            )

        def failed(reason: str, detail: str) -> RecordReplyFailure:
            """With the text so far and what it drew on: sealed with their keys too."""
            return RecordReplyFailure(request.message_id, request.session_id, reason, detail, "".join(parts), sources=tuple(usage.sources))

        self._streaming.add(reply_id)
        room = CONTENT_MAX  # a reply is a message: no longer than people's may be
        try:
            with anyio.fail_after(self._timeout):
                async with aclosing(self._provider.reply(request, usage)) as pieces:  # closed at once if left early
                    async for piece in pieces:
                        parts.append(piece[:room])
                        room -= len(parts[-1])
                        if parts[-1]:
                            self._frame(session_id, type="reply.delta", reply_id=str(reply_id), seq=len(parts), delta=parts[-1])
                        if len(piece) > len(parts[-1]):
                            detail = f"the reply passed {CONTENT_MAX:,} characters"
                            return failed("invalid_response", detail)
        except TimeoutError:
            return failed("timeout", f"no complete reply within {self._timeout:g} s")
        except asyncio.CancelledError:
            if reply_id in self._cancelled:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                return completed("cancelled")
            raise
        except Exception as error:  # noqa: BLE001 - every failure is recorded with its reason
            log.warning("assistant provider failed", error_type=type(error).__name__, error=str(error)[:300])
            return failed("provider_error", str(error))
        finally:
            self._streaming.discard(reply_id)
        if not parts:
            return RecordReplyFailure(request.message_id, request.session_id, "invalid_response", "the provider returned no text", "")
        return completed("completed")


def _outcome_label(outcome: RecordReply | RecordReplyFailure) -> str:
    """A used-up quota is a refusal, not a failure: the assistant failure alert counts `failed`."""
    if isinstance(outcome, RecordReply):
        return outcome.status
    return "quota_exceeded" if outcome.reason == "quota_exceeded" else "failed"
