"""The chat engine: follows the event log and has the assistant answer every user message posted
in a session whose assistant is on.

It keeps its own position (`chat_engine` in the read store's tracking table) as a low-water
mark: the position before the oldest message whose reply is not yet recorded. After a restart it
resumes from there, skips messages that already have an outcome, and answers the rest, so no
message is skipped. A reply's id derives from the message it answers, so the event store holds
at most one outcome per message: none is ever answered twice.

While a reply is produced its pieces go to the session's channel as ephemeral frames
(`reply.started`, `reply.delta` with a sequence number); the outcome is stored once, as
`AssistantReplyCompleted` (completed or cancelled, with provider, model, token counts, latency
and sources) or `AssistantReplyFailed` (with a reason), and reaches subscribers as a stored frame.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any
from uuid import UUID

import anyio
import msgspec
from eventsourcing.application import AggregateNotFoundError

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
from domain.chat_session import ChatSession
from infrastructure.metrics import REPLIES, REPLIES_IN_FLIGHT
from infrastructure.storage.read_store import SQLiteReadStore
from projections.frames import session_channel

log = logging.getLogger(__name__)

ENGINE = "chat_engine"
ASSISTANT_ACTOR = "assistant"
_POSTED = "domain.message:Message.MessagePosted"
_TOPICS = (
    _POSTED,
    "domain.chat_session:ChatSession.SessionStarted",
    "domain.chat_session:ChatSession.AssistantSettingChanged",
)
_SCAN_LIMIT = 500
POSITION_SAVE_SECONDS = 1.0
"""A scan that found nothing to answer saves its position at most this often: after a restart
the engine re-reads at most that much of the log, and skips what is answered."""
_encode = msgspec.json.Encoder().encode


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
        self._bus = bus
        self._tracking = tracking
        self._provider = provider
        self._publish = publish
        self._slots = asyncio.Semaphore(concurrency)
        self._timeout = timeout_seconds
        self._wakeup = asyncio.Event()
        self._scanned = 0
        self._in_flight: dict[int, UUID] = {}
        self._jobs: dict[UUID, asyncio.Task[None]] = {}
        self._sessions: dict[UUID, UUID] = {}
        self._assistant_on: dict[UUID, bool] = {}
        self._saved_at = 0.0
        self._cancelled: set[UUID] = set()
        self._task: asyncio.Task[None] | None = None
        self._may_reply = may_reply
        self._grounded_at = grounded_at
        self._answers = answers

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="chat-engine")

    async def stop(self) -> None:
        """Stops following and abandons replies in progress without recording them: they are
        answered again after the next start."""
        tasks = [t for t in (self._task, *self._jobs.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def wake(self) -> None:
        self._wakeup.set()

    def cancel(self, session_id: UUID, reply_id: UUID) -> bool:
        """Stops a reply in progress in that session; its text so far is recorded as a
        cancelled reply."""
        job = self._jobs.get(reply_id)
        if job is None or job.done() or self._sessions.get(reply_id) != session_id:
            return False
        self._cancelled.add(reply_id)
        job.cancel()
        return True

    async def _run(self) -> None:
        self._scanned = await anyio.to_thread.run_sync(self._load_position)
        while True:
            try:
                scanned = await self._scan()
            except Exception:  # noqa: BLE001 - report and keep following
                log.exception("chat engine scan failed")
                scanned = 0
            if not scanned:
                self._wakeup.clear()
                try:
                    async with asyncio.timeout(0.25):  # not wait_for: on 3.11 it can swallow stop()'s cancel
                        await self._wakeup.wait()
                except TimeoutError:
                    pass

    def _load_position(self) -> int:
        return self._tracking.positions().get(ENGINE, 0)

    def _save_position(self) -> None:
        low = min(self._in_flight, default=self._scanned + 1) - 1
        with self._tracking.transaction() as tx:
            tx.set_positions({ENGINE: min(low, self._scanned)})

    async def _scan(self) -> int:
        found, reached = await anyio.to_thread.run_sync(self._unanswered_after, self._scanned)
        for posted, position in found:
            await self._consider(posted, position)
            self._scanned = position
        advanced = reached > self._scanned
        self._scanned = max(self._scanned, reached)
        if found or (advanced and time.monotonic() - self._saved_at >= POSITION_SAVE_SECONDS):
            self._saved_at = time.monotonic()
            await anyio.to_thread.run_sync(self._save_position)
        return len(found) + int(advanced)

    def _unanswered_after(self, after: int) -> tuple[list[tuple[Any, int]], int]:
        """Reads (in a worker thread) the user messages after `after` that sessions with the
        assistant on still wait on, and the position the scan reached. Only the topics that
        matter are read; each session's assistant setting is learnt from its events as they
        pass (so a message is answered by the setting in force when it was posted), and loaded
        once from the store for a session started before the scan began. What a scan learnt
        is kept only if the scan completes, so a scan that fails is repeated from scratch."""
        recorder, mapper = self._app.recorder, self._app.mapper
        head = recorder.max_notification_id() or 0
        notifications = recorder.select_notifications(start=after + 1, limit=_SCAN_LIMIT, stop=head, topics=_TOPICS)
        learnt: dict[UUID, bool] = {}
        found: list[tuple[Any, int]] = []
        for notification in notifications:
            event = mapper.to_domain_event(notification)
            if notification.topic != _POSTED:
                learnt[event.originator_id] = event.assistant
            elif (
                event.role == "user"
                and self._assistant_in(event.session_id, learnt)
                and self._answers(event.content)
                and not self._answered(event.originator_id)
            ):
                found.append((event, notification.id))
        self._assistant_on.update(learnt)
        return found, head if len(notifications) < _SCAN_LIMIT else notifications[-1].id

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
        try:
            self._app.repository.get(reply_id_for(message_id))
        except AggregateNotFoundError:
            return False
        return True

    async def _consider(self, posted: Any, position: int) -> None:
        reply_id = reply_id_for(posted.originator_id)
        if reply_id in self._jobs:
            return
        await self._slots.acquire()  # scanning pauses while every slot is busy
        self._in_flight[position] = reply_id
        self._sessions[reply_id] = posted.session_id
        self._jobs[reply_id] = asyncio.get_running_loop().create_task(self._answer(posted, position, reply_id))
        REPLIES_IN_FLIGHT.set(len(self._jobs))

    def _frame(self, session_id: str, **fields: Any) -> None:
        """Ephemeral frames are best effort: if they cannot be published (the server is
        shutting down), the reply goes on and its stored outcome still reaches clients."""
        try:
            self._publish(session_channel(session_id), _encode({"session_id": session_id, **fields}))
        except RuntimeError:
            log.debug("reply frame not published", exc_info=True)

    async def _answer(self, posted: Any, position: int, reply_id: UUID) -> None:
        """Produces and records the reply. The message leaves `_in_flight` (so the low-water
        mark may pass it) only once its outcome is stored; otherwise a restart answers it."""
        session_id = str(posted.session_id)
        recorded = False
        try:
            request = ReplyRequest(posted.session_id, posted.originator_id, posted.author_id, posted.content, position)
            if self._may_reply is not None and not await self._may_reply(str(posted.author_id)):
                outcome: RecordReply | RecordReplyFailure = RecordReplyFailure(
                    posted.originator_id,
                    posted.session_id,
                    "quota_exceeded",
                    "your assistant replies per day are used up; they reset at midnight UTC",
                    "",
                )
            else:
                if self._grounded_at is not None:
                    try:
                        await self._grounded_at(position)
                    except Exception:  # noqa: BLE001 - a lagging read model: answer from what it holds
                        log.warning("read models behind position %d; answering from what they hold", position)
                outcome = await self._produce(request, session_id, reply_id)
            outcome = replace(outcome, asker_id=posted.author_id)  # the reply is sealed with the asker's key
            for attempt in range(3):
                try:
                    await self._bus.execute(outcome, ASSISTANT_ACTOR)
                    REPLIES.labels(_outcome_label(outcome)).inc()
                    recorded = True
                    break
                except Exception:  # noqa: BLE001 - retried, then left for the next start
                    log.exception("recording the reply to %s failed (attempt %d)", posted.originator_id, attempt + 1)
                    await asyncio.sleep(0.5 * 2**attempt)
        finally:
            self._slots.release()
            if recorded:
                self._in_flight.pop(position, None)
            self._jobs.pop(reply_id, None)
            REPLIES_IN_FLIGHT.set(len(self._jobs))
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

        try:
            with anyio.fail_after(self._timeout):
                async for piece in self._provider.reply(request, usage):
                    parts.append(piece)
                    self._frame(session_id, type="reply.delta", reply_id=str(reply_id), seq=len(parts), delta=piece)
        except TimeoutError:
            return RecordReplyFailure(
                request.message_id, request.session_id, "timeout", f"no complete reply within {self._timeout:g} s", "".join(parts)
            )
        except asyncio.CancelledError:
            if reply_id in self._cancelled:
                asyncio.current_task().uncancel()  # type: ignore[union-attr]
                return completed("cancelled")
            raise
        except Exception as error:  # noqa: BLE001 - every failure is recorded with its reason
            log.warning("assistant provider failed: %s", error)
            return RecordReplyFailure(request.message_id, request.session_id, "provider_error", str(error), "".join(parts))
        if not parts:
            return RecordReplyFailure(request.message_id, request.session_id, "invalid_response", "the provider returned no text", "")
        return completed("completed")


def _outcome_label(outcome: RecordReply | RecordReplyFailure) -> str:
    """A used-up quota is a refusal, not a failure: the assistant failure alert counts `failed`."""
    if isinstance(outcome, RecordReply):
        return outcome.status
    return "quota_exceeded" if outcome.reason == "quota_exceeded" else "failed"
