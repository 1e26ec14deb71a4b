"""Everyone sees only their own sessions; admin endpoints need the admin role."""

from datetime import UTC

import pytest

from tests.e2e.conftest import assert_problem
from tests.e2e.server import cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def anns_session(new_user):
    ann, ann_user = new_user("ann")
    session = ann.post("/api/sessions", {"title": "Private"}).json()
    message = ann.post(f"/api/sessions/{session['id']}/messages", {"content": "secret"}).json()
    return ann, ann_user, session, message


def test_another_user_cannot_read_post_rename_or_list_someone_elses_session(anns_session, new_user):
    ann, _, session, message = anns_session
    eve, _ = new_user("eve")
    sid, at = session["id"], {"after_position": message["position"]}
    head = ann.head()
    assert_problem(eve.get(f"/api/sessions/{sid}", params=at), 404)
    assert_problem(eve.get(f"/api/sessions/{sid}/messages", params=at), 404)
    assert_problem(eve.get(f"/api/sessions/{sid}/messages/{message['id']}/history", params=at), 404)
    assert_problem(eve.post(f"/api/sessions/{sid}/messages", {"content": "hi"}), 404)
    assert_problem(eve.patch(f"/api/sessions/{sid}", {"title": "Mine"}), 404)
    assert_problem(eve.delete(f"/api/sessions/{sid}"), 404)
    assert_problem(eve.patch(f"/api/sessions/{sid}/messages/{message['id']}", {"content": "x"}), 404)
    assert_problem(eve.delete(f"/api/sessions/{sid}/messages/{message['id']}"), 404)
    assert_problem(eve.post(f"/api/sessions/{sid}/members", {"user_id": ann.get("/api/me").json()["id"]}), 404)
    assert sid not in [s["id"] for s in eve.get("/api/sessions", params=at).json()["items"]]
    assert ann.head() == head


def test_a_member_may_not_rename_edit_others_or_read_their_history(anns_session, new_user):
    ann, _, session, message = anns_session
    bob, bob_user = new_user("bob")
    added = ann.post(f"/api/sessions/{session['id']}/members", {"user_id": bob_user["id"]}).json()
    sid = session["id"]
    assert_problem(bob.patch(f"/api/sessions/{sid}", {"title": "Bob's"}), 403)
    assert_problem(bob.patch(f"/api/sessions/{sid}/messages/{message['id']}", {"content": "edited"}), 403)
    assert_problem(bob.delete(f"/api/sessions/{sid}/messages/{message['id']}"), 403)
    history = bob.get(f"/api/sessions/{sid}/messages/{message['id']}/history", params={"after_position": added["position"]})
    assert_problem(history, 403)


def test_requests_without_a_valid_token_are_refused(server, anns_session):
    _, _, session, _ = anns_session
    from datetime import datetime, timedelta

    import jwt as pyjwt

    from tests.e2e.server import SECRET, Api

    now = datetime.now(UTC)
    expired = pyjwt.encode(
        {"sub": session["owner_id"], "exp": now - timedelta(minutes=1), "iat": now - timedelta(hours=1)}, SECRET, "HS256"
    )
    forged = pyjwt.encode(
        {"sub": session["owner_id"], "exp": now + timedelta(hours=1), "iat": now, "extras": {"role": "admin"}},
        "not-the-secret-key-of-this-server-at-all",
        "HS256",
    )
    for token in (None, "garbage", expired, forged):
        client = Api(server.url, token)
        assert_problem(client.get(f"/api/sessions/{session['id']}"), 401)
        assert_problem(client.get("/api/admin/users"), 401)


def test_admin_endpoints_answer_403_to_users_and_work_for_admins(server, new_user, anon):
    user, user_row = new_user("plain")
    assert_problem(user.get("/api/admin/users"), 403)
    assert_problem(user.patch(f"/api/admin/users/{user_row['id']}", {"role": "admin"}), 403)

    made = cli(server.data_dir, "users", "create", "root@example.org", "--role", "admin", "--password-stdin", input="admin password\n")
    assert made.returncode == 0, made.stderr
    login = anon.post("/api/auth/login", {"email": "root@example.org", "password": "admin password"})
    assert login.status_code == 200
    from tests.e2e.server import Api

    admin = Api(server.url, login.json()["access_token"])
    changed = admin.patch(f"/api/admin/users/{user_row['id']}", {"role": "auditor"})
    assert changed.status_code == 200 and changed.json()["role"] == "auditor"
    listed = admin.get("/api/admin/users", params={"limit": 500, "after_position": changed.json()["position"]}).json()
    assert {"root@example.org", user_row["email"]} <= {u["email"] for u in listed["items"]}
    assert [u for u in listed["items"] if u["id"] == user_row["id"]][0]["role"] == "auditor"


def test_a_disabled_user_cannot_log_in_and_their_token_stops_working(server, new_user, anon):
    victim, victim_row = new_user("victim")
    cli(server.data_dir, "users", "create", "boss@example.org", "--role", "admin", "--password-stdin", input="admin password\n")
    from tests.e2e.server import Api

    admin = Api(
        server.url, anon.post("/api/auth/login", {"email": "boss@example.org", "password": "admin password"}).json()["access_token"]
    )
    assert victim.get("/api/me").status_code == 200  # the principal is cached now
    disabled = admin.patch(f"/api/admin/users/{victim_row['id']}", {"disabled": True})
    assert disabled.status_code == 200
    assert_problem(anon.post("/api/auth/login", {"email": victim_row["email"], "password": "correct horse"}), 403)
    assert admin.get("/api/admin/users", params={"after_position": disabled.json()["position"]}).status_code == 200
    assert_problem(victim.get("/api/me"), 401)  # at once, not after the cache's time-to-live


def test_changing_the_password_needs_the_current_one(anon, new_user):
    ann, user = new_user("ann")
    assert_problem(ann.post("/api/me/password", {"current_password": "wrong one", "new_password": "brand new pass"}), 403)
    assert_problem(ann.post("/api/me/password", {"current_password": "correct horse", "new_password": "short"}), 400, "new_password")
    changed = ann.post("/api/me/password", {"current_password": "correct horse", "new_password": "brand new pass"})
    assert changed.status_code == 200
    assert_problem(anon.post("/api/auth/login", {"email": user["email"], "password": "correct horse"}), 401)
    assert anon.post("/api/auth/login", {"email": user["email"], "password": "brand new pass"}).status_code == 200


def test_an_admin_can_enable_a_disabled_user_again(server, new_user, anon):
    from tests.e2e.server import Api

    _, victim = new_user("victim")
    cli(server.data_dir, "users", "create", "chief@example.org", "--role", "admin", "--password-stdin", input="admin password\n")
    admin = Api(
        server.url, anon.post("/api/auth/login", {"email": "chief@example.org", "password": "admin password"}).json()["access_token"]
    )
    assert admin.patch(f"/api/admin/users/{victim['id']}", {"disabled": True}).json()["disabled"] is True
    enabled = admin.patch(f"/api/admin/users/{victim['id']}", {"disabled": False})
    assert enabled.status_code == 200 and enabled.json()["disabled"] is False
    assert anon.post("/api/auth/login", {"email": victim["email"], "password": "correct horse"}).status_code == 200


def test_a_disabled_users_open_stream_is_closed_with_4401(server, new_user, anon):
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    from tests.e2e.server import Api

    victim, victim_row = new_user("victim")
    cli(server.data_dir, "users", "create", "warden@example.org", "--role", "admin", "--password-stdin", input="admin password\n")
    admin = Api(
        server.url, anon.post("/api/auth/login", {"email": "warden@example.org", "password": "admin password"}).json()["access_token"]
    )
    with connect(f"ws://127.0.0.1:{server.port}/api/stream?token={victim.token}") as ws:
        assert admin.patch(f"/api/admin/users/{victim_row['id']}", {"disabled": True}).status_code == 200
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                ws.recv(timeout=20)
    assert closed.value.rcvd.code == 4401
