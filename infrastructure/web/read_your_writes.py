"""Read-your-writes: a query may wait until its read model has reached a given position."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable

from litestar.exceptions import HTTPException

from infrastructure.web.problems import ReadModelBehind


class ProjectionProgress:
    """Positions the projectors have committed, as this process has seen them, and the
    queries waiting for them. Updated on the event loop (the runner thread calls in with
    `call_soon_threadsafe`)."""

    def __init__(self, positions: dict[str, int], wait_seconds: float, head: Callable[[], Awaitable[int]]) -> None:
        self.positions = dict(positions)
        self._wait_seconds = wait_seconds
        self._head = head
        self._waiters: list[tuple[tuple[str, ...], int, asyncio.Future[None]]] = []

    def waiting_for(self, position: int) -> int:
        """How many queries are waiting for the read models to reach `position`."""
        return sum(1 for _, wanted, future in self._waiters if wanted == position and not future.done())

    def update(self, positions: dict[str, int]) -> None:
        """Positions as the runner committed or re-read them; they may go down when a
        rebuild in another process has reset a projection."""
        self.positions.update(positions)
        still: list[tuple[tuple[str, ...], int, asyncio.Future[None]]] = []
        for names, position, future in self._waiters:
            if future.done():
                continue
            if self._reached(names, position):
                future.set_result(None)
            else:
                still.append((names, position, future))
        self._waiters = still

    def _reached(self, names: Iterable[str], position: int) -> bool:
        return all(self.positions.get(name, 0) >= position for name in names)

    async def wait(self, names: tuple[str, ...], position: int | None) -> None:
        """Returns once every named read model has reached `position`; a position the log
        has not reached is refused at once (409, naming the head) instead of held open."""
        if position is None or self._reached(names, position):
            return
        head = await self._head()
        if position > head:
            raise HTTPException(
                status_code=409, detail=f"after_position {position} is beyond the log's head ({head})", extra={"head": head}
            )
        if self._reached(names, position):  # reached while the head was read
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiter = (names, position, future)
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(future, self._wait_seconds)
        except TimeoutError:
            raise ReadModelBehind(position) from None
        finally:
            if not future.done() or future.cancelled():
                self._waiters = [w for w in self._waiters if w is not waiter]
