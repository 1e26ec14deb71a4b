"""The log follower's pace (infrastructure/workers/log_follower.py), driven with scan functions of
the test's own and a real tracking store: a commit that wakes the follower while it scans is
scanned for without waiting for the idle timeout, and while the log moves past what the worker
acts on it scans at most every BUSY_SCAN_SECONDS instead of once per commit; a backlog (a scan
that stopped at its batch limit) is read without that pause. A stop returns only once the scan
it interrupted has returned, and it does not retry a recording it cancels."""

from __future__ import annotations

import asyncio
import threading

import pytest

from infrastructure.storage.read_store import SQLiteReadStore
from infrastructure.workers import log_follower
from infrastructure.workers.log_follower import BUSY_SCAN_SECONDS, Found, LogFollower

pytestmark = pytest.mark.anyio


@pytest.fixture
def tracking(tmp_path):
    store = SQLiteReadStore(tmp_path / "read.sqlite3")
    store.ensure_schema([])
    yield store
    store.close()


async def nothing(item) -> bool:
    return True


async def follow(follower: LogFollower[None], until: asyncio.Event) -> None:
    """Runs the follower until its scans set `until` (10 s at most), then stops it."""
    follower.start()
    try:
        await asyncio.wait_for(until.wait(), 10)
    finally:
        await follower.stop()


async def test_a_wake_up_during_a_scan_is_not_lost(tracking, monkeypatch):
    monkeypatch.setattr(log_follower, "IDLE_SECONDS", 600.0)  # only a wake-up can start another scan in time
    scans: list[int] = []
    second = asyncio.Event()
    loop = asyncio.get_running_loop()
    follower: LogFollower[None]

    def scan(after: int) -> tuple[list[Found[None]], int, bool]:
        scans.append(after)
        if len(scans) == 1:
            loop.call_soon_threadsafe(follower.wake)  # a commit lands while the scan reads the log
        else:
            loop.call_soon_threadsafe(second.set)
        return [], after, False  # the scan read the log before the commit: it saw nothing new

    follower = LogFollower("pace", tracking, scan, nothing, concurrency=1)
    await follow(follower, second)
    assert len(scans) >= 2


async def test_a_log_that_keeps_moving_is_scanned_at_most_every_busy_interval(tracking):
    started: list[float] = []
    enough = asyncio.Event()
    loop = asyncio.get_running_loop()

    class Timed(LogFollower[None]):
        async def _scan(self) -> tuple[bool, bool]:
            """Each scan's start, on the event loop: when a scan's thread begins varies with
            the thread pool's hand-over (a loaded host delayed one by 5 ms), the pace does not."""
            started.append(loop.time())
            if len(started) == 7:
                enough.set()
            return await super()._scan()

    def scan(after: int) -> tuple[list[Found[None]], int, bool]:
        return [], after + 10, False  # every scan finds new events up to the head, none to act on

    await follow(Timed("pace", tracking, scan, nothing, concurrency=1), enough)
    gaps = [later - earlier for earlier, later in zip(started, started[1:], strict=False)]
    assert min(gaps[:6]) >= BUSY_SCAN_SECONDS * 0.99, gaps


async def test_a_scan_that_found_work_is_followed_by_another_at_once(tracking, monkeypatch):
    monkeypatch.setattr(log_follower, "BUSY_SCAN_SECONDS", 600.0)  # a paced scan would never come in time
    scans: list[int] = []
    second = asyncio.Event()
    loop = asyncio.get_running_loop()

    def scan(after: int) -> tuple[list[Found[None]], int, bool]:
        scans.append(after)
        if len(scans) == 1:
            return [Found(after + 1, "job", None)], after + 1, False  # something to act on
        loop.call_soon_threadsafe(second.set)
        return [], after, False

    await follow(LogFollower("pace", tracking, scan, nothing, concurrency=1), second)
    assert scans[:2] == [0, 1]


async def test_a_backlog_is_read_batch_after_batch_without_pausing(tracking, monkeypatch):
    monkeypatch.setattr(log_follower, "BUSY_SCAN_SECONDS", 600.0)  # a paced scan would never come in time
    scans: list[int] = []
    caught_up = asyncio.Event()
    loop = asyncio.get_running_loop()

    def scan(after: int) -> tuple[list[Found[None]], int, bool]:
        scans.append(after)
        if after >= 2_000:
            loop.call_soon_threadsafe(caught_up.set)
            return [], after, False
        return [], after + 500, True  # a batch limit: more to read at once (a restart, a new leader)

    await follow(LogFollower("pace", tracking, scan, nothing, concurrency=1), caught_up)
    assert scans[:5] == [0, 500, 1_000, 1_500, 2_000]


async def test_a_recording_cancelled_by_a_stop_is_not_tried_again():
    """A worker's stop cancels a job while it records its outcome: the recording ends there (the
    outcome is produced again after the next start), instead of being retried as a busy store."""
    attempts = 0
    started = asyncio.Event()

    async def record() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            started.set()
            await asyncio.Event().wait()  # the store does not answer: only the cancellation ends it

    job = asyncio.get_running_loop().create_task(log_follower.recorded_with_retries(record, "an outcome"))
    await started.wait()
    job.cancel()
    done, _ = await asyncio.wait({job}, timeout=10)
    assert done == {job} and job.cancelled(), "the job ends when it is cancelled"
    assert attempts == 1


async def test_a_stop_returns_only_once_the_scan_it_interrupted_has_returned(tracking):
    """What stops a worker closes the stores next (the server's runtime does): a scan left
    running in its thread would run a statement on a closed SQLite connection, which crashes
    CPython (a CI run died of it)."""
    scanning = asyncio.Event()
    release, scanned = threading.Event(), threading.Event()
    loop = asyncio.get_running_loop()

    def scan(after: int) -> tuple[list[Found[None]], int, bool]:
        loop.call_soon_threadsafe(scanning.set)
        release.wait(10)  # a slow scan: the store is busy with another writer
        scanned.set()
        return [], after, False

    follower = LogFollower("stop", tracking, scan, nothing, concurrency=1)
    follower.start()
    await asyncio.wait_for(scanning.wait(), 10)
    stopping = asyncio.ensure_future(follower.stop())
    for _ in range(20):  # turns of the event loop: a plain cancellation ends the follower within a few
        await asyncio.sleep(0)
    assert not stopping.done(), "the stop returned while its scan was still running"
    release.set()
    await asyncio.wait_for(stopping, 10)
    assert scanned.is_set()
