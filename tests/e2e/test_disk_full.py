"""A full disk: the data directory on a small filesystem the test mounts (tmpfs, size-limited).
Commands answer 507 or 503 with problem details, nothing acknowledged is lost, and the server
recovers by itself once there is room again."""

from __future__ import annotations

import contextlib
import errno
import subprocess
import time

import pytest

from tests.e2e.conftest import assert_problem
from tests.e2e.server import Server

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.sqlite_only(
        reason="fills the filesystem under the SQLite event log; on PostgreSQL the log is on the database "
        "server's disk, not in the data directory"
    ),
]


@contextlib.contextmanager
def small_filesystem(path, megabytes: int):
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={megabytes}m,mode=0700", "tmpfs", str(path)], capture_output=True, text=True
    )
    assert mounted.returncode == 0, f"this test mounts a tmpfs (needs root): {mounted.stderr}"
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory) -> list:
    """Takes every free byte with filler files; returns them so they can be removed."""
    fillers, n = [], 0
    chunk = b"\0" * 65536
    while True:
        target = directory / f"filler-{n}"
        n += 1
        try:
            with open(target, "wb") as f:
                while True:
                    f.write(chunk)
                    f.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
            fillers.append(target)
            if target.stat().st_size < 65536:
                return fillers


def test_a_full_disk_refuses_commands_cleanly_loses_nothing_and_recovers(tmp_path):
    with small_filesystem(tmp_path / "data", 24) as data_dir:
        server = Server(data_dir, log_dir=tmp_path).start()
        try:
            ann, _ = server.client().signup("ann@example.org")
            sid = ann.post("/api/sessions", {"title": "Full", "assistant": False}).json()["id"]
            acknowledged = [ann.post(f"/api/sessions/{sid}/messages", {"content": f"before {n}"}).json()["id"] for n in range(5)]
            fillers = fill(data_dir)
            refused = None
            for n in range(300):
                response = ann.post(f"/api/sessions/{sid}/messages", {"content": f"while full {n} " + "x" * 2000})
                if response.status_code == 201:
                    acknowledged.append(response.json()["id"])
                    continue
                refused = response
                break
            assert refused is not None, "the disk never filled"
            body = assert_problem(refused, refused.status_code)
            assert refused.status_code in (503, 507) and "nothing was recorded" in body["detail"]
            for filler in fillers:
                filler.unlink()
            deadline = time.monotonic() + 30
            while (after := ann.post(f"/api/sessions/{sid}/messages", {"content": "room again"})).status_code != 201:
                assert time.monotonic() < deadline, after.text
                time.sleep(0.5)  # recovery has no signal but a write that succeeds
            acknowledged.append(after.json()["id"])
            seen = [
                m["id"]
                for m in ann.get(f"/api/sessions/{sid}/messages", params={"limit": 500, "after_position": after.json()["position"]}).json()[
                    "items"
                ]
            ]
            assert len(seen) == len(set(seen)) and set(acknowledged) <= set(seen)
            assert ann.get("/health/ready").status_code == 200
        finally:
            server.stop()
    log = (tmp_path / f"server-{server.port}.log").read_text()
    assert "storage fault: database or disk is full" in log  # the operator is told what happened
