"""Retention by crypto-shredding: old message content is erased, the facts stay."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tests.e2e.conftest import assert_problem
from tests.e2e.server import Server, cli
from tests.e2e.test_erasure import occurrences
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e


def test_content_older_than_a_sessions_retention_is_erased_and_the_facts_stay(tmp_path):
    server = Server(tmp_path).start()
    try:
        ann, ann_user = server.client().signup("ann@example.org")
        bob, bob_user = server.client().signup("bob@example.org")
        short = ann.post("/api/sessions", {"title": "Ephemeral", "assistant": False}).json()["id"]
        kept = ann.post("/api/sessions", {"title": "Archive", "assistant": False}).json()["id"]
        ann.post(f"/api/sessions/{short}/members", {"user_id": bob_user["id"]})
        assert_problem(bob.put(f"/api/sessions/{short}/retention", {"retention_days": 1}), 403)
        assert_problem(ann.put(f"/api/sessions/{short}/retention", {"retention_days": 0}), 400)
        assert ann.put(f"/api/sessions/{short}/retention", {"retention_days": 1}).status_code == 200
        gone = ann.post(f"/api/sessions/{short}/messages", {"content": "kumquat-ephemeral-55"}).json()
        bob.post(f"/api/sessions/{short}/messages", {"content": "bob-ephemeral-66"})
        ann.post(f"/api/sessions/{kept}/messages", {"content": "kumquat-archived-77"})
    finally:
        server.stop()

    today = datetime.now(UTC).date()
    same_day = cli(tmp_path, "retention", "run", "--today", today.isoformat())
    assert same_day.returncode == 0 and "0 session(s) had expired content" in same_day.stderr
    later = cli(tmp_path, "retention", "run", "--today", (today + timedelta(days=2)).isoformat())
    assert later.returncode == 0, later.stderr
    assert f"session {short}: content before {(today + timedelta(days=1)).isoformat()} erased" in later.stderr
    assert occurrences(tmp_path, [b"kumquat-ephemeral-55", b"bob-ephemeral-66"]) == []
    assert occurrences(tmp_path, [b"kumquat-archived-77"]) != []

    server.start()
    try:
        login = server.client().post("/api/auth/login", {"email": "ann@example.org", "password": "correct horse"}).json()
        ann = server.client(login["access_token"])
        items = ann.get(f"/api/sessions/{short}/messages").json()["items"]
        assert [(m["author_id"], m["content"]) for m in items] == [(ann_user["id"], "[erased]"), (bob_user["id"], "[erased]")]
        assert items[0]["id"] == gone["id"] and items[0]["created_at"] == gone["created_at"]
        assert [m["content"] for m in ann.get(f"/api/sessions/{kept}/messages").json()["items"]] == ["kumquat-archived-77"]
        steps = ann.get(f"/api/audit/sessions/{short}/timeline").json()["steps"]
        assert [s["type"] for s in steps][-1] == "ContentExpired"
    finally:
        server.stop()
    assert cli(tmp_path, "audit", "verify").returncode == 0


@pytest.mark.sqlite_only(reason="destroys a key in the data directory's keys.sqlite3, as a cut-short run on one node leaves it")
def test_keys_destroyed_without_the_rebuild_after_them_are_rebuilt_out_of_the_read_models(tmp_path):
    """An expiry or an erasure destroys keys, then rebuilds the read models; if that rebuild fails,
    or a stop or a crash cuts it short, the server's watch of the key generation rebuilds them
    (found by a review: on SQLite nothing did, and the text stayed readable for good)."""
    from infrastructure.storage.sealing import KeyStore

    server = Server(tmp_path).start()
    try:
        ann, user = server.client().signup("ann@example.org")
        sid = ann.post("/api/sessions", {"title": "Plans", "assistant": False}).json()["id"]
        posted = ann.post(f"/api/sessions/{sid}/messages", {"content": "the vault code is 0451"}).json()

        def shown() -> str:
            page = ann.get(f"/api/sessions/{sid}/messages", params={"after_position": posted["position"]}).json()
            return page["items"][0]["content"]

        assert shown() == "the vault code is 0451"
        KeyStore(tmp_path / "keys.sqlite3").destroy(user["id"].replace("-", ""))  # the first step, and nothing after it
        wait_for(lambda: shown() == "[erased]", "the read models to be rebuilt without the destroyed key", timeout=30)
    finally:
        server.stop()
