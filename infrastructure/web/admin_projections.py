"""The admin's view of the read models: each projection's position, lag and state, and a
rebuild started from the API (shadow tables swapped in atomically, as the CLI does)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import anyio
import msgspec
from litestar import Controller, Request, get, post
from litestar.exceptions import HTTPException, NotFoundException

from infrastructure.storage.read_store import SQLiteReadStore
from infrastructure.storage.shadow_rebuild import RebuildStopped, rebuild, rebuilding
from infrastructure.web.auth import admin_only
from infrastructure.workers.projection_status import ProjectionStatus, projection_statuses
from infrastructure.workers.threads import run_in_thread
from infrastructure.write_side import WriteSide

log = logging.getLogger(__name__)


class RebuildStarted(msgspec.Struct):
    name: str
    state: str


def read_statuses(write: WriteSide) -> list[ProjectionStatus]:
    store = SQLiteReadStore(write.settings.read_store_path)
    try:
        return projection_statuses(write.reader, store, [p.name for p in write.runner.projectors], write.settings.read_store_path)
    finally:
        store.close()


class AdminProjectionsController(Controller):
    path = "/api/admin/projections"
    tags = ["admin"]
    guards = [admin_only]

    @get("/")
    async def statuses(self, write: WriteSide, request: Request[Any, Any, Any]) -> list[ProjectionStatus]:
        """Each read model's position, the head, lag in events and seconds, and state; while a
        rebuild runs, how fast it goes (events/s since the previous look)."""
        statuses = await anyio.to_thread.run_sync(read_statuses, write)
        seen: dict[str, tuple[float, int]] = request.app.state.setdefault("rebuild_speeds", {})
        now = time.monotonic()
        for status in statuses:
            shadow = status.rebuilt
            if shadow is None:
                seen.pop(status.name, None)
                continue
            before = seen.get(status.name)
            if before is not None and now > before[0]:
                status.events_per_second = round((shadow - before[1]) / (now - before[0]), 1)
            seen[status.name] = (now, shadow)
        return statuses

    @post("/{name:str}/retry", status_code=202)
    async def retry(self, name: str, write: WriteSide, request: Request[Any, Any, Any]) -> RebuildStarted:
        """A failed projector is tried again by rebuilding it from the log, which applies the
        event it stopped at once more (a fixed bug, or a passing fault, lets it through)."""
        return _start_rebuild(name, write, request)

    @post("/{name:str}/rebuild", status_code=202)
    async def rebuild(self, name: str, write: WriteSide, request: Request[Any, Any, Any]) -> RebuildStarted:
        """Starts a rebuild in the background; `GET` shows its progress, then `live`."""
        return _start_rebuild(name, write, request)


def _start_rebuild(name: str, write: WriteSide, request: Request[Any, Any, Any]) -> RebuildStarted:
    projector = next((p for p in write.runner.projectors if p.name == name), None)
    if projector is None:
        raise NotFoundException(f"no projection {name!r}")
    running: dict[str, asyncio.Task[Any]] = request.app.state.setdefault("rebuilds", {})
    if (name in running and not running[name].done()) or name in rebuilding(write.settings.read_store_path):
        raise HTTPException(status_code=409, detail=f"{name} is already being rebuilt")

    runtime = request.app.state.runtime

    async def run() -> None:
        try:
            await run_in_thread(rebuild, write.reader, write.settings.read_store_path, [projector], runtime.rebuild_progress)
            write.runner.wake()
        except RebuildStopped:
            log.info("the rebuild of %s stopped with the server; the live tables are unchanged", name)
        except Exception:  # noqa: BLE001 - reported in the log; the live tables are unchanged
            log.exception("rebuilding %s failed", name)

    running[name] = runtime.in_background(run(), f"rebuild-{name}")
    return RebuildStarted(name, "rebuilding")
