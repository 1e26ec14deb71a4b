"""The metrics an operator graphs, read from a real server's /metrics (Prometheus's text format,
parsed with prometheus_client's parser): WebSocket streams and frames, slow-consumer closes,
assistant replies by outcome with their latency, conversions by type and outcome with their
duration, rate-limit and quota refusals, and rebuilds."""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from tests.document_files import TEXT
from tests.e2e.server import Server
from tests.ops.system_binaries import eventually

pytestmark = pytest.mark.e2e


def samples(server: Server) -> dict[tuple[str, frozenset], float]:
    text = server.client().get("/metrics").text
    return {(s.name, frozenset(s.labels.items())): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def value(server: Server, name: str, **labels: str) -> float:
    return samples(server).get((name, frozenset(labels.items())), 0.0)


def test_streams_replies_conversions_refusals_and_rebuilds_are_counted(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_WS_QUEUE": "8", "CHRONICLE_RATE_LIMIT_LOGIN": "3"}).start()
    try:
        admin = server.admin()
        ann, ann_user = server.client().signup("ann@example.org")
        sid = ann.post("/api/sessions", {"title": "Busy", "assistant": False}).json()["id"]
        start = ann.head()
        url = f"ws://127.0.0.1:{server.port}/api/sessions/{sid}/stream?token={ann.token}&after={start}"
        slow = socket.socket()  # upgrades, then never reads: closed with 4429
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", server.port))
        slow.sendall(
            f"GET /api/sessions/{sid}/stream?token={ann.token}&after={start} HTTP/1.1\r\nHost: localhost\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        with connect(url) as fast:
            eventually(lambda: value(server, "chronicle_websocket_connections") == 2, 10, "two open streams")
            big = "x" * 30_000
            for i in range(150):
                ann.post(f"/api/sessions/{sid}/messages", {"content": f"{i} {big}"})
            assert [json.loads(fast.recv(timeout=10))["type"] for _ in range(150)] == ["message.posted"] * 150
            eventually(lambda: value(server, "chronicle_websocket_slow_consumer_closes_total") == 1, 20, "the slow client's close")
        slow.close()
        assert value(server, "chronicle_websocket_connections_opened_total") == 2
        assert value(server, "chronicle_websocket_frames_sent_total", kind="stored") >= 150
        assert value(server, "chronicle_websocket_frames_dropped_total", reason="slow_consumer") > 0
        eventually(lambda: value(server, "chronicle_websocket_connections") == 0, 10, "no open stream")

        ann.patch(f"/api/sessions/{sid}", {"assistant": True})
        ann.post(f"/api/sessions/{sid}/messages", {"content": "Assistant, what was posted?"})
        eventually(lambda: value(server, "chronicle_assistant_replies_total", outcome="completed") == 1, 30, "a completed reply")
        assert value(server, "chronicle_assistant_reply_duration_seconds_count", outcome="completed") == 1
        assert value(server, "chronicle_assistant_reply_duration_seconds_sum", outcome="completed") > 0

        document = ann.post("/api/documents", files={"file": ("notes.txt", TEXT, "text/plain")}).json()
        ann.post(f"/api/documents/{document['id']}/conversions", {"target": "markdown"})
        eventually(
            lambda: value(server, "chronicle_conversions_total", type="markdown", outcome="completed") == 1, 60, "a completed conversion"
        )
        assert value(server, "chronicle_conversion_duration_seconds_count", type="markdown", outcome="completed") == 1

        wrong = {"email": "ann@example.org", "password": "not the password"}
        codes = [server.client().post("/api/auth/login", wrong).status_code for _ in range(4)]
        assert codes[-1] == 429 and value(server, "chronicle_rate_limit_refusals_total", limit="login") >= 1
        quota = admin.put(f"/api/admin/users/{ann_user['id']}/quotas", {"messages_per_day": 1})
        assert quota.status_code == 200
        deadline = time.monotonic() + 10
        while ann.post(f"/api/sessions/{sid}/messages", {"content": "one more"}).status_code != 429 and time.monotonic() < deadline:
            pass  # the quota applies once projected
        assert value(server, "chronicle_quota_refusals_total", quota="messages_per_day") >= 1

        assert admin.post("/api/admin/projections/search/rebuild").status_code == 202
        eventually(lambda: value(server, "chronicle_rebuilds_total", outcome="swapped") == 1, 30, "a swapped rebuild")
        assert value(server, "chronicle_rebuild_position", projections="search") == 0  # none running now
    finally:
        server.stop()


def test_every_http_request_is_counted_under_its_route_template_and_an_unknown_path_under_unmatched(tmp_path):
    server = Server(tmp_path).start()
    try:
        ann, _ = server.client().signup("ann@example.org")
        sid = ann.post("/api/sessions", {"title": "Counted", "assistant": False}).json()["id"]
        for i in range(3):
            assert ann.post(f"/api/sessions/{sid}/messages", {"content": f"m{i}"}).status_code == 201
        assert ann.post(f"/api/sessions/{sid}/messages", {"content": ""}).status_code == 400
        for path in ("/api/no-such-thing", f"/api/sessions/{sid}/no-such-thing"):
            assert ann.get(path).status_code == 404
        anonymous = server.client()
        assert anonymous.post(f"/api/sessions/{sid}/messages", {"content": "who?"}).status_code == 401
        assert anonymous.get("/health", headers={"X-Request-ID": "not valid!"}).status_code == 400
        assert anonymous.request("PROPFIND", "/api/sessions").status_code == 405  # reaches the app: not a label value of its own
        with httpx.Client(base_url=server.url, timeout=30) as browser:  # keeps cookies: the CSRF cookie from a first page
            assert browser.get("/health").status_code == 200 and browser.cookies.get("csrftoken")
            assert browser.post("/api/auth/session", json={"email": "ann@example.org", "password": "x" * 12}).status_code == 403
        route = "/api/sessions/{session_id}/messages"
        assert value(server, "chronicle_http_requests_total", method="POST", path=route, status="201") == 3
        assert value(server, "chronicle_http_requests_total", method="POST", path=route, status="400") == 1
        assert value(server, "chronicle_http_requests_total", method="POST", path=route, status="401") == 1
        assert value(server, "chronicle_http_requests_total", method="GET", path="unmatched", status="404") == 2
        assert value(server, "chronicle_http_requests_total", method="GET", path="unmatched", status="400") == 1
        assert value(server, "chronicle_http_requests_total", method="OTHER", path="unmatched", status="405") == 1
        assert value(server, "chronicle_http_requests_total", method="POST", path="/api/auth/session", status="403") == 1
        assert value(server, "chronicle_http_requests_total", method="POST", path="/api/auth/session", status="500") == 0, (
            "a CSRF refusal is no 500"
        )
        assert {dict(labels)["method"] for name, labels in samples(server) if name == "chronicle_http_requests_total"} <= {
            "GET",
            "POST",
            "OTHER",
        }
        assert value(server, "chronicle_http_request_duration_seconds_count", method="POST", path=route) == 5
        assert not any(sid in dict(labels).get("path", "") for _, labels in samples(server)), "no raw path, which carries ids, is a label"
        assert value(server, "chronicle_http_requests_in_progress") == 1, "only the /metrics request reading it"
    finally:
        server.stop()
