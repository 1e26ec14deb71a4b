"""Rebuilding read models while the server runs: the projectors replay the whole log into a
shadow database beside the read store, catch up with the head, and then, in one transaction
on the read store, their tables are replaced by the shadow's and their positions set to where
the shadow got. Queries keep answering from the old tables until that commit (WAL readers see
the last committed state), so they never see a half-built table; the server's own projection
runner then applies whatever was appended after the shadow's position.

A shadow in progress is a file `read.rebuild.<names>.<pid>.<random>.sqlite3`, which is how
`projections status` (in any process) shows a rebuild and its progress. Rebuilds take turns
(a file lock), so two never swap at once.

With `settings` given, a large log (PARALLEL_FROM events) and more than one core, the projectors
are split into groups of about equal cost (`Projector.rebuild_cost`), each group built into a
shadow of its own by a process of its own (each reads and decodes the log itself: decoding is
cheaper than shipping decoded events between processes), and every shadow is swapped in by the
same single transaction (ADR-046)."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from contextlib import contextmanager
from pathlib import Path

import structlog

from application.chronicle import Chronicle
from infrastructure.metrics import REBUILD_DONE, REBUILD_HEAD, REBUILDS
from infrastructure.settings import Settings
from infrastructure.storage.read_store import BUMP_GENERATION, GENERATION, SQLiteReadStore
from infrastructure.workers.projection_runner import ProjectionRunner
from projections.projector import Projector

log = structlog.stdlib.get_logger(__name__)
PROGRESS_LOG_SECONDS = 5.0

SHADOW_PREFIX = "read.rebuild."
PARALLEL_FROM = 20_000
"""Below this many events a second process costs more (its start-up) than it saves."""
MAX_WORKERS = 4
BATCH_SIZE = 10_000


class RebuildFailed(Exception):
    """A projector failed on an event while rebuilding; the live tables were left as they were."""


class RebuildStopped(Exception):
    """The process is stopping: a rebuild's progress callback raises it to end the rebuild at its
    next batch (its shadow is thrown away; the live tables are left as they were)."""


def shadow_path(read_store_path: Path, projectors: Sequence[Projector]) -> Path:
    names = "+".join(sorted(p.name for p in projectors))
    return read_store_path.with_name(f"{SHADOW_PREFIX}{names}.{os.getpid()}.{secrets.token_hex(4)}.sqlite3")


def rebuilding(read_store_path: Path) -> dict[str, int]:
    """Projections being rebuilt (by any process) and the position their shadow has reached."""
    found: dict[str, int] = {}
    for path in read_store_path.parent.glob(f"{SHADOW_PREFIX}*.sqlite3"):
        found.update(_shadow_positions(path))
    return found


def _shadow_positions(path: Path) -> dict[str, int]:
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        try:
            return dict(db.execute("SELECT name, position FROM projection_positions").fetchall())
        finally:
            db.close()
    except sqlite3.Error:
        return {}  # just created or just removed


def rebuild_groups(projectors: Sequence[Projector], workers: int) -> list[list[Projector]]:
    """At most `workers` groups of about equal `rebuild_cost` (largest first, each to the lightest group)."""
    groups: list[list[Projector]] = [[] for _ in range(max(1, min(workers, len(projectors))))]
    for projector in sorted(projectors, key=lambda p: -p.rebuild_cost):
        min(groups, key=lambda g: sum(p.rebuild_cost for p in g)).append(projector)
    return [group for group in groups if group]


def _workers(settings: Settings | None, projectors: Sequence[Projector], head: int, workers: int | None) -> int:
    """One process per core that is idle now (a loaded host gains nothing from a second one)."""
    if settings is None or len(projectors) < 2 or head < PARALLEL_FROM:
        return 1
    if workers is not None:
        return max(1, workers)
    cores = len(os.sched_getaffinity(0))
    return max(1, min(MAX_WORKERS, cores, int(cores - os.getloadavg()[0] + 0.5)))


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


REBUILD_LOCK = "read.rebuild.lock"
"""Beside the read store: held (`flock`) for the whole of a rebuild, by whichever process runs it."""


LOCK_POLL_SECONDS = 0.25


@contextmanager
def _rebuild_lock(read_store_path: Path, waiting: Callable[[], None]) -> Iterator[None]:
    """The rebuild lock, waited for while another process rebuilds; `waiting` is called every
    LOCK_POLL_SECONDS meanwhile, so a stopping server's rebuild ends there too (its progress
    callback raises) instead of holding the stop until the other rebuild is done."""
    fd = os.open(read_store_path.with_name(REBUILD_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waiting()
                time.sleep(LOCK_POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _remove_shadows(read_store_path: Path) -> int:
    """Every shadow file beside the read store. Only for a holder of the rebuild lock: a rebuild
    holds it from before its shadow exists until after it is removed, so any shadow found then
    was left by a rebuild that was killed (they may hold text erased since)."""
    shadows = list(read_store_path.parent.glob(f"{SHADOW_PREFIX}*.sqlite3"))
    for path in shadows:
        _remove(path)
    return len(shadows)


def remove_abandoned_shadows(read_store_path: Path) -> int:
    """At a server's start: the shadows a killed rebuild left, unless a rebuild runs now."""
    path = read_store_path.with_name(REBUILD_LOCK)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0
        try:
            return _remove_shadows(read_store_path)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def rebuild_running(read_store_path: Path) -> bool:
    """Whether a rebuild of this read store holds its lock now, in this process or another."""
    path = read_store_path.with_name(REBUILD_LOCK)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def rebuild(
    app: Chronicle,
    read_store_path: Path,
    projectors: Sequence[Projector],
    progress: Callable[[int, int], None] = lambda done, head: None,
    *,
    settings: Settings | None = None,
    workers: int | None = None,
) -> int:
    """Rebuilds `projectors` without taking their tables away; returns the position swapped in.
    If keys were destroyed (an erasure, a retention run) while the shadow was built, it may hold
    content that is no longer readable: it is thrown away and built again. `settings` (how to
    open the log) lets groups of projectors be built by processes of their own: `workers` of
    them, or as many as the machine has idle cores."""
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

    with _rebuild_lock(read_store_path, lambda: progress(0, app.recorder.max_notification_id() or 0)):  # one at a time
        removed = _remove_shadows(read_store_path)
        if removed:
            log.warning("removed shadows a stopped or killed rebuild left", files=removed)
        log.info("rebuild started", projections=names, head=app.recorder.max_notification_id() or 0)
        try:
            reached = _rebuild(app, read_store_path, projectors, reported, settings, workers)
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
    settings: Settings | None,
    workers: int | None,
) -> int:
    keys = getattr(app.mapper, "keys", None)
    groups = rebuild_groups(projectors, _workers(settings, projectors, app.recorder.max_notification_id() or 0, workers))
    if len(groups) > 1:
        log.info("rebuilding in processes", groups=[[p.name for p in group] for group in groups])
    paths = [shadow_path(read_store_path, group) for group in groups]
    for _ in range(5):
        generation = keys.generation() if keys is not None else 0
        for path in paths:
            _remove(path)
        try:
            if len(groups) == 1:
                reached = _build(app, paths[0], groups[0], progress)
            else:
                assert settings is not None
                reached = _build_in_processes(app, settings, groups, paths, progress)
            if keys is not None and keys.generation() != generation:
                keys.forget()
                continue
            _swap(read_store_path, list(zip(paths, groups, strict=True)), reached)
            return min(reached[p.name] for p in projectors)
        finally:
            for path in paths:
                _remove(path)
    raise RebuildFailed("keys kept being destroyed while rebuilding; try again")


def _build_in_processes(
    app: Chronicle, settings: Settings, groups: list[list[Projector]], paths: list[Path], progress: Callable[[int, int], None]
) -> dict[str, int]:
    """Each group's shadow built by a process of its own (spawned: safe beside the server's
    threads); progress is read from the shadows' positions, as `projections status` reads it."""
    reached: dict[str, int] = {}
    with ProcessPoolExecutor(len(groups), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_build_group, settings, group, path) for group, path in zip(groups, paths, strict=True)]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=1.0, return_when=FIRST_EXCEPTION)
            if any(future.exception() is not None for future in done):
                pool.shutdown(cancel_futures=True)
                break
            positions = [_shadow_positions(path) for path in paths]
            progress(min((at for found in positions for at in found.values()), default=0), app.recorder.max_notification_id() or 0)
        for future in futures:
            reached.update(future.result())  # raises what a group raised
    return reached


def _build_group(settings: Settings, projectors: list[Projector], path: Path) -> dict[str, int]:
    """In a process of its own: one group's shadow, from a reader of the log of its own."""
    from infrastructure.storage.event_store import open_event_store

    app = open_event_store(settings, cached=False)
    try:
        return _build(app, path, projectors, lambda done, head: None)
    finally:
        app.close()


def _build(app: Chronicle, path: Path, projectors: Sequence[Projector], progress: Callable[[int, int], None]) -> dict[str, int]:
    shadow = SQLiteReadStore(path, scratch=True)
    try:
        shadow.reset(projectors)
        shadow.ensure_schema(projectors)
        runner = ProjectionRunner(app, shadow, projectors, batch_size=BATCH_SIZE)
        runner.catch_up(progress)
        if runner.failures:
            name, failure = next(iter(runner.failures.items()))
            raise RebuildFailed(f"{name} failed at position {failure.position}: {failure.error}")
        return shadow.positions()
    finally:
        shadow.close()


def _copy_table(db: sqlite3.Connection, shadow: str, table: str, kinds: dict[str, str]) -> None:
    """Copies a shadow table into its new, empty twin in the read store. `INSERT INTO t SELECT *
    FROM t` between tables of the same schema is SQLite's transfer optimisation: rows and index
    entries are copied as stored (rowids kept), not inserted one by one. A virtual table (the
    FTS5 index) is copied as its shadow tables are stored, so nothing is tokenised again."""
    if kinds.get(table) != "virtual":
        db.execute(f"INSERT INTO main.{table} SELECT * FROM {shadow}.{table}")
        return
    for name, kind in kinds.items():
        if kind == "shadow" and name.startswith(f"{table}_"):
            db.execute(f"DELETE FROM main.{name}")
            db.execute(f"INSERT INTO main.{name} SELECT * FROM {shadow}.{name}")


def _swap(read_store_path: Path, shadows: list[tuple[Path, list[Projector]]], reached: dict[str, int]) -> None:
    """Every shadow's tables replace the live ones, and their positions are set, in one transaction."""
    projectors = [projector for _, group in shadows for projector in group]
    db = sqlite3.connect(read_store_path, isolation_level=None, timeout=60)
    try:
        db.execute("PRAGMA secure_delete=ON")
        kinds: list[dict[str, str]] = []
        for index, (path, _) in enumerate(shadows):
            db.execute(f"ATTACH DATABASE ? AS shadow{index}", (str(path),))
            kinds.append({row[1]: row[2] for row in db.execute(f"PRAGMA shadow{index}.table_list")})
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in GENERATION:  # the live store's (`main.`): the shadow has one too
                db.execute(statement.replace("read_generation", "main.read_generation"))
            db.execute(BUMP_GENERATION.replace("read_generation", "main.read_generation"))
            for index, (_, group) in enumerate(shadows):
                for projector in group:
                    for table in projector.tables:
                        db.execute(f"DROP TABLE IF EXISTS main.{table}")
                    for statement in projector.schema:
                        db.execute(statement)
                    for table in projector.tables:
                        _copy_table(db, f"shadow{index}", table, kinds[index])
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
        for index in range(len(shadows)):
            db.execute(f"DETACH DATABASE shadow{index}")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the replaced pages leave the WAL too
    finally:
        db.close()
