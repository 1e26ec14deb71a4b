"""What the admin panel calls, against a real server: the dashboard (from the same counters as
/metrics), people (search, detail, invitations, password resets), audit (feed by subject,
export, chain head and verification), storage, and who may call each of them."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import assert_problem
from tests.e2e.server import Api
from tests.e2e.test_documents import uploaded
from tests.e2e.test_streams import ws_url

pytestmark = pytest.mark.e2e

ADMIN_GETS = ["/api/admin/dashboard", "/api/admin/storage", "/api/admin/users", "/api/admin/projections", "/api/admin/stats"]
AUDIT_GETS = ["/api/audit/chain", "/api/audit/events", "/api/audit/export"]


def eventually(probe, timeout: float = 20):
    """Polls what has no event to wait on: the dashboard's 5 s sampler, a background verification."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.2)
    return value


def metric(server, name: str) -> float:
    text = httpx.get(f"{server.url}/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ") or line.startswith(name + "{"))


def test_who_may_call_the_admin_and_audit_endpoints(server, new_user):
    user, _ = new_user("plain")
    auditor, auditor_user = new_user("auditor")
    admin = server.admin()
    assert admin.patch(f"/api/admin/users/{auditor_user['id']}", {"role": "auditor"}).status_code == 200
    auditor = Api(
        server.url,
        server.client().post("/api/auth/login", {"email": auditor_user["email"], "password": "correct horse"}).json()["access_token"],
    )
    for path in ADMIN_GETS:
        assert_problem(user.get(path), 403)
        assert_problem(auditor.get(path), 403)
        assert admin.get(path).status_code == 200, path
    for path in AUDIT_GETS:
        assert_problem(user.get(path), 403)
        assert auditor.get(path).status_code == 200, path
    assert_problem(user.post("/api/admin/invitations", {"email": "x@example.org"}), 403)
    assert_problem(auditor.post("/api/admin/storage/collect"), 403)
    assert_problem(user.post("/api/audit/verifications"), 403)


def test_the_dashboard_counts_requests_and_streams_as_metrics_does(server, new_user):
    admin = server.admin()
    ann, _ = new_user("ann")
    sid = ann.post("/api/sessions", {"title": "Busy", "assistant": False}).json()["id"]
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", ann.token, 0)):
        for n in range(30):
            ann.post(f"/api/sessions/{sid}/messages", {"content": f"post {n}"})
        # The dashboard shows its latest sample (one every 5 s): wait for one taken after the posts.
        board = eventually(lambda: (b := admin.get("/api/admin/dashboard").json())["requests_per_second"] > 0 and b["head"] >= 30 and b)
        assert board["open_websockets"] == metric(server, "chronicle_websocket_connections") >= 1
        assert board["active_users"] >= 2
        assert board["response_ms"]["p99"] is not None and board["error_rate"] == 0.0
        assert {p["name"] for p in board["projections"]} >= {"messages", "users"}
        assert board["series"] and board["process"]["memory_bytes"] > 0


def test_people_search_detail_and_the_record_of_what_admins_did(server, new_user):
    admin = server.admin()
    _, zed = new_user("zedekiah")
    found = admin.get("/api/admin/users", params={"q": "ZEDEKIAH", "after_position": admin.head()}).json()["items"]
    assert [u["id"] for u in found] == [zed["id"]]
    admin.put(f"/api/admin/users/{zed['id']}/quotas", {"messages_per_day": 5, "replies_per_day": None, "storage_bytes": None})
    changed = admin.patch(f"/api/admin/users/{zed['id']}", {"role": "auditor"}).json()
    detail = admin.get(f"/api/admin/users/{zed['id']}", params={"after_position": changed["position"]}).json()
    assert detail["user"]["role"] == "auditor" and detail["sessions"] == 0
    assert detail["usage"]["quotas"]["messages_per_day"] == 5
    record = admin.get("/api/audit/events", params={"subject": zed["id"]}).json()["items"]
    assert [e["type"] for e in record] == ["UserRegistered", "UserQuotasSet", "UserRoleChanged"]
    admin_id = admin.get("/api/me").json()["id"]
    assert [e["actor_id"] for e in record[1:]] == [admin_id, admin_id]


def test_an_invitation_signs_up_one_person_once_with_its_role(server):
    admin = server.admin()
    issued = admin.post("/api/admin/invitations", {"email": "invited@example.org", "role": "auditor"})
    assert issued.status_code == 201, issued.text
    link = issued.json()
    assert link["url"] == f"/invite/{link['token']}"
    anon = server.client()
    assert anon.get(f"/api/auth/invitations/{link['token']}").json()["email"] == "invited@example.org"
    forged = link["token"][:-3] + "xyz"
    assert_problem(anon.post(f"/api/auth/invitations/{forged}", {"display_name": "Eve", "password": "correct horse"}), 410)
    created = anon.post(f"/api/auth/invitations/{link['token']}", {"display_name": "Ivy", "password": "correct horse"})
    assert created.status_code == 201, created.text
    assert created.json()["role"] == "auditor" and created.json()["email"] == "invited@example.org"
    assert anon.post("/api/auth/login", {"email": "invited@example.org", "password": "correct horse"}).status_code == 200
    assert_problem(anon.post(f"/api/auth/invitations/{link['token']}", {"display_name": "Again", "password": "correct horse"}), 410)
    assert_problem(anon.get(f"/api/auth/invitations/{link['token']}"), 410)
    assert_problem(anon.get("/api/auth/invitations/not-a-token"), 404)


def test_a_password_reset_link_sets_a_password_once_and_ends_earlier_tokens(server, new_user):
    admin = server.admin()
    bob, bob_user = new_user("bob")
    link = admin.post(f"/api/admin/users/{bob_user['id']}/password-reset").json()
    anon = server.client()
    assert anon.post(f"/api/auth/password-reset/{link['token']}", {"new_password": "brand new horse"}).status_code == 204
    assert_problem(bob.get("/api/me"), 401)
    assert anon.post("/api/auth/login", {"email": bob_user["email"], "password": "brand new horse"}).status_code == 200
    assert_problem(anon.post(f"/api/auth/password-reset/{link['token']}", {"new_password": "another horse!"}), 410)


def test_audit_export_streams_every_event_and_verification_finds_the_chain_intact(server, new_user):
    admin = server.admin()
    ann, _ = new_user("ann")
    sid = ann.post("/api/sessions", {"title": "Exported", "assistant": False}).json()["id"]
    for n in range(3):
        ann.post(f"/api/sessions/{sid}/messages", {"content": f"line {n}"})
    exported = admin.get("/api/audit/export", params={"session": sid})
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert [e["type"] for e in lines] == ["SessionStarted", "MessagePosted", "MessagePosted", "MessagePosted"]
    head = admin.get("/api/audit/chain").json()
    assert head["head_position"] >= lines[-1]["position"] and len(head["head_hash"]) == 64
    started = admin.post("/api/audit/verifications")
    assert started.status_code == 202
    done = eventually(lambda: (v := admin.get("/api/audit/verifications/latest").json())["state"] != "running" and v)
    assert done["state"] == "intact" and done["checked"] >= head["head_position"] and done["first_broken_position"] is None


def test_storage_shows_what_nothing_references_and_collects_it(server, new_user):
    """A file a crash left in the blob store (written, never recorded) is what nothing references."""
    import hashlib

    from infrastructure.storage.blob_store import BlobStore

    admin = server.admin()
    ann, _ = new_user("ann")
    uploaded(ann, "kept.txt", b"kept paper " * 100, content_type="text/plain")
    leftover = b"scrap paper " * 100
    blobs = BlobStore(server.data_dir / "blobs")
    path = blobs.path(hashlib.sha256(leftover).hexdigest())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(leftover)
    loose = admin.get("/api/admin/storage").json()  # read from the blob store itself: no wait
    assert loose["unreferenced_count"] >= 1 and loose["blob_count"] >= 2 and loose["unreferenced_bytes"] >= 1200
    collected = admin.post("/api/admin/storage/collect").json()
    assert collected["removed"] >= 1 and collected["bytes"] >= 1200
    after = admin.get("/api/admin/storage").json()
    assert after["unreferenced_count"] == 0 and after["blob_count"] >= 1 and not path.exists()
