"""The admin's view of storage and retention: the blob store's size, what nothing references any
more (and collecting it now), the retention default, the sessions with their own, the next run."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import anyio
import msgspec
from litestar import Controller, Request, get, post

from infrastructure.web.auth import admin_only
from infrastructure.write_side import WriteSide
from projections.documents import referenced_blobs
from projections.sessions import sessions_with_retention
from projections.storage import ReadConnection


class SessionRetention(msgspec.Struct):
    session_id: str
    title: str
    retention_days: int


class StorageView(msgspec.Struct):
    blob_bytes: int
    blob_count: int
    unreferenced_count: int
    unreferenced_bytes: int
    retention_default_days: int | None
    sessions_with_retention: list[SessionRetention]
    next_retention_run_at: datetime | None


class Collected(msgspec.Struct):
    removed: int
    bytes: int


class AdminStorageController(Controller):
    path = "/api/admin/storage"
    tags = ["admin"]
    guards = [admin_only]

    @get("/")
    async def storage(self, write: WriteSide, db: ReadConnection, request: Request[Any, Any, Any]) -> StorageView:
        sizes = await anyio.to_thread.run_sync(lambda: {sha: write.blobs.size(sha) for sha in write.blobs.stored()})
        live = await referenced_blobs(db)
        loose = [sha for sha in sizes if sha not in live]
        return StorageView(
            blob_bytes=sum(sizes.values()),
            blob_count=len(sizes),
            unreferenced_count=len(loose),
            unreferenced_bytes=sum(sizes[sha] for sha in loose),
            retention_default_days=write.settings.retention_days,
            sessions_with_retention=[
                SessionRetention(r["session_id"], r["title"], r["retention_days"]) for r in await sessions_with_retention(db)
            ],
            next_retention_run_at=request.app.state.runtime.next_retention_run_at,
        )

    @post("/collect", status_code=200)
    async def collect(self, write: WriteSide, request: Request[Any, Any, Any]) -> Collected:
        """Removes the blobs nothing references now (once the documents read model has caught up)."""
        candidates = list(await anyio.to_thread.run_sync(lambda: list(write.blobs.stored())))
        sizes = {sha: write.blobs.size(sha) for sha in candidates}
        removed = await request.app.state.blob_collector.collect_from_loop(candidates)
        return Collected(len(removed), sum(sizes.get(sha, 0) for sha in removed))
