"""Read markers: unread counts in the session list, and the reader's other devices told."""

import json

import pytest
from websockets.sync.client import connect

from tests.e2e.conftest import assert_problem
from tests.e2e.test_streams import ws_url

pytestmark = pytest.mark.e2e


def unread(client, sid: str, after: int) -> int:
    items = client.get("/api/sessions", params={"after_position": after}).json()["items"]
    return next(s["unread"] for s in items if s["id"] == sid)


def test_unread_counts_others_messages_after_my_marker_and_only_a_forward_marker_is_recorded(server, new_user):
    ann, _ = new_user("ann")
    bob, bob_user = new_user("bob")
    sid = ann.post("/api/sessions", {"title": "Unread", "assistant": False}).json()["id"]
    ann.post(f"/api/sessions/{sid}/members", {"user_id": bob_user["id"]})
    posts = [ann.post(f"/api/sessions/{sid}/messages", {"content": f"m{i}"}).json() for i in range(4)]
    mine = bob.post(f"/api/sessions/{sid}/messages", {"content": "bob's own"}).json()
    assert unread(bob, sid, mine["position"]) == 4  # his own message does not count
    assert unread(ann, sid, mine["position"]) == 1

    with connect(ws_url(server, "/api/stream", bob.token, mine["position"])) as other_device:
        marked = bob.put(f"/api/sessions/{sid}/read", {"position": posts[1]["position"]}).json()
        assert marked["recorded"] is True and marked["read_position"] == posts[1]["position"]
        frame = json.loads(other_device.recv(timeout=10))
        assert frame == {
            "position": marked["position"],
            "type": "session.read",
            "session_id": sid,
            "data": {"position": posts[1]["position"]},
        }
    assert unread(bob, sid, marked["position"]) == 2

    head = ann.head()
    again = bob.put(f"/api/sessions/{sid}/read", {"position": posts[0]["position"]}).json()
    assert again["recorded"] is False and again["position"] is None
    assert ann.head() == head  # nothing appended


def test_read_markers_are_refused_for_strangers_and_beyond_the_head(new_user):
    ann, _ = new_user("ann")
    eve, _ = new_user("eve")
    sid = ann.post("/api/sessions", {"title": "Closed"}).json()["id"]
    head = ann.head()
    assert eve.put(f"/api/sessions/{sid}/read", {"position": 1}).status_code in (403, 404)
    beyond = assert_problem(ann.put(f"/api/sessions/{sid}/read", {"position": head + 1000}), 409)
    assert beyond["head"] >= head and "position" in beyond["detail"]
    assert_problem(ann.put(f"/api/sessions/{sid}/read", {"position": -1}), 400)
    assert ann.head() == head
