"""Rebuilding read models while the server runs: the projectors replay the whole log into a
shadow database beside the read store, catch up with the head, and then, in one transaction
on the read store, their tables are replaced by the shadow's and their positions set to where
the shadow got. Queries keep answering from the old tables until that commit (WAL readers see
the last committed state), so they never see a half-built table; the server's own projection
runner then applies whatever was appended after the shadow's position.

A shadow in progress is a file `read.rebuild.<names>.<pid>.<random>.sqlite3`, which is how
`projections status` (in any process) shows a rebuild and its progress. Rebuilds take turns
(a file lock), so two never swap at once."""

from __future__ import annotations

import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import structlog

from application.chronicle import Chronicle
from infrastructure.metrics import REBUILD_DONE, REBUILD_HEAD, REBUILDS
from infrastructure.storage.blob_store import BlobLock
from infrastructure.storage.read_store import BUMP_GENERATION, GENERATION, SQLiteReadStore
from infrastructure.workers.projection_runner import ProjectionRunner
from projections.projector import Projector

log = structlog.stdlib.get_logger(__name__)
PROGRESS_LOG_SECONDS = 5.0

SHADOW_PREFIX = "read.rebuild."


class RebuildFailed(Exception):
    """A projector failed on an event while rebuilding; the live tables were left as they were."""


def shadow_path(read_store_path: Path, projectors: Sequence[Projector]) -> Path:
    names = "+".join(sorted(p.name for p in projectors))
    return read_store_path.with_name(f"{SHADOW_PREFIX}{names}.{os.getpid()}.{secrets.token_hex(4)}.sqlite3")


def rebuilding(read_store_path: Path) -> dict[str, int]:
    """Projections being rebuilt (by any process) and the position their shadow has reached."""
    found: dict[str, int] = {}
    for path in read_store_path.parent.glob(f"{SHADOW_PREFIX}*.sqlite3"):
        try:
            db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
            try:
                found.update(db.execute("SELECT name, position FROM projection_positions").fetchall())
            finally:
                db.close()
        except sqlite3.Error:
            continue  # just created or just removed
    return found


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def rebuild(
    app: Chronicle,
    read_store_path: Path,
    projectors: Sequence[Projector],
    progress: Callable[[int, int], None] = lambda done, head: None,
) -> int:
    """Rebuilds `projectors` without taking their tables away; returns the position swapped in.
    If keys were destroyed (an erasure, a retention run) while the shadow was built, it may hold
    content that is no longer readable: it is thrown away and built again."""
    names = ",".join(p.name for p in projectors)
    done, head = REBUILD_DONE.labels(names), REBUILD_HEAD.labels(names)
    started = logged = time.monotonic()

    def reported(position: int, now_head: int) -> None:
        """Progress on /metrics at every batch, and in the log every few seconds."""
        nonlocal logged
        done.set(position)
        head.set(now_head)
        if time.monotonic() - logged >= PROGRESS_LOG_SECONDS:
            logged = time.monotonic()
            log.info("rebuild progress", projections=names, position=position, head=now_head)
        progress(position, now_head)

    with BlobLock(read_store_path.with_name("read.rebuild.lock")):  # one rebuild at a time, across processes
        log.info("rebuild started", projections=names, head=app.recorder.max_notification_id() or 0)
        try:
            reached = _rebuild(app, read_store_path, projectors, reported)
        except BaseException as error:
            REBUILDS.labels("failed").inc()
            log.warning("rebuild failed; the live tables are unchanged", projections=names, error=str(error))
            raise
        finally:
            done.set(0)
            head.set(0)
        REBUILDS.labels("swapped").inc()
        log.info("rebuild swapped in", projections=names, position=reached, duration_ms=round((time.monotonic() - started) * 1000))
        return reached


def _rebuild(
    app: Chronicle,
    read_store_path: Path,
    projectors: Sequence[Projector],
    progress: Callable[[int, int], None],
) -> int:
    keys = getattr(app.mapper, "keys", None)
    path = shadow_path(read_store_path, projectors)
    for _ in range(5):
        generation = keys.generation() if keys is not None else 0
        _remove(path)
        try:
            reached = _build(app, path, projectors, progress)
            if keys is not None and keys.generation() != generation:
                keys.forget()
                continue
            _swap(read_store_path, path, projectors, reached)
            return min(reached[p.name] for p in projectors)
        finally:
            _remove(path)
    raise RebuildFailed("keys kept being destroyed while rebuilding; try again")


def _build(app: Chronicle, path: Path, projectors: Sequence[Projector], progress: Callable[[int, int], None]) -> dict[str, int]:
    shadow = SQLiteReadStore(path, scratch=True)
    try:
        shadow.reset(projectors)
        shadow.ensure_schema(projectors)
        runner = ProjectionRunner(app, shadow, projectors, batch_size=5000)
        runner.catch_up(progress)
        if runner.failures:
            name, failure = next(iter(runner.failures.items()))
            raise RebuildFailed(f"{name} failed at position {failure.position}: {failure.error}")
        return shadow.positions()
    finally:
        shadow.close()


def _swap(read_store_path: Path, path: Path, projectors: Sequence[Projector], reached: dict[str, int]) -> None:
    db = sqlite3.connect(read_store_path, isolation_level=None, timeout=60)
    try:
        db.execute("PRAGMA secure_delete=ON")
        db.execute("ATTACH DATABASE ? AS shadow", (str(path),))
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in GENERATION:  # the live store's (`main.`): the shadow has one too
                db.execute(statement.replace("read_generation", "main.read_generation"))
            db.execute(BUMP_GENERATION.replace("read_generation", "main.read_generation"))
            for projector in projectors:
                for table in projector.tables:
                    db.execute(f"DROP TABLE IF EXISTS main.{table}")
                for statement in projector.schema:
                    db.execute(statement)
                for table in projector.tables:
                    columns = ", ".join(row[1] for row in db.execute(f"PRAGMA shadow.table_info({table})"))
                    db.execute(f"INSERT INTO main.{table} (rowid, {columns}) SELECT rowid, {columns} FROM shadow.{table}")
            db.executemany(
                "INSERT INTO main.projection_positions (name, position, updated_at) VALUES (?, ?, CAST(strftime('%s','now') AS REAL))"
                " ON CONFLICT(name) DO UPDATE SET position=excluded.position, updated_at=excluded.updated_at",
                [(p.name, reached[p.name]) for p in projectors],
            )
            db.executemany("DELETE FROM main.projection_failures WHERE name=?", [(p.name,) for p in projectors])
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("DETACH DATABASE shadow")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the replaced pages leave the WAL too
    finally:
        db.close()
