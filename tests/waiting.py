"""Explicit waits for tests that follow work done in another thread, task or process: poll a
condition until it holds (returning what it returned) or fail after a deadline, saying what
was awaited. A wait returns as soon as the condition holds, unlike a fixed sleep."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def until(condition: Callable[[], T], what: str, timeout: float = 10.0, poll: float = 0.01) -> T:
    """Awaits `condition()` becoming truthy, letting the event loop run in between."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(poll)


def wait_for(condition: Callable[[], T], what: str, timeout: float = 10.0, poll: float = 0.02) -> T:
    """Blocks until `condition()` is truthy (returning it), for tests that follow another process."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)
