"""Read replicas per node on a shared PostgreSQL log (ADR-041), with real `chronicle serve`
processes: a node that joins a long log says it is not ready (so a load balancer keeps it out)
until its own read store has caught up, then serves what the other node serves; an erasure run
through one node leaves the other node's replica too."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest

from tests.e2e.server import Server, cli
from tests.e2e.test_erasure import occurrences
from tests.postgres import fresh_database
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e
SECRET = "okapi-lantern-5512 opens the archive"


@pytest.fixture
def database_url():
    with fresh_database() as url:
        yield url


def post_many(database_url: str, data_dir: Path, session_id: str, author_id: str, count: int, monkeypatch) -> None:
    """`count` posts through the command bus of this process, in groups of 500, straight into
    the shared log (as many nodes' posts would be): quicker than as many HTTP requests."""
    from application.chat import PostMessage
    from application.command_bus import _Pending
    from infrastructure.bootstrap import bootstrap
    from infrastructure.settings import Settings

    monkeypatch.setenv("CHRONICLE_DATABASE_URL", database_url)
    side = bootstrap(Settings.from_env(data_dir))
    try:
        for start in range(0, count, 500):
            batch = [
                _Pending(PostMessage(UUID(session_id), UUID(author_id), f"note {n} on the harbour plan"), "test", "c", lambda r: None)
                for n in range(start, min(count, start + 500))
            ]
            side.bus._process(batch)
            assert all(not isinstance(p.result, BaseException) for p in batch)
    finally:
        side.close()


def test_a_node_joining_a_long_log_is_not_ready_until_its_replica_has_caught_up(database_url, tmp_path, monkeypatch):
    env = {"CHRONICLE_DATABASE_URL": database_url, "CHRONICLE_ASSISTANT_ANSWERS": ""}
    first = Server(tmp_path / "a", env=env, log_dir=tmp_path).start(timeout=120)
    second = None
    try:
        ann, user = first.client().signup("ann@example.org", name="Ann")
        sid = ann.post("/api/sessions", {"title": "Harbour", "assistant": False}).json()["id"]
        post_many(database_url, tmp_path / "writer", sid, user["id"], 5000, monkeypatch)
        head = first.client().head()
        assert head > 5000

        second = Server(tmp_path / "b", env=env, log_dir=tmp_path).start(timeout=120)
        joining = second.client().get("/health/ready")
        assert joining.status_code == 503, joining.text  # behind by more than the readiness bound
        assert joining.json()["ready"] is False and max(p["lag"] for p in joining.json()["projections"]) > 1000

        wait_for(lambda: second.client().get("/health/ready").status_code == 200, "the new node to be ready", 180)
        on_second = second.client(ann.token)
        wait_for(
            lambda: all(p["position"] >= head for p in second.client().get("/health").json()["projections"]), "the replica at the head", 60
        )
        page = {"limit": 200, "dir": "b"}
        assert (
            on_second.get(f"/api/sessions/{sid}/messages", params=page).json()
            == ann.get(f"/api/sessions/{sid}/messages", params={**page, "after_position": head}).json()
        )
        assert on_second.get("/api/search", params={"q": "note 4321 harbour"}).json()["hits"]
    finally:
        first.stop()
        if second is not None:
            second.stop()


def test_an_erasure_through_one_node_leaves_the_other_nodes_replica(database_url, tmp_path):
    env = {"CHRONICLE_DATABASE_URL": database_url, "CHRONICLE_ASSISTANT_ANSWERS": ""}
    made = cli(
        tmp_path / "a", "users", "create", "root@example.org", "--role", "admin", "--password-stdin", input="admin password\n", env=env
    )
    assert made.returncode == 0, made.stderr
    first = Server(tmp_path / "a", env=env, log_dir=tmp_path).start(timeout=120)
    second = Server(tmp_path / "b", env=env, log_dir=tmp_path).start(timeout=120)
    try:
        login = first.client().post("/api/auth/login", {"email": "root@example.org", "password": "admin password"})
        admin = first.client(login.json()["access_token"])
        ann, ann_user = first.client().signup("ann.erasable@example.org", name="Annabel Erasable")
        bob, bob_user = first.client().signup("bob@example.org", name="Bob")
        sid = ann.post("/api/sessions", {"title": "Shared", "assistant": False}).json()["id"]
        ann.post(f"/api/sessions/{sid}/members", {"user_id": bob_user["id"]})
        mine = ann.post(f"/api/sessions/{sid}/messages", {"content": SECRET}).json()
        bobs = bob.post(f"/api/sessions/{sid}/messages", {"content": "Bob's words stay"}).json()
        bob_on_second = second.client(bob.token)
        # Bob's token comes from node A; node B's replica may not know Bob yet: it waits for the
        # token's position instead of refusing it (ADR-041), and the query for the position.
        found = bob_on_second.get("/api/search", params={"q": "okapi lantern", "after_position": bobs["position"]})
        assert found.status_code == 200 and found.json()["hits"], "the second node's replica has the message"
        needles = [b"okapi-lantern-5512", b"ann.erasable@example.org", b"Annabel Erasable"]
        assert any(f.startswith("read.sqlite3") for f in occurrences(tmp_path / "b", needles))

        erased = admin.post(f"/api/admin/users/{ann_user['id']}/erase")
        assert erased.status_code == 202, erased.text

        wait_for(lambda: occurrences(tmp_path / "b", needles) == [], "the second node's replica to lose the erased text", 90)
        items = bob_on_second.get(f"/api/sessions/{sid}/messages", params={"after_position": erased.json()["position"]}).json()["items"]
        assert {m["id"]: m["content"] for m in items} == {mine["id"]: "[erased]", bobs["id"]: "Bob's words stay"}
        assert bob_on_second.get("/api/search", params={"q": "okapi lantern"}).json()["hits"] == []
        wait_for(lambda: occurrences(tmp_path / "a", needles) == [], "the first node's replica to lose it too", 90)
    finally:
        first.stop()
        second.stop()
