"""What an operator or a hostile client runs into: slow clients are cut off, one server per data
directory, read-only commands that never create files, audit output printed literally."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.e2e.server import Server, cli

pytestmark = pytest.mark.e2e


def closed_within(sock: socket.socket, seconds: float) -> float:
    """How long until the server closes the connection (fails after `seconds`)."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(1024):
            pass
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open for {seconds} s") from None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_slow_headers_and_a_stalled_body_are_cut_off_and_logged_at_info(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_HEADER_TIMEOUT": "1", "CHRONICLE_BODY_IDLE_TIMEOUT": "1"})
    server.start()
    try:
        trickle = socket.create_connection(("127.0.0.1", server.port))
        trickle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
        assert closed_within(trickle, 10) < 10
        idle = socket.create_connection(("127.0.0.1", server.port))  # sends nothing at all
        assert closed_within(idle, 10) < 10
        stalled = socket.create_connection(("127.0.0.1", server.port))
        stalled.sendall(
            b'POST /api/auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"email":'
        )
        assert closed_within(stalled, 10) < 10
        assert server.client().get("/health").status_code == 200  # and others are served
    finally:
        server.stop()
    log = (tmp_path / f"server-{server.port}.log").read_text()
    assert "Traceback" not in log


@pytest.mark.sqlite_only(
    reason="on SQLite the data directory holds the log; on PostgreSQL the log is in the database "
    "(`projections status` on a missing directory is checked in test_schema_versions)"
)
@pytest.mark.parametrize(
    "command",
    [
        ["audit", "verify"],
        ["projections", "status"],
        ["audit", "export", "-o", "-"],
        ["audit", "replay", "01a23550-7927-706c-abe1-279473f2958c"],
    ],
)
def test_read_only_commands_refuse_a_directory_without_a_store_and_create_nothing(tmp_path, command):
    empty = tmp_path / "typo"
    done = cli(empty, *command)
    assert done.returncode == 2 and "holds no Chronicle event store" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not empty.exists()
    empty.mkdir()
    assert cli(empty, *command).returncode == 2 and list(empty.iterdir()) == []


def test_audit_replay_prints_content_literally_and_export_writes_to_stdout(tmp_path):
    server = Server(tmp_path).start()
    try:
        ann, _ = server.client().signup("ann@example.org")
        sid = ann.post("/api/sessions", {"title": "Brackets [draft]", "assistant": False}).json()["id"]
        ann.post(f"/api/sessions/{sid}/messages", {"content": "items[index] and [bold]not bold[/bold] and [erased]"})
    finally:
        server.stop()
    replay = cli(tmp_path, "audit", "replay", sid)
    assert replay.returncode == 0, replay.stderr
    assert "Brackets [draft]" in replay.stdout and "items[index] and [bold]not bold[/bold] and [erased]" in replay.stdout
    assert cli(tmp_path, "audit", "replay", sid, "--as-of", "²").returncode == 2
    exported = cli(tmp_path, "audit", "export", "--session", sid, "-o", "-")
    assert exported.returncode == 0 and not (tmp_path / "-").exists()
    assert [json.loads(line)["type"] for line in exported.stdout.splitlines()] == ["SessionStarted", "MessagePosted"]
