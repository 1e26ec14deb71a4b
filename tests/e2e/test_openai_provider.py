"""The `openai` provider against a local server that speaks the real SSE streaming format."""

import json

import pytest
from websockets.sync.client import connect

from tests.e2e.model_server import REPLY, SEPARATED, ModelServer
from tests.e2e.server import Server

pytestmark = pytest.mark.e2e


def ask(tmp_path, model: str, question: str) -> tuple[list[dict], dict, ModelServer]:
    """Runs Chronicle against a model server behaving as `model`, asks `question`, and returns
    the frames up to the question's stored outcome, that outcome, and the model server."""
    with ModelServer() as model_server:
        server = Server(
            tmp_path,
            env={
                "CHRONICLE_ASSISTANT_PROVIDER": "openai",
                "CHRONICLE_LLM_BASE_URL": model_server.url,
                "CHRONICLE_LLM_MODEL": model,
                "CHRONICLE_LLM_API_KEY": "test-key",
            },
        ).start()
        try:
            frames, final = _outcome(server, question)
        finally:
            server.stop()
    return frames, final, model_server


def _outcome(server: Server, question: str) -> tuple[list[dict], dict]:
    ann, _ = server.client().signup("ann@example.org")
    sid = ann.post("/api/sessions", {"title": "Model"}).json()["id"]
    ann.post(f"/api/sessions/{sid}/messages", {"content": "Earlier: we moved the launch."})
    with connect(f"ws://127.0.0.1:{server.port}/api/sessions/{sid}/stream?token={ann.token}&after={ann.head()}") as ws:
        posted = ann.post(f"/api/sessions/{sid}/messages", {"content": question}).json()
        frames = []
        while True:
            frame = json.loads(ws.recv(timeout=20))
            frames.append(frame)
            data = frame.get("data", {})
            if frame["type"] in ("reply.completed", "reply.failed") and data.get("reply_to") == posted["id"]:
                return frames, frame


def test_streamed_deltas_arrive_in_order_and_the_reply_is_stored_with_usage(tmp_path):
    frames, final, model_server = ask(tmp_path, "steady", "When is the launch?")
    deltas = [f for f in frames if f["type"] == "reply.delta" and f["reply_id"] == final["data"]["reply_id"]]
    assert [d["delta"] for d in deltas] == REPLY and [d["seq"] for d in deltas] == [1, 2, 3, 4, 5]
    data = final["data"]
    assert (data["content"], data["status"], data["provider"], data["model"]) == ("".join(REPLY), "completed", "openai", "steady")
    assert (data["prompt_tokens"], data["completion_tokens"]) == (42, len(REPLY))
    # the earlier message is answered too (test servers answer every message), perhaps after the question
    [sent] = [r for r in model_server.requests if r["messages"][-1] == {"role": "user", "content": "When is the launch?"}]
    assert sent["stream"] is True
    assert {"role": "user", "content": "Earlier: we moved the launch."} in sent["messages"]
    assert all(headers["authorization"] == "Bearer test-key" for headers in model_server.headers)


def test_a_stream_that_breaks_midway_ends_in_a_failed_reply(tmp_path):
    frames, final, model_server = ask(tmp_path, "broken", "When is the launch?")
    assert final["type"] == "reply.failed" and final["data"]["reason"] == "provider_error", final
    assert "[DONE]" in final["data"]["detail"]
    mine = final["data"]["reply_id"]
    assert [f["delta"] for f in frames if f["type"] == "reply.delta" and f["reply_id"] == mine] == REPLY[:2]


def test_a_model_server_that_keeps_failing_is_retried_then_the_reply_fails(tmp_path):
    _, final, model_server = ask(tmp_path, "down", "Anyone there?")
    attempts = len([r for r in model_server.requests if r["messages"][-1]["content"] == "Anyone there?"])
    assert final["type"] == "reply.failed" and "HTTP 500" in final["data"]["detail"]
    assert "overloaded" not in final["data"]["detail"], "what the model server says stays out of what members see"
    assert attempts == 3


def test_a_transient_failure_is_retried(tmp_path):
    _, final, model_server = ask(tmp_path, "flaky", "When is the launch?")
    assert final["type"] == "reply.completed" and final["data"]["content"] == "".join(REPLY)


def deltas_of(frames: list[dict], final: dict) -> list[str]:
    return [f["delta"] for f in frames if f["type"] == "reply.delta" and f["reply_id"] == final["data"]["reply_id"]]


def test_a_reply_longer_than_a_message_may_be_is_cut_and_fails(tmp_path):
    frames, final, _ = ask(tmp_path, "verbose", "Tell me everything.")
    assert final["type"] == "reply.failed" and final["data"]["reason"] == "invalid_response", final
    assert final["data"]["detail"] == "the reply passed 32,000 characters"
    assert len("".join(deltas_of(frames, final))) == 32_000


def test_a_line_without_end_fails_the_reply_instead_of_filling_memory(tmp_path):
    frames, final, model_server = ask(tmp_path, "endless-line", "Anyone there?")
    assert final["type"] == "reply.failed" and final["data"]["reason"] == "provider_error", final
    assert final["data"]["detail"] == f"the model server sent a line longer than {1 << 20} bytes"
    assert len([r for r in model_server.requests if r["messages"][-1]["content"] == "Anyone there?"]) == 1


def test_a_delta_that_is_not_text_fails_the_reply(tmp_path):
    _, final, _ = ask(tmp_path, "numbers", "Count for me.")
    assert final["type"] == "reply.failed" and final["data"]["detail"] == "the model server sent a delta that is not text", final


def test_unicode_line_separators_inside_the_json_are_text_not_line_ends(tmp_path):
    frames, final, _ = ask(tmp_path, "separators", "Split this.")
    assert final["type"] == "reply.completed" and final["data"]["content"] == "".join(SEPARATED), final
    assert deltas_of(frames, final) == SEPARATED
