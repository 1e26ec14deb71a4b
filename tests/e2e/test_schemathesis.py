"""Schemathesis over the server's own OpenAPI document, as a signed-in user: thousands of
generated requests, and not one may be answered with a server error or leave a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.server import Server

pytestmark = pytest.mark.e2e


def test_no_generated_request_gets_a_server_error(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_RATE_LIMIT_LOOKUPS": "0"}).start()
    try:
        user, _ = server.client().signup("fuzz@example.org")
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"{server.url}/schema/openapi.json",
                "-H",
                f"Authorization: Bearer {user.token}",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "15",
                "--seed",
                "1",
                "--workers",
                "1",
                "--exclude-path-regex",
                "/api/auth/session|/erase|/password|/api/me/password",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stdout[-4000:]
        assert "generated" in run.stdout and "passed" in run.stdout
    finally:
        server.stop()
    assert "Traceback" not in (tmp_path / f"server-{server.port}.log").read_text()
