"""Projection health and rebuilds while the server runs: status over the admin API and the CLI,
a projector that fails on an event, and a rebuild that never shows a half-built table."""

from __future__ import annotations

import sqlite3
import subprocess
import time

import pytest

from tests.backend import backend_env
from tests.e2e.conftest import assert_problem
from tests.e2e.server import CHRONICLE, SECRET, Server, cli

pytestmark = pytest.mark.e2e


def admin_of(server: Server):
    made = cli(server.data_dir, "users", "create", "root@example.org", "--role", "admin", "--password-stdin", input="admin password\n")
    assert made.returncode == 0, made.stderr
    token = server.client().post("/api/auth/login", {"email": "root@example.org", "password": "admin password"}).json()
    return server.client(token["access_token"])


def statuses(admin) -> dict[str, dict]:
    response = admin.get("/api/admin/projections")
    assert response.status_code == 200, response.text
    return {p["name"]: p for p in response.json()}


def wait_for(condition, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.05)
    return result


def test_a_failing_projector_stops_at_its_event_and_a_rebuild_repairs_it(tmp_path):
    server = Server(tmp_path).start()
    try:
        admin = admin_of(server)
        ann, _ = server.client().signup("ann@example.org")
        sid = ann.post("/api/sessions", {"title": "Plans", "assistant": False}).json()["id"]
        before = ann.post(f"/api/sessions/{sid}/messages", {"content": "before"}).json()
        wait_for(lambda: all(p["lag_events"] == 0 for p in statuses(admin).values()))
        assert {p["state"] for p in statuses(admin).values()} == {"live"}
        assert_problem(ann.get("/api/admin/projections"), 403)

        db = sqlite3.connect(tmp_path / "read.sqlite3")
        db.execute("DROP TABLE message_versions")  # the messages projector cannot apply the next edit
        db.commit()
        db.close()
        failed_edit = ann.patch(f"/api/sessions/{sid}/messages/{before['id']}", {"content": "after"}).json()
        failed = wait_for(lambda: (s := statuses(admin)["messages"])["state"] == "failed" and s)
        assert failed["failed_at"] == failed_edit["position"] and "message_versions" in failed["error"]
        assert failed["position"] == failed_edit["position"] - 1 and failed["lag_seconds"] > 0
        assert statuses(admin)["sessions"]["state"] == "live"
        assert ann.get("/health/ready").status_code == 503
        status = cli(tmp_path, "projections", "status")
        assert status.returncode == 1 and f"failed at {failed_edit['position']}" in status.stdout

        started = admin.post("/api/admin/projections/messages/rebuild")
        assert started.status_code == 202
        assert_problem(admin.post("/api/admin/projections/nonsense/rebuild"), 404)
        wait_for(lambda: statuses(admin)["messages"]["state"] == "live" and statuses(admin)["messages"]["lag_events"] == 0)
        page = ann.get(f"/api/sessions/{sid}/messages").json()["items"]
        assert [(m["content"], m["version"]) for m in page] == [("after", 2)]
        assert ann.get("/health/ready").status_code == 200
    finally:
        server.stop()


def test_queries_keep_answering_in_full_while_a_rebuild_runs(tmp_path):
    server = Server(tmp_path).start()
    try:
        ann, _ = server.client().signup("ann@example.org")
        sid = ann.post("/api/sessions", {"title": "Busy", "assistant": False}).json()["id"]
        for n in range(1500):
            ann.post(f"/api/sessions/{sid}/messages", {"content": f"message {n}"})
        head = ann.head()
        wait_for(lambda: ann.get(f"/api/sessions/{sid}", params={"after_position": head}).status_code == 200)
        rebuild = subprocess.Popen(
            [CHRONICLE, "projections", "rebuild", "--all", "--data-dir", str(tmp_path)],
            env={"CHRONICLE_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin", **backend_env(tmp_path)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        seen = set()
        while rebuild.poll() is None:
            detail = ann.get(f"/api/sessions/{sid}")
            assert detail.status_code == 200 and detail.json()["message_count"] == 1500
            page = ann.get(f"/api/sessions/{sid}/messages", params={"limit": 500, "cursor": "1000"}).json()["items"]
            seen.add(len(page))
            found = ann.get("/api/search", params={"q": "message", "kind": "messages", "limit": 5}).json()["hits"]
            assert len(found) == 5
        assert rebuild.returncode == 0, rebuild.stderr.read()
        assert seen == {500}
        assert ann.get(f"/api/sessions/{sid}", params={"after_position": ann.head()}).json()["message_count"] == 1500
    finally:
        server.stop()
