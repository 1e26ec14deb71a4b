"""Blocking calls of the background tasks, run in worker threads that a stop waits for.

The workers and the server's runtime stop their tasks with a plain `task.cancel()`. anyio's
`to_thread.run_sync` shields its thread from anyio's own cancel scopes only: a plain cancel
ends the await at once and leaves the thread running, and the stop then closed the stores that
thread was using. CPython's sqlite3 crashes the process (a segmentation fault) when a
connection is closed while another thread runs a statement on it; a CI run died of it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")


async def run_in_thread(function: Callable[..., T], *args: Any) -> T:
    """`anyio.to_thread.run_sync(function, *args)`, except that a cancellation (plain or
    anyio's, once or again while it waits: a stop cancels the tasks it gathers a second time)
    takes effect only once the thread has returned."""
    call = asyncio.ensure_future(anyio.to_thread.run_sync(function, *args))
    try:
        return await asyncio.shield(call)
    except BaseException:
        while not call.done():
            try:
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({call})
            except asyncio.CancelledError:
                continue  # the first cancellation is the one that goes on, below
        if not call.cancelled():
            call.exception()  # retrieved: the cancellation is what goes on
        raise
