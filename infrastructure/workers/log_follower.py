"""What every worker that acts on the event log shares (the chat engine, the conversion worker):
scan what was committed after the worker's position, start a job for each thing found to act on
(at most `concurrency` at once: scanning pauses while every slot is busy), and keep the position
as a low-water mark, the position before the oldest job whose outcome is not yet recorded. It is
saved in the read store's tracking table, so after a restart the worker resumes there and skips
what already has an outcome: nothing is skipped and, with outcomes keyed by what they answer,
nothing is done twice."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from domain.aggregate import DomainError
from infrastructure.storage.read_store import SQLiteReadStore
from infrastructure.workers.threads import run_in_thread

log = logging.getLogger(__name__)

Item = TypeVar("Item")

POSITION_SAVE_SECONDS = 1.0
"""A scan that found nothing to act on saves the position at most this often: after a restart
the worker re-reads at most that much of the log, and skips what is done."""

IDLE_SECONDS = 0.25
"""How long a worker with nothing to do waits for a wake-up before it looks at the log again."""

BUSY_SCAN_SECONDS = 0.02
"""While the log keeps moving with events a worker passes over (posts in sessions without the
assistant, for the chat engine; everything but conversion requests, for the conversion worker),
it scans at most this often instead of once per group commit: one scan then reads what many
commits appended. Scanning per commit took ≈ 5 % of the server's CPU per post at 3,000 posts/s;
what a worker acts on starts at most this much later."""


@dataclass(frozen=True)
class Found(Generic[Item]):
    """Something to act on, at its position in the log; `key` names its job (one at a time)."""

    position: int
    key: Hashable
    item: Item


class LogFollower(Generic[Item]):
    """`scan(after)` runs in a worker thread and returns what to act on after `after`, the
    position it read up to, and whether it stopped short of the log's head (a batch limit: more
    to read at once); `perform(item)` runs as a job and returns True once the outcome is
    recorded (False leaves it to be done again after the next start)."""

    def __init__(
        self,
        name: str,
        tracking: SQLiteReadStore,
        scan: Callable[[int], tuple[Sequence[Found[Item]], int, bool]],
        perform: Callable[[Item], Awaitable[bool]],
        *,
        concurrency: int,
    ) -> None:
        self.name = name
        self._tracking = tracking
        self._scan_after = scan
        self._perform = perform
        self._slots = asyncio.Semaphore(concurrency)
        self._wakeup = asyncio.Event()
        self._scanned = 0
        self._saved_at = 0.0
        self._in_flight: dict[int, Hashable] = {}
        self.jobs: dict[Hashable, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Starts following from the saved position (again after a `stop`: a node that leads
        once more resumes where its last save left it, skipping what is done)."""
        self._in_flight.clear()
        self._saved_at = 0.0
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Stops following and cancels the jobs: what they were doing is not recorded and is
        done again after the next start. Returns once the blocking calls they were waiting on
        have returned (`run_in_thread`): the caller may close the stores next."""
        tasks = [t for t in (self._task, *self.jobs.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def wake(self) -> None:
        self._wakeup.set()

    async def _run(self) -> None:
        self._scanned = await run_in_thread(lambda: self._tracking.positions().get(self.name, 0))
        loop = asyncio.get_running_loop()
        while True:
            self._wakeup.clear()  # before the scan: a commit during it wakes the wait below at once
            started = loop.time()
            try:
                again, moved = await self._scan()
            except Exception:  # noqa: BLE001 - report and keep following
                log.exception("%s: scanning the log failed", self.name)
                again = moved = False
            if again:  # something to act on, or a backlog still to read: at once
                continue
            if moved:  # the log moves on with what this worker passes over: scan again, but not at once
                await asyncio.sleep(started + BUSY_SCAN_SECONDS - loop.time())
                continue
            try:  # not `asyncio.wait_for`, which on 3.11 can swallow a cancel that arrives with a wake-up
                async with asyncio.timeout(IDLE_SECONDS):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    async def _scan(self) -> tuple[bool, bool]:
        """Whether to scan again at once (something was found to act on, or the scan stopped
        short of the head), and whether it moved the position."""
        found, reached, short = await run_in_thread(self._scan_after, self._scanned)
        for each in found:
            await self._start_job(each)
            self._scanned = each.position
        moved = reached > self._scanned
        self._scanned = max(self._scanned, reached)
        if found or (moved and time.monotonic() - self._saved_at >= POSITION_SAVE_SECONDS):
            self._saved_at = time.monotonic()
            await run_in_thread(self._save_position)
        return bool(found) or short, moved

    def _save_position(self) -> None:
        low = min(self._in_flight, default=self._scanned + 1) - 1
        with self._tracking.transaction() as tx:
            tx.set_positions({self.name: min(low, self._scanned)})

    async def _start_job(self, found: Found[Item]) -> None:
        if found.key in self.jobs:
            return
        await self._slots.acquire()
        self._in_flight[found.position] = found.key
        self.jobs[found.key] = asyncio.get_running_loop().create_task(self._job(found))

    async def _job(self, found: Found[Item]) -> None:
        recorded = False
        try:
            recorded = await self._perform(found.item)
        except Exception:  # noqa: BLE001 - left for the next start
            log.exception("%s: acting on position %d failed; it is done again after the next start", self.name, found.position)
        finally:
            self._slots.release()
            if recorded:  # only then may the low-water mark pass it
                self._in_flight.pop(found.position, None)
            self.jobs.pop(found.key, None)


async def recorded_with_retries(record: Callable[[], Awaitable[Any]], what: str, *, settled_by: tuple[type[DomainError], ...] = ()) -> bool:
    """Records an outcome, retried (3 attempts, 0.5 s then 1 s apart) when the store is busy
    (a refusal by the domain is not retried, nor a cancellation: tenacity retries whatever an
    attempt raises, `CancelledError` included, and a worker's stop would record it anyway);
    False leaves the outcome to be produced again after the next start. `settled_by`: refusals that mean the outcome is already recorded
    (by another node that led before), so the job is done."""
    try:
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(3),
            wait=wait_exponential(multiplier=0.5),
            retry=retry_if_exception_type(Exception) & retry_if_not_exception_type(DomainError),
            before_sleep=before_sleep_log(log, logging.WARNING),
            reraise=True,
        ):
            with attempt:
                await record()
    except settled_by as settled:
        log.warning("%s was not recorded: %s (recorded before)", what, settled)
        return True
    except Exception:  # noqa: BLE001 - logged; done again after the next start
        log.exception("recording %s failed after 3 attempts", what)
        return False
    return True
