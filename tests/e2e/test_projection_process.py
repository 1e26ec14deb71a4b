"""The server's projection runner lives in a child process: if it dies, the server starts it
again, the read models catch up, and open streams miss no frame."""

import json
import os
import signal
from pathlib import Path

from websockets.sync.client import connect

from tests.e2e.server import Server
from tests.e2e.test_projection_admin import wait_for
from tests.e2e.test_streams import ws_url


def projection_process_of(server_pid: int) -> int | None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        if ppid == server_pid and b"spawn_main" in cmdline:
            return int(entry.name)
    return None


def test_a_killed_projection_process_is_restarted_and_streams_miss_nothing(tmp_path):
    server = Server(tmp_path).start()
    second = None
    try:
        ann, _ = server.client().signup("ann@example.org")
        sid = ann.post("/api/sessions", {"title": "Crash", "assistant": False}).json()["id"]
        start = ann.head()
        first = wait_for(lambda: projection_process_of(server.process.pid))
        with connect(ws_url(server, f"/api/sessions/{sid}/stream", ann.token, start)) as ws:
            sent = [ann.post(f"/api/sessions/{sid}/messages", {"content": f"before {n}"}).json()["position"] for n in range(20)]
            os.kill(first, signal.SIGKILL)
            sent += [ann.post(f"/api/sessions/{sid}/messages", {"content": f"after {n}"}).json()["position"] for n in range(20)]
            got = [json.loads(ws.recv(timeout=20))["position"] for _ in range(40)]
        assert got == sent
        page = ann.get(f"/api/sessions/{sid}/messages", params={"after_position": sent[-1], "limit": 100}).json()["items"]
        assert [m["position"] for m in page] == sent
        second = wait_for(lambda: projection_process_of(server.process.pid))
        assert second != first
        wait_for(lambda: ann.get("/health/ready").status_code == 200)
    finally:
        server.stop()
    wait_for(lambda: not Path(f"/proc/{second}").exists())  # it stops with the server
