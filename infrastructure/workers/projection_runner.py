"""Follows the global event log and applies it to the read tables, one batch per transaction.

The SQLite recorder has no subscription, so the runner polls `select_notifications` from
the lowest position of its projectors; the command bus wakes it right after each commit,
so in the server the lag is one read-model transaction, not a polling interval."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry import trace

from application.chronicle import Chronicle
from infrastructure.storage.event_reading import EventDecoder, StoredRow, log_reader
from projections.projector import Projector
from projections.storage import ReadStore, ReadTransaction

log = logging.getLogger(__name__)
tracer = trace.get_tracer("chronicle.projections")


_STORAGE_FAULTS = ("database or disk is full", "disk i/o error", "database is locked", "unable to open database", "readonly database")


def storage_fault(error: BaseException) -> bool:
    """A full disk, an I/O error, a lock held too long: the environment's fault, never a reason
    to stop a projector at an event (the batch is retried). A missing table or a bad statement
    is the projector's (or its schema's): it stops at the event, as before."""
    message = str(error).lower()
    return isinstance(error, OSError) or any(fault in message for fault in _STORAGE_FAULTS)


@dataclass(frozen=True)
class ProjectionFailure:
    """A projector stopped at `position`: applying that event raised `error`."""

    position: int
    error: str


class ProjectionRunner:
    COALESCE_SECONDS = 0.01
    COALESCE_ABOVE = 16
    """Under load (a batch of more than COALESCE_ABOVE events) the runner pauses after a batch
    so that the next one gathers more events: fewer, larger read-model transactions, for at
    most COALESCE_SECONDS of extra lag. Measured under 50 posting clients: 5 ms → 1.4k
    posts/s, 10-20 ms → 2.1k posts/s (every batch costs GIL hand-overs and a loop wake-up
    on top of its events). At rest there is no pause, so reading one's own write is fast."""

    def __init__(
        self,
        app: Chronicle,
        store: ReadStore,
        projectors: Sequence[Projector],
        *,
        batch_size: int = 2000,
        on_progress: Callable[[dict[str, int]], None] = lambda positions: None,
        on_publish: Callable[[list[tuple[str, bytes]]], None] = lambda published: None,
        on_lag: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        """`on_lag(seconds)` hears, for every commit the bus announced through `wake(position)`,
        how long after it every healthy projector had that position in the read store."""
        self._app = app
        self._store = store
        self.projectors = list(projectors)
        self._batch_size = batch_size
        self.on_progress = on_progress
        self.on_publish = on_publish
        self.on_lag = on_lag
        self._commits: deque[tuple[int, float]] = deque(maxlen=100_000)
        self._reached = 0
        self._wakeup = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None
        self.failures: dict[str, ProjectionFailure] = {}
        self._known: dict[str, int] | None = None
        self._reported: dict[str, int] | None = None
        self._log = log_reader(app.recorder)
        keys = getattr(app.mapper, "keys", None)
        self._cipher_of = (lambda subject: keys.cipher(subject, create=False)) if keys is not None else None
        self._keys = keys
        store.ensure_schema(self.projectors)

    def head(self) -> int:
        return self._app.recorder.max_notification_id() or 0

    def positions(self) -> dict[str, int]:
        known = self._store.positions()
        return {p.name: known.get(p.name, 0) for p in self.projectors}

    def catch_up_once(self) -> int:
        """Applies the next batch of events; returns how many events it read (0 at the head).

        Positions are re-read inside the write transaction; the copy kept between batches
        only says where to start reading the log, and is refreshed whenever the log has
        nothing new (another process may have reset or advanced a projection)."""
        if self._known is None:
            known = self.positions()
            if known != self._reported:
                self.on_progress(known)  # another process (a rebuild) moved positions
            self._known = self._reported = known
            for name in [n for n, failure in self.failures.items() if known.get(n, 0) != failure.position - 1]:
                del self.failures[name]  # rebuilt (or reset) since it failed: try again
        healthy = {p.name for p in self._healthy()}
        start = min((at for name, at in self._known.items() if name in healthy), default=self.head())
        rows = self._log.rows_after(start, self._batch_size)
        if not rows:
            self._known = None
            return 0
        with tracer.start_as_current_span("projection batch") as span:
            if span.is_recording():
                span.set_attribute("chronicle.first_position", rows[0][0])
                span.set_attribute("chronicle.last_position", rows[-1][0])
                span.set_attribute("chronicle.events", len(rows))
            return self._apply_batch(rows)

    def decode(self, rows: list[StoredRow]) -> list[tuple[int, Any]]:
        """The batch's events through the fast read path, ids and times in their stored form
        (what projectors store); keys come from the key store's short-lived cache, as the
        event store's own mapper finds them."""
        decode = EventDecoder(self._keys, text_ids=True, text_times=True, cipher_of=self._cipher_of).decode
        return [(row[0], decode(row[1], row[2], row[3], row[4])) for row in rows]

    def _apply_batch(self, rows: list[StoredRow]) -> int:
        assert self._known is not None
        events = self.decode(rows)
        first, last = events[0][0], events[-1][0]
        kinds = {type(event) for _, event in events}
        advanced: dict[str, int] = {}
        with self._store.transaction() as tx:
            current = tx.positions()
            for projector in self._healthy():
                position = current.get(projector.name, 0)
                if position < first - 1 or position >= last:
                    continue  # reset or advanced by another process meanwhile
                if kinds.isdisjoint(projector.handlers):
                    advanced[projector.name] = last  # nothing in this batch for it
                else:
                    advanced[projector.name] = self._apply(tx, projector, events, position)
            tx.set_positions({name: at for name, at in advanced.items() if at > current.get(name, 0)})
        if tx.published:
            self.on_publish(tx.published)
        self._known = self._reported = {p.name: max(advanced.get(p.name, 0), current.get(p.name, 0)) for p in self.projectors}
        if advanced:
            self._report_lag()
            self.on_progress(advanced)
        return len(events)

    def _report_lag(self) -> None:
        assert self._known is not None
        reached = self._reached = min((at for name, at in self._known.items() if name not in self.failures), default=0)
        now = time.monotonic()
        while self._commits and self._commits[0][0] <= reached:
            self.on_lag(now - self._commits.popleft()[1])

    def _healthy(self) -> list[Projector]:
        return [p for p in self.projectors if p.name not in self.failures]

    def _apply(self, tx: ReadTransaction, projector: Projector, events: list[tuple[int, Any]], position: int) -> int:
        """Applies the events after `position` in a savepoint, their writes batched; returns the
        position reached. If the batch fails, it is applied again one event at a time to find
        the failing event: the projector stops just before it (reported in `failures`) while
        the other projectors go on."""
        published = len(tx.published)
        tx.savepoint("projector")
        try:
            projector.apply_batch(tx, events if events[0][0] > position else [e for e in events if e[0] > position])
            tx.flush()
            reached = events[-1][0]
        except Exception as error:  # noqa: BLE001 - one projector's bug must not stop the others
            if storage_fault(error):
                raise  # the store, not the projector: the batch is retried as a whole
            tx.rollback_to("projector")
            del tx.published[published:]
            reached = self._apply_one_by_one(tx, projector, events, position)
        tx.release("projector")
        return reached

    def _apply_one_by_one(self, tx: ReadTransaction, projector: Projector, events: list[tuple[int, Any]], position: int) -> int:
        reached = position
        for event_position, event in events:
            if event_position <= position:
                continue
            published = len(tx.published)
            tx.savepoint("event")
            try:
                projector.apply(tx, event, event_position)
                tx.flush()
            except Exception as error:  # noqa: BLE001
                if storage_fault(error):
                    raise
                tx.rollback_to("event")
                tx.release("event")
                del tx.published[published:]
                self.failures[projector.name] = ProjectionFailure(event_position, f"{type(error).__name__}: {error}")
                tx.record_failure(projector.name, event_position, self.failures[projector.name].error)
                log.error("projection %s failed at position %d: %s", projector.name, event_position, error, exc_info=error)
                return reached
            tx.release("event")
            reached = event_position
        return reached

    def catch_up(self, progress: Callable[[int, int], None] = lambda done, head: None) -> None:
        """Applies events until every projector has reached the head (including events
        appended meanwhile)."""
        while self.catch_up_once():
            progress(min(self.positions().values(), default=0), self.head())

    def wake(self, position: int = 0, committed_at: float | None = None) -> None:
        """Called by the command bus after each commit, with the commit's last position (and,
        from another process, the `time.monotonic()` of the commit)."""
        if position:
            committed_at = time.monotonic() if committed_at is None else committed_at
            if position <= self._reached:
                self.on_lag(max(0.0, time.monotonic() - committed_at))  # applied before the wake-up came
            else:
                self._commits.append((position, committed_at))
        self._wakeup.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="projection-runner", daemon=True)
        self._thread.start()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def stop_soon(self) -> None:
        self._stopping.set()
        self._wakeup.set()

    def stop(self) -> None:
        self.stop_soon()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def run(self) -> None:
        """Follows the log until `stop`: in a thread of its own (`start`) or a process's main thread."""
        backoff = 0.1
        while not self._stopping.is_set():
            self._wakeup.clear()
            try:
                applied = self.catch_up_once()
                if applied:
                    self.error = None
                    backoff = 0.1
                    if applied >= self.COALESCE_ABOVE:
                        time.sleep(self.COALESCE_SECONDS)
                    continue
            except Exception as error:  # noqa: BLE001 - report, wait, retry; never die
                self.error = f"{type(error).__name__}: {error}"
                log.exception("projection batch failed; retrying in %.1fs", backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._wakeup.wait(timeout=0.25)
