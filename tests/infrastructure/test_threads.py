"""`workers.threads.run_in_thread` (ADR-052): a task cancelled while its thread runs ends only once
the thread has returned, however often it is cancelled meanwhile (a stop gathers its tasks, and
cancelling a gather cancels them again); a result or an error comes back as it was."""

from __future__ import annotations

import asyncio
import threading

import pytest

from infrastructure.workers.threads import run_in_thread

pytestmark = pytest.mark.anyio


async def turns(count: int = 20) -> None:
    """Lets the event loop run `count` times: a plain cancellation ends a task within a few."""
    for _ in range(count):
        await asyncio.sleep(0)


@pytest.mark.parametrize("cancels", [1, 2])
async def test_a_cancelled_task_ends_only_after_its_thread_has_returned(cancels):
    release, returned = threading.Event(), threading.Event()

    def blocking() -> None:
        release.wait(10)
        returned.set()

    task = asyncio.ensure_future(run_in_thread(blocking))
    await turns()
    for _ in range(cancels):
        task.cancel()
        await turns()
    assert not task.done(), "the task ended while its thread was still running"
    release.set()
    await asyncio.gather(task, return_exceptions=True)
    assert returned.is_set() and task.cancelled()


async def test_a_result_and_an_error_come_back_as_they_were():
    def fails() -> None:
        raise LookupError("no such row")

    assert await run_in_thread(lambda a, b: a + b, 2, 3) == 5
    with pytest.raises(LookupError, match="no such row"):
        await run_in_thread(fails)
