"""The conversion worker: follows the event log and performs every requested conversion.

Like the chat engine it keeps a low-water position (`conversion_worker` in the read store's
tracking table): the position before the oldest request whose outcome is not yet recorded.
After a restart it resumes there and skips conversions that already have an outcome, so a
request survives restarts and no conversion is done twice. Each job runs in a process of its
own (`conversion_jobs`) with a timeout and a memory limit; at most `concurrency` run at once,
and the event loop only waits for them.

Outcomes are events: `ConversionStarted`, then `ConversionCompleted` (the output placed in the
blob store first, under the blob lock) or `ConversionFailed` with a reason."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio
from eventsourcing.application import AggregateNotFoundError

from application.chronicle import Chronicle
from application.command_bus import CommandBus
from application.documents import CompleteConversion, FailConversion, StartConversion
from domain.conversion import Conversion
from domain.document import Document
from infrastructure.documents.conversion_jobs import JobLimits, JobOutcome, JobsStopped, allow_jobs, run_job, stop_all
from infrastructure.metrics import CONVERSIONS, CONVERSIONS_IN_FLIGHT
from infrastructure.storage.blob_store import BlobStore
from infrastructure.storage.read_store import SQLiteReadStore

log = logging.getLogger(__name__)

WORKER = "conversion_worker"
WORKER_ACTOR = "conversion-worker"
_TOPICS = ("domain.conversion:Conversion.ConversionRequested", "domain.conversion:Conversion.ConversionRetried")

POSITION_SAVE_SECONDS = 1.0
"""A scan with no request in it saves the position at most this often (a restart re-reads that much)."""


class ConversionWorker:
    def __init__(
        self,
        reader: Chronicle,
        bus: CommandBus,
        tracking: SQLiteReadStore,
        blobs: BlobStore,
        limits: JobLimits,
        *,
        concurrency: int = 2,
    ) -> None:
        self._reader = reader
        self._bus = bus
        self._tracking = tracking
        self._blobs = blobs
        self._limits = limits
        self._slots = asyncio.Semaphore(concurrency)
        self._wakeup = asyncio.Event()
        self._scanned = 0
        self._saved_at = 0.0
        self._in_flight: dict[int, UUID] = {}
        self._jobs: dict[UUID, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        allow_jobs()  # a worker stopped before in this process forbade them
        self._task = asyncio.get_running_loop().create_task(self._run(), name="conversion-worker")

    async def stop(self) -> None:
        """Stops following and kills the job processes; the conversions they were doing are
        not recorded and are performed again after the next start."""
        self._stopping = True
        tasks = [t for t in (self._task, *self._jobs.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await anyio.to_thread.run_sync(stop_all)
        await asyncio.gather(*tasks, return_exceptions=True)

    def wake(self) -> None:
        self._wakeup.set()

    async def _run(self) -> None:
        self._scanned = await anyio.to_thread.run_sync(lambda: self._tracking.positions().get(WORKER, 0))
        while True:
            try:
                scanned = await self._scan()
            except Exception:  # noqa: BLE001 - report and keep following
                log.exception("conversion worker scan failed")
                scanned = False
            if not scanned:
                self._wakeup.clear()
                try:
                    async with asyncio.timeout(0.25):  # not wait_for: on 3.11 it can swallow stop()'s cancel
                        await self._wakeup.wait()
                except TimeoutError:
                    pass

    async def _scan(self) -> bool:
        """Reads the requests between the last scanned position and the head; True when the
        scan moved."""
        head, requests = await anyio.to_thread.run_sync(self._requests_after, self._scanned)
        for position, conversion_id in requests:
            await self._consider(conversion_id, position)
        if head == self._scanned:
            return False
        self._scanned = head
        if requests or time.monotonic() - self._saved_at >= POSITION_SAVE_SECONDS:
            self._saved_at = time.monotonic()
            await anyio.to_thread.run_sync(self._save_position)
        return True

    def _requests_after(self, scanned: int) -> tuple[int, list[tuple[int, UUID]]]:
        recorder = self._reader.recorder
        head = recorder.max_notification_id() or 0
        if head <= scanned:
            return scanned, []
        found = recorder.select_notifications(start=scanned + 1, limit=head - scanned, stop=head, topics=_TOPICS)
        return head, [(n.id, n.originator_id) for n in found]

    def _save_position(self) -> None:
        low = min(self._in_flight, default=self._scanned + 1) - 1
        with self._tracking.transaction() as tx:
            tx.set_positions({WORKER: min(low, self._scanned)})

    async def _consider(self, conversion_id: UUID, position: int) -> None:
        if conversion_id in self._jobs:
            return
        conversion = await anyio.to_thread.run_sync(self._get, conversion_id)
        if not isinstance(conversion, Conversion) or conversion.finished:
            return
        await self._slots.acquire()  # scanning pauses while every slot is busy
        self._in_flight[position] = conversion_id
        self._jobs[conversion_id] = asyncio.get_running_loop().create_task(self._perform(conversion, position))
        CONVERSIONS_IN_FLIGHT.set(len(self._jobs))

    def _get(self, aggregate_id: UUID) -> Any:
        try:
            return self._reader.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    async def _perform(self, conversion: Conversion, position: int) -> None:
        recorded = False
        output = self._blobs.incoming_path()
        try:
            outcome = await self._convert(conversion, output)
            recorded = await self._record(conversion.id, outcome, output)
        except JobsStopped:
            pass  # the server is stopping: done again after the next start
        except Exception:  # noqa: BLE001 - left for the next start
            log.exception("conversion %s could not be performed", conversion.id)
        finally:
            output.unlink(missing_ok=True)
            self._slots.release()
            if recorded:
                self._in_flight.pop(position, None)
            self._jobs.pop(conversion.id, None)
            CONVERSIONS_IN_FLIGHT.set(len(self._jobs))

    async def _convert(self, conversion: Conversion, output: Path) -> JobOutcome | FailConversion:
        document = await anyio.to_thread.run_sync(self._get, conversion.document_id)
        if not isinstance(document, Document) or document.deleted:
            return FailConversion(conversion.id, "document_deleted", "the document was deleted", 0)
        source = self._blobs.path(document.sha256)
        if not source.is_file():
            return FailConversion(conversion.id, "document_deleted", "the document's content is gone", 0)
        await self._bus.execute(StartConversion(conversion.id), WORKER_ACTOR)
        return await anyio.to_thread.run_sync(run_job, source, document.media_type, conversion.target, output, self._limits)

    async def _record(self, conversion_id: UUID, outcome: JobOutcome | FailConversion, output: Path) -> bool:
        """Records the outcome (retried a few times if the store is busy); False leaves the
        conversion to be done again after the next start."""
        if self._stopping:
            return False  # a job killed by the shutdown is no outcome
        if isinstance(outcome, JobOutcome) and outcome.sha256 is None:
            outcome = FailConversion(conversion_id, outcome.reason or "corrupt_file", outcome.detail, outcome.duration_ms)
        for attempt in range(3):
            try:
                if isinstance(outcome, FailConversion):
                    await self._bus.execute(outcome, WORKER_ACTOR)
                    CONVERSIONS.labels("failed").inc()
                else:
                    await self._complete(conversion_id, outcome, output)
                    CONVERSIONS.labels("completed").inc()
                return True
            except Exception:  # noqa: BLE001 - retried, then left for the next start
                log.exception("recording conversion %s failed (attempt %d)", conversion_id, attempt + 1)
                await asyncio.sleep(0.5 * 2**attempt)
        return False

    async def _complete(self, conversion_id: UUID, outcome: JobOutcome, output: Path) -> None:
        """The output is placed and its event recorded under the blob lock, so a collector
        never sees the blob unreferenced in between."""
        assert outcome.sha256 is not None
        async with self._blobs.locked():
            if output.exists():
                await anyio.to_thread.run_sync(self._blobs.place_file, output, outcome.sha256)
            elif not self._blobs.exists(outcome.sha256):
                raise RuntimeError("the conversion's output is gone; it will be done again")
            await self._bus.execute(
                CompleteConversion(conversion_id, outcome.sha256, outcome.size, outcome.pages, outcome.characters, outcome.duration_ms),
                WORKER_ACTOR,
            )
