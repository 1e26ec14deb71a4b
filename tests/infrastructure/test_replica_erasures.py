"""A node's read replica follows erasures made by other nodes (ADR-041): when the key store's
generation moved past the one the replica was built at, the replica is rebuilt and forgets what
the destroyed keys sealed. Two write sides on one PostgreSQL database stand for two nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from application.accounts import RegisterUser
from application.chat import PostMessage, StartSession
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings
from infrastructure.workers.replica_erasures import catch_up_with_erasures
from tests.postgres import fresh_database

SECRET = "quokka-ledger-9931"


@pytest.fixture
def two_nodes(tmp_path: Path, monkeypatch):
    with fresh_database() as url:
        monkeypatch.setenv("CHRONICLE_DATABASE_URL", url)
        first, second = bootstrap(Settings.from_env(tmp_path / "a")), bootstrap(Settings.from_env(tmp_path / "b"))
        try:
            yield first, second
        finally:
            first.close()
            second.close()


def contents(node) -> list[str]:
    return [row[0] for row in node.read_store._connection.execute("SELECT content FROM messages ORDER BY position")]


def test_keys_destroyed_through_another_node_are_rebuilt_out_of_this_replica(two_nodes):
    first, second = two_nodes
    ann = first.bus.execute_now(RegisterUser("ann@example.org", "Ann", "h"), "test").value
    session = first.bus.execute_now(StartSession(ann.id, "Notes", False), str(ann.id)).value
    first.bus.execute_now(PostMessage(session.id, ann.id, SECRET), str(ann.id))
    assert catch_up_with_erasures(second) is False  # a new replica takes today's generation
    second.runner.catch_up()
    assert contents(second) == [SECRET]

    first.keys.destroy(ann.id.hex)  # the erasure runs on the first node

    assert catch_up_with_erasures(second) is True
    assert contents(second) == ["[erased]"]
    assert second.read_store.key_generation() == second.keys.generation()
    assert catch_up_with_erasures(second) is False  # once is enough


def test_a_node_that_rebuilt_after_its_own_erasure_does_not_rebuild_again(two_nodes):
    from infrastructure.workers.erasure import rebuild_after_erasure

    first, _ = two_nodes
    ann = first.bus.execute_now(RegisterUser("ann@example.org", "Ann", "h"), "test").value
    assert catch_up_with_erasures(first) is False
    first.keys.destroy(ann.id.hex)
    rebuild_after_erasure(first, lambda: None)
    assert catch_up_with_erasures(first) is False


def test_a_rebuild_in_progress_is_not_started_again_but_waited_for(two_nodes):
    """The node that erases destroys the keys, then rebuilds; its watch, seeing the generation
    move meanwhile, must not queue a second full rebuild behind the first."""
    from infrastructure.storage.blob_store import BlobLock
    from infrastructure.storage.shadow_rebuild import REBUILD_LOCK

    first, _ = two_nodes
    ann = first.bus.execute_now(RegisterUser("ann@example.org", "Ann", "h"), "test").value
    assert catch_up_with_erasures(first) is False
    first.keys.destroy(ann.id.hex)
    with BlobLock(first.settings.read_store_path.with_name(REBUILD_LOCK)):  # a rebuild is running
        assert catch_up_with_erasures(first) is False
    assert catch_up_with_erasures(first) is True, "with no rebuild running, the destroyed keys are rebuilt out"
