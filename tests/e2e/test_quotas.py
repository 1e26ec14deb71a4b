"""Quotas set by admins, usage, and the admin's statistics, through a real server."""

from __future__ import annotations

import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests import document_files as files
from tests.backend import stored_events
from tests.e2e.conftest import assert_problem
from tests.e2e.server import Api, Server, cli
from tests.e2e.test_documents import convert, upload, uploaded

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("quotas")
    assert (
        cli(data_dir, "users", "create", "root@example.org", "--role", "admin", "--password-stdin", input="admin password\n").returncode
        == 0
    )
    server = Server(data_dir).start()
    token = server.client().post("/api/auth/login", {"email": "root@example.org", "password": "admin password"}).json()
    yield server, server.client(token["access_token"])
    server.stop()


def usage(client, after: int | None = None) -> dict:
    response = client.get("/api/me/usage", params={"after_position": after} if after else None)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_messages_per_day_quota_answers_429_naming_it_and_when_it_resets(site):
    server, admin = site
    ann, ann_user = server.client().signup("ann@example.org")
    set_quota = admin.put(f"/api/admin/users/{ann_user['id']}/quotas", {"messages_per_day": 3})
    assert set_quota.status_code == 200 and set_quota.json()["messages_per_day"] == 3
    assert usage(ann, set_quota.json()["position"])["quotas"]["messages_per_day"] == 3  # quotas apply once projected
    sid = ann.post("/api/sessions", {"title": "Chatty", "assistant": False}).json()["id"]
    positions = []
    for n in range(3):
        posted = ann.post(f"/api/sessions/{sid}/messages", {"content": f"message {n}"})
        assert posted.status_code == 201
        positions.append(posted.json()["position"])
    usage(ann, positions[-1])
    refused = ann.post(f"/api/sessions/{sid}/messages", {"content": "one too many"})
    body = assert_problem(refused, 429)
    assert body["quota"] == "messages_per_day" and body["limit"] == 3 and body["used"] == 3
    assert body["resets_at"].endswith("T00:00:00+00:00") and int(refused.headers["retry-after"]) > 0
    seen = usage(ann)
    assert seen["messages_today"] == 3 and seen["quotas"]["messages_per_day"] == 3

    lifted = admin.put(f"/api/admin/users/{ann_user['id']}/quotas", {"messages_per_day": None})
    assert usage(ann, lifted.json()["position"])["quotas"]["messages_per_day"] is None
    assert ann.post(f"/api/sessions/{sid}/messages", {"content": "free again"}).status_code == 201
    events = [(row.state,) for row in stored_events(server.data_dir, "UserQuotasSet")]
    admin_id = admin.get("/api/me").json()["id"]
    assert len(events) == 2 and all(f'"actor_id":"{admin_id}"'.encode() in state for (state,) in events)
    assert lifted.json()["messages_per_day"] is None


def test_quotas_are_for_admins_and_must_be_sensible(site):
    server, admin = site
    bob, bob_user = server.client().signup("bob@example.org")
    assert_problem(bob.put(f"/api/admin/users/{bob_user['id']}/quotas", {"messages_per_day": 1000}), 403)
    assert_problem(admin.put(f"/api/admin/users/{bob_user['id']}/quotas", {"messages_per_day": -1}), 400)
    # Beyond 2**53 - 1 (and SQLite's 64-bit integers): once in the log it stopped the users projection.
    assert_problem(admin.put(f"/api/admin/users/{bob_user['id']}/quotas", {"storage_bytes": 2**64}), 400, "storage_bytes")
    assert_problem(admin.put(f"/api/admin/users/{bob_user['id']}/quotas", {"replies_per_day": 2**53}), 400, "replies_per_day")
    assert_problem(admin.put(f"/api/admin/users/{bob_user['id']}/quotas", {"bananas": 1}), 400)
    assert_problem(admin.put("/api/admin/users/00000000-0000-4000-8000-000000000000/quotas", {"storage_bytes": 1}), 404)
    assert_problem(bob.get("/api/admin/stats"), 403)


def test_a_storage_quota_refuses_the_upload_that_would_pass_it(site):
    server, admin = site
    cy, cy_user = server.client().signup("cy@example.org")
    admin.put(f"/api/admin/users/{cy_user['id']}/quotas", {"storage_bytes": 1000})
    first = uploaded(cy, "small.txt", b"x" * 600)
    usage(cy, first["position"])
    body = assert_problem(upload(cy, "more.txt", b"y" * 600), 429)
    assert body["quota"] == "storage_bytes" and body["used"] == 600 and body["resets_at"] is None
    assert list((server.data_dir / "blobs" / "incoming").iterdir()) == []
    deleted = cy.delete(f"/api/documents/{first['id']}")
    assert usage(cy, deleted.json()["position"])["storage_bytes"] == 0
    assert uploaded(cy, "more.txt", b"y" * 600)["size"] == 600


def test_converted_outputs_count_against_the_storage_quota(site):
    """A conversion's output is stored too: it counts as its document's owner's, and a quota
    that is used up refuses the next conversion (its size is known only once it is done)."""
    server, admin = site
    gus, gus_user = server.client().signup("gus@example.org")
    admin.put(f"/api/admin/users/{gus_user['id']}/quotas", {"storage_bytes": 1000})
    document = uploaded(gus, "notes.md", b"# Notes\n\n" + b"word " * 110, content_type="text/markdown")
    html = convert(gus, document["id"], "html")
    assert html["status"] == "completed", html
    used = usage(gus, gus.head())["storage_bytes"]
    assert used == document["size"] + html["size"] and used > 1000
    body = assert_problem(gus.post(f"/api/documents/{document['id']}/conversions", {"target": "text"}), 429)
    assert body["quota"] == "storage_bytes" and body["used"] == used
    again = gus.post(f"/api/documents/{document['id']}/conversions", {"target": "html"})
    assert again.status_code == 202 and again.json()["id"] == html["id"], "a repeated request answers the existing one"
    sid = gus.post("/api/sessions", {"title": "Shared", "assistant": False}).json()["id"]
    hal, hal_user = server.client().signup("hal@example.org")
    gus.post(f"/api/sessions/{sid}/members", {"user_id": hal_user["id"]})
    at = gus.post(f"/api/sessions/{sid}/documents", {"document_id": document["id"]}).json()["position"]
    hal.get(f"/api/sessions/{sid}/documents", params={"after_position": at})
    body = assert_problem(hal.post(f"/api/documents/{document['id']}/conversions", {"target": "markdown"}), 429)
    assert "owner" in body["detail"], "a member's request counts against the owner's quota"
    assert "used" not in body and "limit" not in body and str(used) not in body["detail"], "and does not show the owner's figures"
    assert_problem(upload(gus, "one more.txt", b"x"), 429)
    gus.delete(f"/api/documents/{document['id']}")
    assert usage(gus, gus.head())["storage_bytes"] == 0, "the outputs went with their document"


def test_uploads_sent_at_once_cannot_together_pass_a_storage_quota(site):
    server, admin = site
    fay, fay_user = server.client().signup("fay.uploads@example.org")
    admin.put(f"/api/admin/users/{fay_user['id']}/quotas", {"storage_bytes": 1000})
    clients = [Api(str(fay.http.base_url), fay.token) for _ in range(4)]  # a connection each
    ready = threading.Barrier(len(clients))

    def send(n: int) -> int:
        ready.wait(timeout=30)
        return upload(clients[n], f"part-{n}.txt", bytes([65 + n]) * 600).status_code

    with ThreadPoolExecutor(len(clients)) as pool:
        codes = sorted(pool.map(send, range(len(clients))))
    assert codes == [201, 429, 429, 429]
    mine = fay.get("/api/documents", params={"after_position": fay.head()}).json()["items"]
    assert sum(d["size"] for d in mine) == 600


def test_an_exhausted_reply_quota_records_the_reply_as_failed(site):
    server, admin = site
    dee, dee_user = server.client().signup("dee@example.org")
    admin.put(f"/api/admin/users/{dee_user['id']}/quotas", {"replies_per_day": 1})
    sid = dee.post("/api/sessions", {"title": "Questions"}).json()["id"]
    dee.post(f"/api/sessions/{sid}/messages", {"content": "the launch is on friday"})
    deadline = time.monotonic() + 20
    while True:
        items = dee.get(f"/api/sessions/{sid}/messages", params={"after_position": dee.head()}).json()["items"]
        if [m for m in items if m["role"] == "assistant"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    second = dee.post(f"/api/sessions/{sid}/messages", {"content": "when is the launch?"}).json()
    deadline = time.monotonic() + 20
    while True:
        failed = [(row.state,) for row in stored_events(server.data_dir, "AssistantReplyFailed")]
        if failed or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(failed) == 1 and b'"reason":"quota_exceeded"' in failed[0][0]
    assert second["id"].replace("-", "") in failed[0][0].decode()
    assert usage(dee, dee.head())["replies_today"] == 1


def test_admin_stats_count_what_is_stored(site):
    server, admin = site
    eve, _ = server.client().signup("eve@example.org")
    sid = eve.post("/api/sessions", {"title": "Stats", "assistant": False}).json()["id"]
    eve.post(f"/api/sessions/{sid}/messages", {"content": "one"})
    twice = files.TEXT
    uploaded(eve, "a.txt", twice)
    last = uploaded(eve, "b.txt", twice)
    stats = admin.get("/api/admin/stats", params={"after_position": last["position"]}).json()
    assert stats["events"] == admin.head() and stats["users"] >= 2 and stats["sessions"] >= 1
    assert stats["documents"] >= 2 and stats["messages"] >= 1
    db = sqlite3.connect(server.data_dir / "read.sqlite3")
    expected = db.execute("SELECT SUM(size) FROM (SELECT MAX(size) AS size FROM documents GROUP BY sha256)").fetchone()[0]
    converted = db.execute(
        "SELECT COALESCE(SUM(s), 0) FROM (SELECT MAX(output_size) AS s FROM conversions"
        " WHERE output_sha256 IS NOT NULL GROUP BY output_sha256)"
    ).fetchone()[0]
    assert stats["storage_bytes"] == expected + converted


def test_concurrent_requests_cannot_both_take_the_last_unit_of_a_quota(site):
    """Quotas are decided by the commands that consume them, one at a time on the write side."""
    import json
    from concurrent.futures import ThreadPoolExecutor

    from websockets.sync.client import connect

    from tests.e2e.test_streams import ws_url

    server, admin = site
    eve, eve_user = server.client().signup("eve.racer@example.org")
    admin.put(f"/api/admin/users/{eve_user['id']}/quotas", {"messages_per_day": 3, "replies_per_day": 1})
    sid = eve.post("/api/sessions", {"title": "Race"}).json()["id"]
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", eve.token, 0)) as ws:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda n: eve.post(f"/api/sessions/{sid}/messages", {"content": f"Question {n}?"}).status_code, range(8)))
        assert sorted(codes) == [201, 201, 201] + [429] * 5
        outcomes = []
        while len(outcomes) < 3:  # one outcome frame per accepted question
            frame = json.loads(ws.recv(timeout=30))
            if frame["type"] in ("reply.completed", "reply.failed"):
                outcomes.append(frame)
    assert [f["type"] for f in outcomes].count("reply.completed") == 1
    assert [f["data"]["reason"] for f in outcomes if f["type"] == "reply.failed"] == ["quota_exceeded", "quota_exceeded"]
