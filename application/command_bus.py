"""Group commit: commands waiting at the same moment are decided one after another against
the same in-memory aggregates, then saved in ONE transaction (one fsync for the group).

A command refused by the domain fails alone and appends nothing. If the group's save is
refused by the store (another process wrote first), each command is retried on its own,
a bounded number of times, so a conflict fails only its own command.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from eventsourcing.domain import CanMutateAggregate
from eventsourcing.persistence import IntegrityError
from opentelemetry import trace

from application.chronicle import Chronicle
from application.event_log import EventLog
from application.unit_of_work import RetryAfterSave, UnitOfWork
from domain.aggregate import Conflict, DomainError
from domain.identity import new_id
from domain.provenance import acting_as

log = logging.getLogger(__name__)
tracer = trace.get_tracer("chronicle.command_bus")
"""A proxy: spans are recorded only once the process has installed a tracer provider."""

Handler = Callable[[UnitOfWork, Any], Any]


class CommandConflict(Conflict):
    def __init__(self) -> None:
        super().__init__("the command kept conflicting with concurrent changes; try again")


@dataclass(frozen=True)
class Outcome:
    """What a command returned, and the global position of its last event (or of the
    log's head when it changed nothing, so read-your-writes still holds)."""

    value: Any
    position: int


@dataclass
class _Pending:
    command: Any
    actor_id: str
    correlation_id: str
    settle: Callable[[Outcome | BaseException], None]
    loop: asyncio.AbstractEventLoop | None = None
    result: Outcome | BaseException | None = field(default=None)
    span: trace.SpanContext = field(default_factory=lambda: trace.get_current_span().get_span_context())
    """The caller's span (its command's), which the group commit's span continues."""


class _Tainted(Exception):
    """A command failed after changing an aggregate: the group cannot be saved as it is."""


class CommandBus:
    CONFLICT_RETRIES = 3

    def __init__(
        self,
        app: Chronicle,
        event_log: EventLog,
        handlers: dict[type, Handler],
        *,
        max_batch: int = 500,
        on_commit: Callable[[int], None] = lambda position: None,
    ) -> None:
        self._app = app
        self._event_log = event_log
        self._handlers = handlers
        self._max_batch = max_batch
        self.on_commit = on_commit
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.batches = 0
        self.commands = 0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="command-bus", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    async def execute(self, command: Any, actor_id: str, correlation_id: str | None = None) -> Outcome:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()

        def settle(result: Outcome | BaseException) -> None:
            if future.done():
                return
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

        self._queue.put(_Pending(command, actor_id, correlation_id or str(new_id()), settle, loop))
        return await future

    def execute_now(self, command: Any, actor_id: str, correlation_id: str | None = None) -> Outcome:
        """Runs one command in the calling thread (for the CLI, which has no server)."""
        pending = _Pending(command, actor_id, correlation_id or str(new_id()), lambda result: None)
        self._commit_group([pending])
        assert pending.result is not None
        if isinstance(pending.result, BaseException):
            raise pending.result
        return pending.result

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stopping = False
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            try:
                self._commit_group(batch)
            except BaseException as error:  # every waiter must hear back, whatever stopped the batch
                log.exception("command batch failed")
                for item in batch:
                    if item.result is None:
                        item.result = error
            self._deliver(batch)
            if stopping:
                return

    def _deliver(self, batch: list[_Pending]) -> None:
        """Settles the waiting futures on their own event loops, one wake-up per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        for item in batch:
            if item.loop is not None:
                by_loop.setdefault(item.loop, []).append(item)
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_settle_all, items)
            except RuntimeError:
                log.warning("an event loop closed before its commands completed")

    def _commit_group(self, batch: list[_Pending]) -> None:
        """One span per group commit: a child of its first command's span, linked to the others'."""
        traced = [item.span for item in batch if item.span.is_valid]
        parent = trace.set_span_in_context(trace.NonRecordingSpan(traced[0])) if traced else None
        links = [trace.Link(context) for context in traced[1:100]]
        with tracer.start_as_current_span("group commit", context=parent, links=links) as span:
            if span.is_recording():
                span.set_attribute("chronicle.commands", len(batch))
                span.set_attribute("chronicle.correlation_ids", [item.correlation_id for item in batch[:100]])
            self._process(batch)

    def _process(self, batch: list[_Pending]) -> None:
        try:
            deferred = self._decide_and_save(batch)
        except (IntegrityError, _Tainted):
            for item in batch:
                self._process_alone(item)
            return
        if deferred:
            self._process(deferred)

    def _process_alone(self, item: _Pending) -> None:
        for attempt in range(self.CONFLICT_RETRIES):
            item.result = None
            try:
                if not self._decide_and_save([item]):
                    return
            except _Tainted as tainted:
                item.result = tainted.__cause__
                return
            except IntegrityError:
                time.sleep(0.001 * 2**attempt)
        item.result = CommandConflict()

    def _decide_and_save(self, batch: list[_Pending]) -> list[_Pending]:
        """Decides every command of the group, saves their events in one transaction, and
        returns the commands that asked to run again after the save."""
        uow = UnitOfWork(self._app.repository, self._event_log)
        try:
            return self._decide_and_save_in(uow, batch)
        except BaseException:
            uow.forget()
            raise

    def _decide_and_save_in(self, uow: UnitOfWork, batch: list[_Pending]) -> list[_Pending]:
        decided: list[tuple[_Pending, Any, list[CanMutateAggregate[UUID]]]] = []
        deferred: list[_Pending] = []
        for item in batch:
            uow.begin_command()
            try:
                with acting_as(item.actor_id, item.correlation_id):
                    value = self._handlers[type(item.command)](uow, item.command)
            except RetryAfterSave:
                deferred.append(item)
                continue
            except Exception as error:
                if uow.command_events():
                    raise _Tainted() from error
                if not isinstance(error, DomainError):
                    log.exception("command %s failed", type(item.command).__name__)
                item.result = error
                continue
            decided.append((item, value, uow.command_events()))
        changed = uow.changed()
        positions: dict[int, int] = {}
        if changed:
            for recording in self._app.save(*changed):
                positions[id(recording.domain_event)] = recording.notification.id
        head = None
        for item, value, events in decided:
            if events:
                position = max(positions[id(e)] for e in events)
            else:
                head = self._event_log.head() if head is None else head
                position = head
            item.result = Outcome(value, position)
        self.batches += 1
        self.commands += len(batch) - len(deferred)
        if positions:
            self.on_commit(max(positions.values()))
        return deferred


def _settle_all(items: list[_Pending]) -> None:
    for item in items:
        assert item.result is not None
        item.settle(item.result)
