"""Schemathesis over the server's own OpenAPI document, with every check it has: generated
requests (valid and invalid by the document) and stateful sequences (create, then read, change and
delete what was created), as a normal user and as an admin. Not one may get a server error, an
answer the document does not describe, an invalid request accepted or a valid one refused."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.server import Server

pytestmark = pytest.mark.e2e

# Operations that end the caller's own tokens (sign-out, password change, erasure) would turn
# the rest of the run into 401s; each has its own tests.
TOKEN_ENDING = "/api/auth/session|/erase|/password"
# Every check but `use_after_free` ("deleted resource still available"): DELETE on a session
# archives it, and an archived session stays readable by its members, marked `archived` (the
# operation's description says so; tests/e2e/test_walkthrough.py and the web client rely on it).
CHECKS = "all"
EXCLUDED_CHECKS = "use_after_free"


def _schemathesis(server: Server, token: str, cwd: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            str(Path(sys.executable).parent / "schemathesis"),
            "run",
            f"{server.url}/schema/openapi.json",
            "-H",
            f"Authorization: Bearer {token}",
            "--checks",
            CHECKS,
            "--exclude-checks",
            EXCLUDED_CHECKS,
            "--seed",
            "1",
            "--workers",
            "1",
            "--generation-database",
            "none",
            "--exclude-path-regex",
            TOKEN_ENDING,
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
    )


def _generated(report: str) -> int:
    found = re.search(r"(\d+) generated", report)
    assert found, report[-3000:]
    return int(found.group(1))


@pytest.mark.timeout(600)  # thousands of requests: 47 s alone on a quiet host, over 120 s beside the suite on a loaded one
def test_every_check_passes_for_a_user_and_for_an_admin(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_RATE_LIMIT_LOOKUPS": "0", "CHRONICLE_RATE_LIMIT_POSTS": "0"}).start()
    try:
        user, _ = server.client().signup("fuzz@example.org")
        as_user = _schemathesis(server, user.token, tmp_path, "--max-examples", "40")
        assert as_user.returncode == 0, as_user.stdout[-6000:]
        assert "Stateful" in as_user.stdout and "❌" not in as_user.stdout, as_user.stdout[-6000:]
        assert _generated(as_user.stdout) > 1000

        admin = server.admin()
        as_admin = _schemathesis(server, admin.token, tmp_path, "--max-examples", "15", "--include-path-regex", "^/api/(admin|audit)/")
        assert as_admin.returncode == 0, as_admin.stdout[-6000:]
        assert _generated(as_admin.stdout) > 200
    finally:
        server.stop()
    assert "Traceback" not in (tmp_path / f"server-{server.port}.log").read_text()
