"""Audit replays and the raw event stream, from the event log, through a real server and the CLI."""

from __future__ import annotations

import json
import time

import pytest

from tests import document_files as files
from tests.e2e.conftest import assert_problem
from tests.e2e.server import Server, cli
from tests.e2e.test_documents import convert, uploaded

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def story(tmp_path_factory):
    """A session with a rename, a member who joins and leaves, messages edited and deleted, and
    a document converted; `marks` holds positions and times along the way."""
    data_dir = tmp_path_factory.mktemp("audit")
    assert (
        cli(
            data_dir, "users", "create", "audra@example.org", "--role", "auditor", "--password-stdin", input="auditor password\n"
        ).returncode
        == 0
    )
    server = Server(data_dir).start()
    anon = server.client()
    ann, ann_user = anon.signup("ann@example.org", name="Ann")
    bob, bob_user = anon.signup("bob@example.org", name="Bob")
    auditor = server.client(
        anon.post("/api/auth/login", {"email": "audra@example.org", "password": "auditor password"}).json()["access_token"]
    )
    sid = ann.post("/api/sessions", {"title": "Launch", "assistant": False}, headers={"x-request-id": "req-start"}).json()["id"]
    ann.post(f"/api/sessions/{sid}/members", {"user_id": bob_user["id"]})
    first = ann.post(f"/api/sessions/{sid}/messages", {"content": "We launch on Friday."}).json()
    bob.post(f"/api/sessions/{sid}/messages", {"content": "Friday works for me."})
    marks = {"before_edit": first["position"] + 1}
    time.sleep(0.05)  # legitimate: a wall-clock gap, so the mark's time falls strictly between the events
    marks["before_edit_time"] = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1e6) % 1_000_000:06d}+00:00"
    time.sleep(0.05)  # legitimate: the same gap after the mark
    ann.patch(f"/api/sessions/{sid}/messages/{first['id']}", {"content": "We launch on Monday."})
    ann.patch(f"/api/sessions/{sid}", {"title": "Launch (moved)"})
    ann.delete(f"/api/sessions/{sid}/members/{bob_user['id']}")
    secret = ann.post(f"/api/sessions/{sid}/messages", {"content": "the vault code is 1234"}).json()
    ann.delete(f"/api/sessions/{sid}/messages/{secret['id']}")
    document = uploaded(ann, "plan.md", files.MARKDOWN, session_id=sid)
    conversion = convert(ann, document["id"], "text")
    yield {
        "server": server,
        "ann": ann,
        "bob": bob,
        "auditor": auditor,
        "sid": sid,
        "first": first,
        "secret": secret,
        "document": document,
        "conversion": conversion,
        "marks": marks,
        "ann_user": ann_user,
        "bob_user": bob_user,
    }
    server.stop()


def test_the_timeline_now_shows_the_session_as_it_is(story):
    view = story["auditor"].get(f"/api/audit/sessions/{story['sid']}/timeline").json()
    session = view["session"]
    assert session["title"] == "Launch (moved)"
    assert [m["user_id"] for m in session["members"]] == [story["ann_user"]["id"]]
    contents = {m["id"]: m["content"] for m in session["messages"]}
    assert contents[story["first"]["id"]] == "We launch on Monday." and contents[story["secret"]["id"]] is None
    assert [d["filename"] for d in session["documents"]] == ["plan.md"]
    assert [(c["target"], c["status"]) for c in session["conversions"]] == [("text", "completed")]
    types = [s["type"] for s in view["steps"]]
    assert types[:3] == ["SessionStarted", "MemberAdded", "MessagePosted"]
    assert {
        "MessageEdited",
        "SessionRenamed",
        "MemberRemoved",
        "MessageDeleted",
        "DocumentAttached",
        "ConversionRequested",
        "ConversionStarted",
        "ConversionCompleted",
    } <= set(types)
    started = view["steps"][0]
    assert started["actor_id"] == story["ann_user"]["id"] and started["correlation_id"] == "req-start"
    positions = [s["position"] for s in view["steps"]]
    assert positions == sorted(positions)


def test_the_timeline_as_of_a_position_or_a_time_shows_the_past(story):
    for as_of in (str(story["marks"]["before_edit"]), story["marks"]["before_edit_time"]):
        view = story["auditor"].get(f"/api/audit/sessions/{story['sid']}/timeline", params={"as_of": as_of}).json()
        session = view["session"]
        assert session["title"] == "Launch", as_of
        assert {m["user_id"] for m in session["members"]} == {story["ann_user"]["id"], story["bob_user"]["id"]}
        assert [m["content"] for m in session["messages"]] == ["We launch on Friday.", "Friday works for me."]
        assert session["documents"] == [] and all(s["position"] <= view["as_of"]["position"] for s in view["steps"])
    assert_problem(story["auditor"].get(f"/api/audit/sessions/{story['sid']}/timeline", params={"as_of": "1"}), 404)
    assert_problem(story["auditor"].get(f"/api/audit/sessions/{story['sid']}/timeline", params={"as_of": "yesterday"}), 400)
    assert_problem(story["auditor"].get(f"/api/audit/sessions/{story['sid']}/timeline", params={"as_of": "²"}), 400)
    assert_problem(story["auditor"].get("/api/audit/events", params={"after": str(10**30)}), 400)


def test_only_staff_and_the_owner_may_replay_a_session(story):
    assert story["ann"].get(f"/api/audit/sessions/{story['sid']}/timeline").status_code == 200
    assert_problem(story["bob"].get(f"/api/audit/sessions/{story['sid']}/timeline"), 404)
    assert_problem(story["server"].client().get(f"/api/audit/sessions/{story['sid']}/timeline"), 401)
    assert_problem(story["ann"].get("/api/audit/events"), 403)


def test_the_event_stream_filters_by_session_actor_and_type_and_pages_on(story):
    auditor, sid = story["auditor"], story["sid"]
    everything = auditor.get("/api/audit/events", params={"limit": 1000}).json()
    positions = [e["position"] for e in everything["items"]]
    assert positions == list(range(1, len(positions) + 1)) and everything["next_after"] == positions[-1]
    registered = [e for e in everything["items"] if e["type"] == "UserRegistered"]
    assert registered and all(e["data"]["password_hash"] == "[redacted]" for e in registered)

    bobs = auditor.get("/api/audit/events", params={"actor": story["bob_user"]["id"], "limit": 1000}).json()["items"]
    assert {e["type"] for e in bobs} == {"MessagePosted"} and bobs[0]["data"]["content"] == "Friday works for me."
    edits = auditor.get("/api/audit/events", params={"session": sid, "type": "MessageEdited"}).json()["items"]
    assert [e["data"]["content"] for e in edits] == ["We launch on Monday."]
    page = auditor.get("/api/audit/events", params={"session": sid, "limit": 2}).json()
    rest = auditor.get("/api/audit/events", params={"session": sid, "after": page["next_after"], "limit": 1000}).json()
    in_session = [e for e in everything["items"] if e["position"] in {x["position"] for x in page["items"] + rest["items"]}]
    assert len(page["items"]) == 2 and len(in_session) == len(page["items"]) + len(rest["items"])
    assert_problem(auditor.get("/api/audit/events", params={"type": "Drop Table"}), 400)


def test_the_cli_replays_readably_and_exports_json_lines(story, tmp_path):
    data_dir = story["server"].data_dir
    replay = cli(data_dir, "audit", "replay", story["sid"])
    assert replay.returncode == 0, replay.stderr
    lines = replay.stdout.splitlines()
    assert lines[0].startswith("Launch (moved)")
    assert any("Ann" in line and "said: We launch on Friday." in line for line in lines)
    assert any("Bob" in line and "said: Friday works for me." in line for line in lines)
    assert any("edited a message to: We launch on Monday." in line for line in lines)
    past = cli(data_dir, "audit", "replay", story["sid"], "--as-of", str(story["marks"]["before_edit"]), "--format", "json")
    assert json.loads(past.stdout)["session"]["title"] == "Launch"

    out = tmp_path / "events.jsonl"
    done = cli(data_dir, "audit", "export", "--session", story["sid"], "-o", str(out))
    assert done.returncode == 0, done.stderr
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    timeline = story["auditor"].get(f"/api/audit/sessions/{story['sid']}/timeline").json()
    session_steps = [s["position"] for s in timeline["steps"] if s["type"] not in ("DocumentUploaded",)]
    assert {e["position"] for e in exported} <= set(session_steps)
    assert [e["type"] for e in exported][:2] == ["SessionStarted", "MemberAdded"]
    assert cli(data_dir, "audit", "verify").returncode == 0
