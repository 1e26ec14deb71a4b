"""A rebuild the server's stop ends (ADR-052): `ServerRuntime.rebuild_progress` raises
`RebuildStopped` at the rebuild's next batch once the server is stopping, so a stop does not wait
minutes for a rebuild. What it leaves: the live tables as they were, no shadow file, and no
rebuild lock held (the key-generation watch rebuilds after the restart if keys were destroyed)."""

from __future__ import annotations

import pytest

from infrastructure.storage import shadow_rebuild
from infrastructure.storage.shadow_rebuild import SHADOW_PREFIX, RebuildStopped, rebuild_running
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
