"""A rebuild the server's stop ends (ADR-052): `ServerRuntime.rebuild_progress` raises
`RebuildStopped` at the rebuild's next batch once the server is stopping, so a stop does not wait
minutes for a rebuild, nor for another process's rebuild it waits on. What it leaves: the live
tables as they were, no shadow file, and no rebuild lock held (the key-generation watch rebuilds
after the restart if keys were destroyed). Shadows a killed rebuild left are removed at the next
start or rebuild."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from infrastructure.storage import shadow_rebuild
from infrastructure.storage.shadow_rebuild import REBUILD_LOCK, SHADOW_PREFIX, RebuildStopped, rebuild_running, remove_abandoned_shadows
from tests.projections.projection_log import ChatLog


def test_a_rebuild_ended_by_a_stop_leaves_the_live_tables_and_no_shadow(write_side):
    log = ChatLog(write_side)
    ann = log.user("ann@example.org")
    session = log.session(ann)
    for n in range(20):
        log.post(session, ann, f"message {n}")
    write_side.runner.catch_up()
    projectors = write_side.runner.projectors
    tables = [table for each in projectors for table in each.tables]
    before = write_side.read_store.dump(tables)
    reached: list[int] = []

    def stopping(done: int, head: int) -> None:
        reached.append(done)
        raise RebuildStopped("the server is stopping")

    path = write_side.settings.read_store_path
    with pytest.raises(RebuildStopped):
        shadow_rebuild.rebuild(write_side.app, path, projectors, stopping)
    assert len(reached) == 1, "it ended at its first batch"
    assert write_side.read_store.dump(tables) == before
    assert list(path.parent.glob(f"{SHADOW_PREFIX}*.sqlite3")) == []
    assert not rebuild_running(path)


def test_a_rebuild_waiting_for_another_processs_rebuild_ends_when_the_server_stops(write_side):
    """The rebuild lock is waited for with the progress callback called meanwhile: a stopping
    server's rebuild does not hold the stop until a rebuild elsewhere (the CLI's) is done."""
    path = write_side.settings.read_store_path
    other = os.open(path.with_name(REBUILD_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(other, fcntl.LOCK_EX)  # another process's rebuild, as flock sees it (its own descriptor)
    calls: list[tuple[int, int]] = []

    def stopping(done: int, head: int) -> None:
        calls.append((done, head))
        raise RebuildStopped("the server is stopping")

    try:
        with pytest.raises(RebuildStopped):
            shadow_rebuild.rebuild(write_side.app, path, write_side.runner.projectors, stopping)
        assert calls == [(0, write_side.app.recorder.max_notification_id() or 0)], "asked while it waited, nothing built"
    finally:
        os.close(other)
    assert not rebuild_running(path)


def test_shadows_a_killed_rebuild_left_are_removed_at_start_and_by_the_next_rebuild(write_side):
    """A rebuild holds its lock from before its shadow exists until it is removed, so a shadow
    found by a holder of the lock was left by a killed rebuild; it may hold text erased since."""
    path = write_side.settings.read_store_path
    left = [path.with_name(f"{SHADOW_PREFIX}messages.{n}.0badc0de.sqlite3") for n in (999_998, 999_999)]
    for shadow in left:
        shadow.write_bytes(b"a killed rebuild's shadow")
        Path(f"{shadow}-wal").write_bytes(b"")
    assert remove_abandoned_shadows(path) == 2
    assert list(path.parent.glob(f"{SHADOW_PREFIX}*")) == [path.with_name(REBUILD_LOCK)]
    left[0].write_bytes(b"another")
    shadow_rebuild.rebuild(write_side.app, path, write_side.runner.projectors[:1])
    assert not left[0].exists()
    other = os.open(path.with_name(REBUILD_LOCK), os.O_RDWR)
    fcntl.flock(other, fcntl.LOCK_EX)  # a rebuild running now: its shadow is not touched
    try:
        left[1].write_bytes(b"in use")
        assert remove_abandoned_shadows(path) == 0 and left[1].exists()
    finally:
        os.close(other)
