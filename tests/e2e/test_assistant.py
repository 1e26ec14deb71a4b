"""The chat engine with the default `local` provider, against real server processes."""

import json
import time
import uuid
from collections import Counter

import pytest
from websockets.sync.client import connect

from tests.backend import stored_events
from tests.e2e.server import Server

pytestmark = pytest.mark.e2e


def replies(client, sid: str, timeout: float = 15) -> dict[str, dict]:
    """Assistant messages of the session by the user message they answer, once every user
    message has one."""
    deadline = time.monotonic() + timeout
    while True:
        items = client.get(f"/api/sessions/{sid}/messages", params={"limit": 500, "after_position": client.head()}).json()["items"]
        asked = [m["id"] for m in items if m["role"] == "user"]
        answered = {m["reply_to"]: m for m in items if m["role"] == "assistant"}
        if set(asked) <= set(answered) or time.monotonic() > deadline:
            return answered
        time.sleep(0.1)


def first_reply_recorded(client, sid: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not any(m["role"] == "assistant" for m in client.get(f"/api/sessions/{sid}/messages", params={"limit": 500}).json()["items"]):
        assert time.monotonic() < deadline, "no reply was recorded"
        time.sleep(0.05)  # polling interval of an explicit wait


def outcomes_per_message(data_dir) -> Counter:
    """How many reply outcomes (completed or failed) the event log holds per user message."""
    rows = stored_events(data_dir, "AssistantReplyCompleted", "AssistantReplyFailed")
    return Counter(str(uuid.UUID(json.loads(row.state)["message_id"]["_data_"])) for row in rows)


def test_the_assistant_answers_from_earlier_messages_and_cites_them(new_user):
    ann, _ = new_user("ann")
    sid = ann.post("/api/sessions", {"title": "Launch"}).json()["id"]
    decision = ann.post(
        f"/api/sessions/{sid}/messages", {"content": "We decided to move the launch to Friday after the security review."}
    ).json()
    ann.post(f"/api/sessions/{sid}/messages", {"content": "Lunch is at noon."})
    question = ann.post(f"/api/sessions/{sid}/messages", {"content": "What did we decide about the launch?"}).json()
    answer = replies(ann, sid)[question["id"]]
    assert answer["author_id"] == "assistant" and answer["reply_status"] == "completed"
    assert "Friday after the security review" in answer["content"]
    assert decision["id"] in answer["content"] and "Lunch" not in answer["content"]


def test_the_assistant_says_plainly_when_it_finds_nothing_and_quotes_no_other_session(new_user):
    """Its reply is seen by every member of this session, so it quotes only this session:
    neither another user's session nor the asker's other sessions."""
    ann, _ = new_user("ann")
    eve, _ = new_user("eve")
    secret = eve.post("/api/sessions", {"title": "Eve's", "assistant": False}).json()["id"]
    eve.post(f"/api/sessions/{secret}/messages", {"content": "The zeppelin budget is ninety thousand."})
    private = ann.post("/api/sessions", {"title": "Ann's other", "assistant": False}).json()["id"]
    ann.post(f"/api/sessions/{private}/messages", {"content": "The zeppelin colour is secret teal."})
    sid = ann.post("/api/sessions", {"title": "Mine"}).json()["id"]
    question = ann.post(f"/api/sessions/{sid}/messages", {"content": "What is the zeppelin budget?"}).json()
    answer = replies(ann, sid)[question["id"]]
    assert answer["content"].startswith("I found nothing in this session about")
    assert "ninety" not in answer["content"] and "teal" not in answer["content"]


def test_no_reply_where_the_assistant_is_off(new_user):
    ann, _ = new_user("ann")
    sid = ann.post("/api/sessions", {"title": "Quiet", "assistant": False}).json()["id"]
    ann.post(f"/api/sessions/{sid}/messages", {"content": "hello?"})
    # The engine follows the log in order: once a later question elsewhere is answered, it has
    # passed (and skipped) this one.
    other = ann.post("/api/sessions", {"title": "Chatty"}).json()["id"]
    ann.post(f"/api/sessions/{other}/messages", {"content": "anyone there?"})
    assert replies(ann, other)
    items = ann.get(f"/api/sessions/{sid}/messages", params={"after_position": ann.head()}).json()["items"]
    assert [m["role"] for m in items] == ["user"]


def test_replies_stream_as_deltas_then_are_stored_once(server, new_user):
    ann, _ = new_user("ann")
    sid = ann.post("/api/sessions", {"title": "Streamed"}).json()["id"]
    ann.post(f"/api/sessions/{sid}/messages", {"content": "The launch moves to Friday, said the release manager."})
    replies(ann, sid)  # the first message's own reply is done before we listen
    with connect(f"ws://127.0.0.1:{server.port}/api/sessions/{sid}/stream?token={ann.token}&after={ann.head()}") as ws:
        question = ann.post(f"/api/sessions/{sid}/messages", {"content": "When is the launch?"}).json()
        seen = []
        while not (seen and seen[-1]["type"] == "reply.completed"):
            seen.append(json.loads(ws.recv(timeout=10)))
    reply_id = seen[-1]["data"]["reply_id"]
    assert seen[-1]["data"]["reply_to"] == question["id"]
    mine = [f for f in seen if f.get("reply_id") == reply_id or f.get("data", {}).get("reply_id") == reply_id]
    assert mine[0]["type"] == "reply.started" and mine[-1]["type"] == "reply.completed"
    deltas = [f for f in mine if f["type"] == "reply.delta"]
    assert deltas and [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert "".join(d["delta"] for d in deltas) == seen[-1]["data"]["content"]


def test_a_reply_can_be_cancelled_and_keeps_its_partial_text(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_ASSISTANT_PACE": "0.3"}).start()
    try:
        ann, _ = server.client().signup("ann@example.org")
        sid = ann.post("/api/sessions", {"title": "Slow"}).json()["id"]
        ann.post(f"/api/sessions/{sid}/messages", {"content": "The launch is on Friday at nine, in the big hall, with cake."})
        replies(ann, sid)
        with connect(f"ws://127.0.0.1:{server.port}/api/sessions/{sid}/stream?token={ann.token}&after={ann.head()}") as ws:
            question = ann.post(f"/api/sessions/{sid}/messages", {"content": "Where and when is the launch with cake?"}).json()
            started = json.loads(ws.recv(timeout=10))
            while started["type"] != "reply.started":
                started = json.loads(ws.recv(timeout=10))
            json.loads(ws.recv(timeout=10))  # the first delta
            other = ann.post("/api/sessions", {"title": "Other", "assistant": False}).json()
            assert (
                ann.post(
                    f"/api/sessions/{other['id']}/replies/{started['reply_id']}/cancel", params={"after_position": other["position"]}
                ).status_code
                == 409
            )
            cancelled = ann.post(f"/api/sessions/{sid}/replies/{started['reply_id']}/cancel")
            assert cancelled.status_code == 202
            frame = json.loads(ws.recv(timeout=10))
            while frame["type"] != "reply.completed":
                frame = json.loads(ws.recv(timeout=10))
        assert frame["data"]["status"] == "cancelled" and frame["data"]["reply_to"] == question["id"]
        content = frame["data"]["content"]
        assert content.startswith("Here is what I found") and "[1]" not in content  # cut before its citation
        again = ann.post(f"/api/sessions/{sid}/replies/{started['reply_id']}/cancel")
        assert again.status_code == 409
    finally:
        server.stop()


def test_a_reply_that_runs_past_its_timeout_is_recorded_as_failed(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_ASSISTANT_PACE": "0.5", "CHRONICLE_ASSISTANT_TIMEOUT": "0.7"}).start()
    try:
        ann, _ = server.client().signup("ann@example.org")
        sid = ann.post("/api/sessions", {"title": "Timeout"}).json()["id"]
        with connect(f"ws://127.0.0.1:{server.port}/api/sessions/{sid}/stream?token={ann.token}&after={ann.head()}") as ws:
            ann.post(f"/api/sessions/{sid}/messages", {"content": "Tell me everything about the quarterly plan and its many parts."})
            frame = json.loads(ws.recv(timeout=10))
            while frame["type"] != "reply.failed":
                frame = json.loads(ws.recv(timeout=10))
        assert frame["data"]["reason"] == "timeout" and "position" in frame
    finally:
        server.stop()


def test_after_a_crash_mid_reply_every_message_has_exactly_one_outcome(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_ASSISTANT_PACE": "0.2", "CHRONICLE_ASSISTANT_CONCURRENCY": "2"}).start()
    ann, _ = server.client().signup("ann@example.org")
    sid = ann.post("/api/sessions", {"title": "Crash"}).json()["id"]
    ann.post(f"/api/sessions/{sid}/messages", {"content": "Budget: forty thousand for the launch event and the venue."})
    asked = [
        ann.post(f"/api/sessions/{sid}/messages", {"content": f"Question {i}: what is the launch budget?"}).json()["id"] for i in range(6)
    ]
    first_reply_recorded(ann, sid)  # the engine is busy with the rest when the server dies
    server.kill()
    restarted = Server(tmp_path).start()
    try:
        client = restarted.client(ann.token)
        answered = replies(client, sid, timeout=30)
        assert set(asked) <= set(answered)
        outcomes = outcomes_per_message(tmp_path)
        assert {mid: outcomes[mid] for mid in asked} == {mid: 1 for mid in asked}
        assert max(outcomes.values()) == 1
    finally:
        restarted.stop()


def test_by_default_the_assistant_answers_questions_and_messages_addressed_to_it_only(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_ASSISTANT_ANSWERS": ""}).start()  # the default rule
    try:
        ann, _ = server.client().signup("ann@example.org")
        sid = ann.post("/api/sessions", {"title": "Rule"}).json()["id"]
        statement = ann.post(f"/api/sessions/{sid}/messages", {"content": "The launch is on Friday."}).json()
        question = ann.post(f"/api/sessions/{sid}/messages", {"content": "When is the launch?"}).json()
        addressed = ann.post(f"/api/sessions/{sid}/messages", {"content": "@assistant summarise the launch"}).json()
        answered = replies(ann, sid, timeout=5)
        assert set(answered) == {question["id"], addressed["id"]}
        assert statement["id"] not in answered
        assert outcomes_per_message(tmp_path)[statement["id"]] == 0
    finally:
        server.stop()


def test_a_replys_citations_and_members_names_survive_a_reload(server, new_user):
    """What the web client shows after a reload comes from the read models, not only from live frames."""
    ann, ann_user = new_user("ann")
    sid = ann.post("/api/sessions", {"title": "Cited"}).json()["id"]
    said = ann.post(f"/api/sessions/{sid}/messages", {"content": "The okapi arrives on Tuesday."}).json()
    question = ann.post(f"/api/sessions/{sid}/messages", {"content": "When does the okapi arrive?"}).json()
    answer = replies(ann, sid)[question["id"]]
    cited = [s for s in answer["sources"] if s["kind"] == "message"]
    assert [s["message_id"] for s in cited] == [said["id"]] and cited[0]["author_id"] == ann_user["id"]
    members = ann.get(f"/api/sessions/{sid}").json()["members"]
    assert [(m["user_id"], m["display_name"]) for m in members] == [(ann_user["id"], "Ann")]
