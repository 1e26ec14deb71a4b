"""The server's log as an operator reads it: a real `chronicle serve` with
`CHRONICLE_LOG_FORMAT=json` is driven through sign-up, a wrong and a right password, posts
carrying a recognisable secret phrase, an upload and its conversion, and an assistant reply.
Every line is one JSON object; there is a start-up line, one access line per request, and a
line per background action, each carrying the correlation id; and nothing in the whole log
is a password, a token, the phrase or the signing key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.backend import backend_env
from tests.document_files import MARKDOWN
from tests.e2e.conftest import assert_problem
from tests.e2e.server import CHRONICLE, SECRET, Server
from tests.ops.system_binaries import eventually

pytestmark = pytest.mark.e2e

PASSWORD = "gentle-ibex-password-81"
WRONG_PASSWORD = "wrong-heron-password-27"
PHRASE = "the-vault-code-is-ZEBRA-4417"


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_a_json_log_has_start_up_access_and_background_lines_and_no_secrets(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_LOG_FORMAT": "json"}, log_level="info").start()
    try:
        anon = server.client()
        registered = anon.post("/api/auth/register", {"email": "ann@example.org", "password": PASSWORD, "display_name": "Ann"})
        assert registered.status_code == 201, registered.text
        user_id = registered.json()["id"]
        assert anon.post("/api/auth/login", {"email": "ann@example.org", "password": WRONG_PASSWORD}).status_code == 401
        login = anon.post("/api/auth/login", {"email": "ann@example.org", "password": PASSWORD})
        token = login.json()["access_token"]
        ann = server.client(token)
        sid = ann.post("/api/sessions", {"title": "Vault", "assistant": True}).json()["id"]
        posted = ann.post(f"/api/sessions/{sid}/messages", {"content": f"Remember: {PHRASE}"}, headers={"X-Request-ID": "post-vault-1"})
        assert posted.status_code == 201 and posted.headers["x-request-id"] == "post-vault-1"
        asked = ann.post(f"/api/sessions/{sid}/messages", {"content": f"What is {PHRASE}?"})
        assert asked.status_code == 201 and asked.headers["x-request-id"]
        document = ann.post("/api/documents", files={"file": ("vault.md", MARKDOWN + PHRASE.encode(), "text/markdown")}).json()
        assert ann.post(f"/api/documents/{document['id']}/conversions", {"target": "text"}).status_code == 202

        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        traced = ann.get("/api/sessions", headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
        assert traced.headers["x-request-id"] == trace_id
        assert_problem(ann.get("/api/sessions", headers={"X-Request-ID": 'no spaces; or quotes"'}), 400, "X-Request-ID")
        assert ann.get(f"/api/sessions/{sid}/nothing-here").status_code == 404

        def logged(event: str, **fields) -> dict | None:
            return next((line for line in lines_of(server.log_path) if line["event"] == event and fields.items() <= line.items()), None)

        finished = eventually(lambda: logged("conversion finished"), 60, "the conversion's finished line")
        started = logged("conversion started", conversion_id=finished["conversion_id"])
        assert started is not None and started["correlation_id"] == finished["correlation_id"]
        assert finished["type"] == "text" and finished["duration_ms"] >= 0
        replied = eventually(lambda: logged("assistant replied"), 30, "the assistant's reply line")
        assert replied["outcome"] == "completed" and replied["correlation_id"] and replied["duration_ms"] >= 0
    finally:
        server.stop()

    lines = lines_of(server.log_path)  # every line parses as JSON
    assert all({"event", "level", "timestamp", "logger"} <= line.keys() for line in lines)

    start = next(line for line in lines if line["event"] == "starting")
    assert start["data_dir"] == str(tmp_path.resolve()) and start["provider"] == "local" and start["version"]
    assert start["listening"] == server.url
    assert start["settings"]["secret_key"] == "***" and start["settings"]["log_format"] == "json"

    access = [line for line in lines if line["event"] == "request"]
    post = next(line for line in access if line["correlation_id"] == "post-vault-1")
    assert post["method"] == "POST" and post["route"] == "/api/sessions/{session_id}/messages"
    assert post["status"] == 201 and post["user_id"] == user_id and post["bytes"] > 0 and post["duration_ms"] > 0
    wrong = [line for line in access if line["route"] == "/api/auth/login" and line["status"] == 401]
    assert len(wrong) == 1 and wrong[0]["user_id"] is None
    assert any(line["correlation_id"] == trace_id and line["route"] == "/api/sessions" for line in access)
    assert any(line["status"] == 404 for line in access)
    assert all(sid not in line["route"] for line in access)  # templates, never raw paths

    text = server.log_path.read_text()
    for secret in (PASSWORD, WRONG_PASSWORD, token, token.split(".")[2], PHRASE, "ZEBRA", SECRET):
        assert secret not in text, f"{secret!r} is in the log"
    assert "Traceback" not in text


def test_a_cli_command_logs_as_the_console_format_says_with_one_correlation_id(tmp_path):
    """`chronicle retention run`, console format: its line names the run and its correlation id."""
    env = {
        **os.environ,
        **backend_env(tmp_path),
        "CHRONICLE_SECRET_KEY": SECRET,
        "CHRONICLE_LOG_FORMAT": "console",
        "CHRONICLE_RETENTION_DAYS": "30",
    }
    made = subprocess.run(
        [CHRONICLE, "users", "create", "ops@example.org", "--password-stdin", "--data-dir", str(tmp_path)],
        input=f"{PASSWORD}\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    ran = subprocess.run([CHRONICLE, "retention", "run", "--data-dir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    assert ran.returncode == 0, ran.stderr
    line = next(line for line in ran.stderr.splitlines() if "retention run" in line)
    assert "[info" in line and "correlation_id=" in line and "sessions_expired=0" in line and "default_days=30" in line
    assert not line.lstrip().startswith("{")
    assert PASSWORD not in made.stderr + ran.stderr and SECRET not in made.stderr + ran.stderr


def test_a_console_traceback_names_the_frames_but_not_their_local_values():
    """Rich's tracebacks (structlog's default when Rich is installed) print every frame's locals:
    a password in a handler's arguments would reach the log. The console format prints plain ones."""
    program = f"""
import logging
from infrastructure.structured_logs import configure_logging, flush_logs
configure_logging("console", "info")
def change_password(new_password):
    raise ValueError("the store refused")
try:
    change_password({PASSWORD!r})
except ValueError:
    logging.getLogger("chronicle.test").exception("changing a password failed")
flush_logs()
"""
    ran = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parents[2])
    assert ran.returncode == 0, ran.stderr
    assert "changing a password failed" in ran.stderr and "in change_password" in ran.stderr
    assert "ValueError: the store refused" in ran.stderr
    assert PASSWORD not in ran.stderr
