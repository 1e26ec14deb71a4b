"""The conversion worker: follows the event log and performs every requested conversion.

It follows the log with a `LogFollower` (position `conversion_worker` in the read store's
tracking table, a low-water mark), so a request survives restarts and no conversion is done twice. Each job runs in a process of its
own (`conversion_jobs`) with a timeout and a memory limit; at most `concurrency` run at once,
and the event loop only waits for them.

Outcomes are events: `ConversionStarted`, then `ConversionCompleted` (the output placed in the
blob store first, under the blob lock) or `ConversionFailed` with a reason."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
import structlog
from eventsourcing.application import AggregateNotFoundError
from opentelemetry import trace

from application.chronicle import Chronicle
from application.command_bus import CommandBus
from application.documents import CompleteConversion, FailConversion, StartConversion
from domain.conversion import Conversion, ConversionIsFinished
from domain.document import Document
from domain.identity import new_id
from infrastructure.documents.conversion_jobs import ConversionJobs, JobOutcome, JobsStopped
from infrastructure.metrics import CONVERSION_SECONDS, CONVERSIONS, CONVERSIONS_IN_FLIGHT
from infrastructure.storage.blob_store import BlobStore
from infrastructure.storage.read_store import SQLiteReadStore
from infrastructure.workers.log_follower import Found, LogFollower, recorded_with_retries
from infrastructure.workers.threads import run_in_thread

log = structlog.stdlib.get_logger(__name__)
tracer = trace.get_tracer("chronicle.conversions")

WORKER = "conversion_worker"
WORKER_ACTOR = "conversion-worker"
_TOPICS = ("domain.conversion:Conversion.ConversionRequested", "domain.conversion:Conversion.ConversionRetried")


class ConversionWorker:
    def __init__(
        self,
        reader: Chronicle,
        bus: CommandBus,
        tracking: SQLiteReadStore,
        blobs: BlobStore,
        jobs: ConversionJobs,
        *,
        concurrency: int = 2,
    ) -> None:
        self._reader = reader
        self._bus = bus
        self._blobs = blobs
        self._jobs = jobs
        self._follower = LogFollower(WORKER, tracking, self._requests_after, self._perform, concurrency=concurrency)
        self._stopping = False

    def start(self) -> None:
        """Starts (again, after a `stop`, on a node that leads once more)."""
        self._stopping = False
        self._jobs.reopen()
        self._follower.start()

    async def stop(self) -> None:
        """Stops following and kills the job processes; the conversions they were doing are
        not recorded and are performed again after the next start."""
        self._stopping = True
        following = asyncio.ensure_future(self._follower.stop())
        await anyio.to_thread.run_sync(self._jobs.stop_all)
        await following

    def wake(self) -> None:
        self._follower.wake()

    def _requests_after(self, scanned: int) -> tuple[list[Found[Conversion]], int, bool]:
        """The conversions requested after `scanned` that have no outcome yet, and the head
        (read to, always: the scan has no batch limit)."""
        recorder = self._reader.recorder
        head = recorder.max_notification_id() or 0
        if head <= scanned:
            return [], scanned, False
        found = []
        for notification in recorder.select_notifications(start=scanned + 1, limit=head - scanned, stop=head, topics=_TOPICS):
            conversion = self._get(notification.originator_id)
            if isinstance(conversion, Conversion) and not conversion.finished:
                found.append(Found(notification.id, conversion.id, conversion))
        return found, head, False

    def _get(self, aggregate_id: UUID) -> Any:
        try:
            return self._reader.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    async def _perform(self, conversion: Conversion) -> bool:
        """One conversion, under a correlation id of its own (on its log lines, its events and
        its span), timed from start to recorded outcome; True once the outcome is recorded."""
        output = self._blobs.incoming_path()
        correlation_id = str(new_id())
        structlog.contextvars.bind_contextvars(correlation_id=correlation_id)  # this task's context only
        started = time.perf_counter()
        CONVERSIONS_IN_FLIGHT.inc()
        try:
            with tracer.start_as_current_span("conversion") as span:
                span.set_attribute("chronicle.correlation_id", correlation_id)
                span.set_attribute("chronicle.conversion.type", conversion.target)
                log.info("conversion started", conversion_id=str(conversion.id), type=conversion.target)
                outcome = await self._convert(conversion, output, correlation_id)
                if isinstance(outcome, JobOutcome) and outcome.sha256 is None:
                    outcome = FailConversion(conversion.id, outcome.reason or "corrupt_file", outcome.detail, outcome.duration_ms)
                recorded = await self._record(conversion.id, outcome, output, correlation_id)
                result = "failed" if isinstance(outcome, FailConversion) else "completed"
                span.set_attribute("chronicle.conversion.outcome", result if recorded else "unrecorded")
            if recorded:
                seconds = time.perf_counter() - started
                CONVERSIONS.labels(conversion.target, result).inc()
                CONVERSION_SECONDS.labels(conversion.target, result).observe(seconds)
                facts = {"conversion_id": str(conversion.id), "type": conversion.target, "duration_ms": round(seconds * 1000)}
                if isinstance(outcome, FailConversion):
                    log.warning("conversion failed", reason=outcome.reason, **facts)
                else:
                    log.info("conversion finished", characters=outcome.characters, pages=outcome.pages, **facts)
            return recorded
        except JobsStopped:
            return False  # the server is stopping: done again after the next start
        finally:
            output.unlink(missing_ok=True)
            CONVERSIONS_IN_FLIGHT.dec()

    async def _convert(self, conversion: Conversion, output: Path, correlation_id: str) -> JobOutcome | FailConversion:
        document = await run_in_thread(self._get, conversion.document_id)
        if not isinstance(document, Document) or document.deleted:
            return FailConversion(conversion.id, "document_deleted", "the document was deleted", 0)
        source = self._blobs.path(document.sha256)
        if not source.is_file():
            return FailConversion(conversion.id, "document_deleted", "the document's content is gone", 0)
        await self._bus.execute(StartConversion(conversion.id), WORKER_ACTOR, correlation_id)
        return await run_in_thread(self._jobs.run, source, document.media_type, conversion.target, output)

    async def _record(self, conversion_id: UUID, outcome: JobOutcome | FailConversion, output: Path, correlation_id: str) -> bool:
        """Records the outcome (retried if the store is busy); False leaves the conversion to be
        done again after the next start."""
        if self._stopping:
            return False  # a job killed by the shutdown is no outcome
        if isinstance(outcome, FailConversion):
            failure = outcome
            return await recorded_with_retries(
                lambda: self._bus.execute(failure, WORKER_ACTOR, correlation_id),
                f"conversion {conversion_id}",
                settled_by=(ConversionIsFinished,),
            )
        completed = outcome
        return await recorded_with_retries(
            lambda: self._complete(conversion_id, completed, output, correlation_id),
            f"conversion {conversion_id}",
            settled_by=(ConversionIsFinished,),
        )

    async def _complete(self, conversion_id: UUID, outcome: JobOutcome, output: Path, correlation_id: str) -> None:
        """The output is placed and its event recorded under the blob lock, so a collector
        never sees the blob unreferenced in between. If the document was deleted (or its owner
        erased) meanwhile, the conversion is recorded as failed and the blob is removed at once
        when this attempt placed it: under the lock nothing else came to refer to it, and it holds
        what the owner deleted. (A blob an earlier attempt placed is left to the collector: between
        attempts the lock is free, and an identical output may have been recorded since.)"""
        assert outcome.sha256 is not None
        async with self._blobs.locked():
            placed = False
            if output.exists():
                placed = await run_in_thread(self._blobs.place_file, output, outcome.sha256)
            elif not self._blobs.exists(outcome.sha256):
                raise RuntimeError("the conversion's output is gone; it will be done again")
            completed = CompleteConversion(
                conversion_id, outcome.sha256, outcome.size, outcome.pages, outcome.characters, outcome.duration_ms
            )
            recorded = await self._bus.execute(completed, WORKER_ACTOR, correlation_id)
            if placed and recorded.value.status == "failed":
                await run_in_thread(self._blobs.remove, outcome.sha256)
