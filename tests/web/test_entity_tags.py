"""Conditional GETs (ADR-045) through Litestar's in-process test client: a current ETag answers 304
without a body, a write changes exactly the tags of the views it changed, authorization comes
before the cache (a removed member gets 404 with their old tag), and one user's tag is never
another's. Erasure rebuilds and swaps of separate processes are in tests/e2e/test_entity_tags.py."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from litestar.testing import TestClient

from infrastructure.settings import Settings
from infrastructure.web.app import create_app

PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    settings = Settings.from_env(tmp_path_factory.mktemp("data"))
    settings = dataclasses.replace(settings, read_wait_seconds=60)  # a loaded host: waits are liveness bounds, not timings
    with TestClient(create_app(settings), base_url="http://localhost.local") as client:
        yield client


def signed_in(client: TestClient, name: str) -> tuple[dict[str, str], str]:
    email = f"{name.lower()}-{uuid.uuid4().hex[:8]}@example.org"
    user = client.post("/api/auth/register", json={"email": email, "display_name": name, "password": PASSWORD})
    assert user.status_code == 201, user.text
    login = client.post("/api/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return {"Authorization": f"Bearer {login.json()['access_token']}"}, user.json()["id"]


class Views:
    """The cacheable views of one session, each read after `position` (read-your-writes)."""

    def __init__(self, client: TestClient, session_id: str) -> None:
        self.client, self.session_id = client, session_id
        self.position = 0

    def paths(self) -> dict[str, str]:
        return {
            "messages": f"/api/sessions/{self.session_id}/messages",
            "session": f"/api/sessions/{self.session_id}",
            "mine": "/api/sessions",
        }

    def get(self, view: str, headers: dict[str, str], tag: str | None = None, **params):
        extra = {"If-None-Match": tag} if tag else {}
        return self.client.get(self.paths()[view], params={"after_position": self.position, **params}, headers={**headers, **extra})

    def tags(self, headers: dict[str, str]) -> dict[str, str]:
        found = {}
        for view in self.paths():
            response = self.get(view, headers)
            assert response.status_code == 200, response.text
            found[view] = response.headers["etag"]
        return found

    def wrote(self, response) -> dict:
        assert response.status_code in (200, 201), response.text
        body = response.json()
        self.position = max(self.position, body["position"] or 0)
        return body


@pytest.fixture(scope="module")
def people(client):
    """Signed in once for the module (sign-ins are rate limited): Ann, Bob and Cy."""
    return [signed_in(client, name) for name in ("Ann", "Bob", "Cy")]


@pytest.fixture
def session(client, people):
    """A new session of Ann's with Bob in it and three messages; Cy is in no session."""
    (ann, ann_id), (bob, bob_id), _ = people
    created = client.post("/api/sessions", json={"title": "Cached", "assistant": False}, headers=ann)
    views = Views(client, created.json()["id"])
    views.wrote(created)
    views.wrote(client.post(f"/api/sessions/{views.session_id}/members", json={"user_id": bob_id}, headers=ann))
    for i in range(3):
        views.wrote(client.post(f"/api/sessions/{views.session_id}/messages", json={"content": f"m{i}"}, headers=ann))
    return views, (ann, ann_id), (bob, bob_id)


def test_an_unchanged_view_answers_304_without_a_body_and_keeps_shared_caches_out(session):
    views, (ann, _), _ = session
    for view in views.paths():
        first = views.get(view, ann)
        assert first.status_code == 200 and first.headers["cache-control"] == "private, no-cache"
        tag = first.headers["etag"]
        assert tag.startswith('W/"')
        again = views.get(view, ann, tag)
        assert again.status_code == 304, view
        assert again.content == b"" and again.headers["etag"] == tag and again.headers["cache-control"] == "private, no-cache"
        assert views.get(view, ann, f'"other", {tag}').status_code == 304, "any tag of a list may match"
        assert views.get(view, ann, '"not-a-tag"').status_code == 200


def test_a_post_changes_the_tags_of_the_messages_the_session_and_the_lists_of_its_members(session):
    views, (ann, _), (bob, _) = session
    before_ann, before_bob = views.tags(ann), views.tags(bob)
    views.wrote(views.client.post(f"/api/sessions/{views.session_id}/messages", json={"content": "new"}, headers=bob))
    after_ann, after_bob = views.tags(ann), views.tags(bob)
    for view in views.paths():
        assert after_ann[view] != before_ann[view] and after_bob[view] != before_bob[view], view
        stale = views.get(view, ann, before_ann[view])
        assert stale.status_code == 200 and stale.headers["etag"] == after_ann[view]
    assert views.get("messages", ann, before_ann["messages"]).json()["items"][-1]["content"] == "new"


def test_a_rename_changes_the_session_and_the_lists_but_not_the_messages(session):
    views, (ann, _), _ = session
    before = views.tags(ann)
    views.wrote(views.client.patch(f"/api/sessions/{views.session_id}", json={"title": "Renamed"}, headers=ann))
    after = views.tags(ann)
    assert after["messages"] == before["messages"], "the messages did not change"
    assert views.get("messages", ann, before["messages"]).status_code == 304
    assert after["session"] != before["session"] and after["mine"] != before["mine"]
    assert views.get("session", ann, before["session"]).json()["title"] == "Renamed"


def test_a_read_marker_changes_only_my_list(session):
    views, (ann, _), (bob, _) = session
    before_ann, before_bob = views.tags(ann), views.tags(bob)
    marked = views.client.put(f"/api/sessions/{views.session_id}/read", json={"position": views.position}, headers=bob)
    assert marked.status_code == 200 and marked.json()["recorded"], marked.text
    views.position = marked.json()["position"]
    after_ann, after_bob = views.tags(ann), views.tags(bob)
    assert after_bob["mine"] != before_bob["mine"]
    assert views.get("mine", bob, before_bob["mine"]).json()["items"][-1]["unread"] == 0
    assert after_bob["messages"] == before_bob["messages"] and after_bob["session"] == before_bob["session"]
    assert after_ann == before_ann


def test_a_new_member_changes_the_session_and_their_list_and_a_removed_member_gets_404_not_304(client, people, session):
    views, (ann, _), (bob, bob_id) = session
    cy, cy_id = people[2]
    cy_list = views.get("mine", cy)
    assert views.session_id not in [s["id"] for s in cy_list.json()["items"]]
    before = views.tags(ann)
    views.wrote(client.post(f"/api/sessions/{views.session_id}/members", json={"user_id": cy_id}, headers=ann))
    assert views.get("session", ann, before["session"]).status_code == 200
    assert views.get("messages", ann, before["messages"]).status_code == 304
    now_in = views.get("mine", cy, cy_list.headers["etag"])
    assert now_in.status_code == 200 and views.session_id in [s["id"] for s in now_in.json()["items"]]

    bob_tags = views.tags(bob)
    views.wrote(client.delete(f"/api/sessions/{views.session_id}/members/{bob_id}", headers=ann))
    for view in ("messages", "session"):
        refused = views.get(view, bob, bob_tags[view])
        assert refused.status_code == 404 and "etag" not in refused.headers, view
    gone = views.get("mine", bob, bob_tags["mine"])
    assert gone.status_code == 200 and views.session_id not in [s["id"] for s in gone.json()["items"]]


def test_one_users_tag_never_answers_another_user(session):
    views, (ann, _), (bob, _) = session
    ann_tags, bob_tags = views.tags(ann), views.tags(bob)
    for view in views.paths():
        assert ann_tags[view] != bob_tags[view], view
        assert views.get(view, bob, ann_tags[view]).status_code == 200, view


def test_the_tag_depends_on_the_query(session):
    views, (ann, _), _ = session
    tags = {
        views.get("messages", ann, **query).headers["etag"]
        for query in ({"limit": 2}, {"limit": 2, "dir": "b"}, {"limit": 2, "cursor": str(views.position - 1)}, {"limit": 3})
    }
    assert len(tags) == 4
    full = views.get("messages", ann, limit=2)
    assert views.get("messages", ann, full.headers["etag"], limit=3).status_code == 200


def test_a_document_answers_304_until_it_is_deleted(client, session):
    views, (ann, _), (bob, _) = session
    uploaded = client.post(
        "/api/documents",
        files={"file": ("notes.txt", b"some notes", "text/plain")},
        data={"session_id": views.session_id},
        headers=ann,
    )
    document = views.wrote(uploaded)
    path = f"/api/documents/{document['id']}"
    first = client.get(path, params={"after_position": views.position}, headers=bob)
    assert first.status_code == 200 and first.headers["cache-control"] == "private, no-cache"
    assert client.get(path, headers={**bob, "If-None-Match": first.headers["etag"]}).status_code == 304
    assert client.get(path, headers={**ann, "If-None-Match": first.headers["etag"]}).status_code == 200
    views.wrote(client.delete(path, headers=ann))
    gone = client.get(path, params={"after_position": views.position}, headers={**bob, "If-None-Match": first.headers["etag"]})
    assert gone.status_code == 404


def test_the_openapi_document_declares_304_and_if_none_match_on_the_cached_views(client):
    paths = client.get("/schema/openapi.json").json()["paths"]
    for path in ("/api/sessions", "/api/sessions/{session_id}", "/api/sessions/{session_id}/messages", "/api/documents/{document_id}"):
        operation = paths[path]["get"]
        assert "304" in operation["responses"] and "ETag" in operation["responses"]["200"]["headers"], path
        assert any(p["name"] == "If-None-Match" and p["in"] == "header" for p in operation["parameters"]), path
