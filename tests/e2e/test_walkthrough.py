"""The README's walk-through, against a real server over real HTTP."""

import pytest

from tests.e2e.conftest import assert_problem

pytestmark = pytest.mark.e2e


def test_register_login_session_message_read(anon, new_user):
    ann, user = new_user("ann")
    assert set(user) >= {"id", "email", "display_name", "role"} and user["role"] == "user"
    me = ann.get("/api/me", params={"after_position": user["position"]})
    assert me.status_code == 200 and me.json()["id"] == user["id"]

    created = ann.post("/api/sessions", {"title": "Launch plan", "assistant": False})
    assert created.status_code == 201
    session = created.json()
    assert session["owner_id"] == user["id"] and session["title"] == "Launch plan" and session["position"] > 0

    posted = ann.post(f"/api/sessions/{session['id']}/messages", {"content": "We ship on Friday."})
    assert posted.status_code == 201
    message = posted.json()
    assert {k: message[k] for k in ("session_id", "author_id", "role", "content")} == {
        "session_id": session["id"],
        "author_id": user["id"],
        "role": "user",
        "content": "We ship on Friday.",
    }

    page = ann.get(f"/api/sessions/{session['id']}/messages", params={"after_position": message["position"]})
    assert page.status_code == 200
    assert [m["id"] for m in page.json()["items"]] == [message["id"]] and page.json()["next_cursor"] is None

    detail = ann.get(f"/api/sessions/{session['id']}", params={"after_position": message["position"]}).json()
    assert detail["message_count"] == 1 and detail["last_message_preview"] == "We ship on Friday."
    assert [m["user_id"] for m in detail["members"]] == [user["id"]]

    mine = ann.get("/api/sessions", params={"after_position": message["position"]}).json()
    assert [s["id"] for s in mine["items"]] == [session["id"]]


def test_rename_edit_history_delete_and_archive(new_user):
    ann, user = new_user("ann")
    session = ann.post("/api/sessions", {"title": "Draft", "assistant": False}).json()
    sid = session["id"]
    renamed = ann.patch(f"/api/sessions/{sid}", {"title": "Final"})
    assert renamed.status_code == 200 and renamed.json()["title"] == "Final" and not renamed.json()["assistant"]

    message = ann.post(f"/api/sessions/{sid}/messages", {"content": "v1"}).json()
    edit = ann.patch(f"/api/sessions/{sid}/messages/{message['id']}", {"content": "v2"})
    assert edit.status_code == 200 and edit.json()["version"] == 2
    history = ann.get(f"/api/sessions/{sid}/messages/{message['id']}/history", params={"after_position": edit.json()["position"]})
    assert [v["content"] for v in history.json()["items"]] == ["v1", "v2"]

    deleted = ann.delete(f"/api/sessions/{sid}/messages/{message['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    page = ann.get(f"/api/sessions/{sid}/messages", params={"after_position": deleted.json()["position"]}).json()
    assert page["items"][0]["deleted"] is True and page["items"][0]["content"] is None
    history = ann.get(f"/api/sessions/{sid}/messages/{message['id']}/history", params={"after_position": deleted.json()["position"]})
    assert [v["content"] for v in history.json()["items"]] == [None, None]

    archived = ann.delete(f"/api/sessions/{sid}")
    assert archived.status_code == 200 and archived.json()["archived"] is True
    late = ann.post(f"/api/sessions/{sid}/messages", {"content": "too late"})
    assert late.status_code == 409
    detail = ann.get(f"/api/sessions/{sid}", params={"after_position": archived.json()["position"]}).json()
    assert detail["archived"] is True and detail["title"] == "Final" and detail["message_count"] == 0


def test_a_messages_history_pages_forward_oldest_first(new_user):
    ann, _ = new_user("ann")
    sid = ann.post("/api/sessions", {"title": "Drafts", "assistant": False}).json()["id"]
    message = ann.post(f"/api/sessions/{sid}/messages", {"content": "v1"}).json()
    last = None
    for n in range(2, 7):
        last = ann.patch(f"/api/sessions/{sid}/messages/{message['id']}", {"content": f"v{n}"}).json()
    path = f"/api/sessions/{sid}/messages/{message['id']}/history"
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 4, "after_position": last["position"], **({"cursor": cursor} if cursor else {})}
        got = ann.get(path, params=params).json()
        seen += [(v["version"], v["content"]) for v in got["items"]]
        pages, cursor = pages + 1, got["next_cursor"]
        if cursor is None:
            break
    assert pages == 2 and seen == [(n, f"v{n}") for n in range(1, 7)]
    assert len(ann.get(path).json()["items"]) == 6, "50 to a page by default"
    assert_problem(ann.get(path, params={"limit": 501}), 400)
    assert_problem(ann.get(path, params={"cursor": "later"}), 400)


def test_pagination_pages_forward_oldest_first(new_user):
    ann, _ = new_user("ann")
    sid = ann.post("/api/sessions", {"title": "Many", "assistant": False}).json()["id"]
    sent = [ann.post(f"/api/sessions/{sid}/messages", {"content": f"m{i}"}).json() for i in range(7)]
    seen, cursor = [], None
    while True:
        params = {"limit": 3, "after_position": sent[-1]["position"], **({"cursor": cursor} if cursor else {})}
        page = ann.get(f"/api/sessions/{sid}/messages", params=params).json()
        seen += [m["content"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"m{i}" for i in range(7)]


def test_a_retried_post_with_the_same_client_message_id_is_answered_with_the_first(new_user):
    ann, _ = new_user("ann")
    sid = ann.post("/api/sessions", {"title": "Retry", "assistant": False}).json()["id"]
    first = ann.post(f"/api/sessions/{sid}/messages", {"content": "once", "client_message_id": "c-1"})
    head = ann.head()
    again = ann.post(f"/api/sessions/{sid}/messages", {"content": "once", "client_message_id": "c-1"})
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"] and again.json()["position"] == first.json()["position"]
    assert ann.head() == head


def test_members_see_and_post_and_leave(new_user):
    ann, _ = new_user("ann")
    bob, bob_user = new_user("bob")
    sid = ann.post("/api/sessions", {"title": "Team"}).json()["id"]
    added = ann.post(f"/api/sessions/{sid}/members", {"user_id": bob_user["id"]})
    assert added.status_code == 201
    assert bob.post(f"/api/sessions/{sid}/messages", {"content": "hi ann"}).status_code == 201
    bobs = bob.get("/api/sessions", params={"after_position": added.json()["position"]}).json()["items"]
    assert sid in [s["id"] for s in bobs]
    left = bob.delete(f"/api/sessions/{sid}/members/{bob_user['id']}")
    assert left.status_code == 200
    assert bob.get(f"/api/sessions/{sid}", params={"after_position": left.json()["position"]}).status_code == 404


def test_health_metrics_and_openapi(anon):
    health = anon.get("/health").json()
    assert health["status"] == "ok" and {p["name"] for p in health["projections"]} == {
        "users",
        "session_members",
        "sessions",
        "messages",
        "session_feed",
        "user_feed",
        "search",
        "documents",
        "document_search",
        "changes",
    }
    metrics = anon.get("/metrics")
    assert metrics.status_code == 200 and "chronicle_projection_lag_events" in metrics.text
    schema = anon.get("/schema/openapi.json")
    assert schema.status_code == 200 and "/api/sessions/{session_id}/messages" in schema.json()["paths"]


def _lag_observations(anon) -> float:
    line = next(row for row in anon.get("/metrics").text.splitlines() if row.startswith("chronicle_projection_lag_seconds_count"))
    return float(line.rsplit(" ", 1)[1])


def test_metrics_time_each_commit_until_the_read_models_have_it(new_user, anon):
    ann, _ = new_user("ann")
    before = _lag_observations(anon)
    sid = ann.post("/api/sessions", {"title": "Lag"}).json()["id"]
    posted = ann.post(f"/api/sessions/{sid}/messages", {"content": "measured"}).json()
    assert ann.get(f"/api/sessions/{sid}/messages", params={"after_position": posted["position"]}).status_code == 200
    assert _lag_observations(anon) >= before + 2  # the session's start and the post


def test_the_server_keeps_its_start_up_objects_out_of_garbage_collections(anon):
    line = next(row for row in anon.get("/metrics").text.splitlines() if row.startswith("chronicle_gc_frozen_objects "))
    assert float(line.rsplit(" ", 1)[1]) > 10_000  # the modules, the app, its routes and the runtime: far more than any request makes
