"""A real `chronicle serve` process on a free port, and a small HTTP client for it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.backend import backend_env

CHRONICLE = str(Path(sys.executable).parent / "chronicle")
SECRET = "test-secret-key-that-is-long-enough-for-hs256"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(data_dir: Path, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`chronicle ARGS --data-dir DATA_DIR`, on the backend under test (`tests.backend`) unless
    `env` names a database itself."""
    return subprocess.run(
        [CHRONICLE, *args, "--data-dir", str(data_dir)],
        input=input,
        capture_output=True,
        text=True,
        env=process_env(data_dir, {"CHRONICLE_SECRET_KEY": SECRET, **(env or {})}),
        timeout=120,
    )


def process_env(data_dir: Path, env: dict[str, str]) -> dict[str, str]:
    """The environment of a `chronicle` process on `data_dir`: this one's, the backend's database
    for `data_dir` (none on SQLite), then `env`, which may name a database of its own."""
    backend = {} if "CHRONICLE_DATABASE_URL" in env else backend_env(data_dir)
    return {**os.environ, **backend, **env}


class Server:
    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        log_dir: Path | None = None,
        log_level: str = "warning",
        launcher: tuple[str, ...] = (),
    ) -> None:
        """`launcher` runs the `chronicle` script under another program (e.g. a profiler)."""
        self.data_dir = data_dir
        self.launcher = launcher
        self.log_level = log_level
        self.log_dir = log_dir or data_dir
        # The assistant answers every message on test servers (`all`), so that tests of reply
        # mechanics may post plain statements; tests of the default rule pass an empty value.
        self.env = process_env(
            data_dir,
            {
                "CHRONICLE_SECRET_KEY": SECRET,
                "CHRONICLE_RATE_LIMIT_POSTS": "0",
                "CHRONICLE_RATE_LIMIT_LOGIN": "0",
                "CHRONICLE_RATE_LIMIT_PASSWORDS": "0",
                "CHRONICLE_RATE_LIMIT_WRITES": "0",
                "CHRONICLE_RATE_LIMIT_SEARCHES": "0",
                "CHRONICLE_RATE_LIMIT_LOGIN_FAILURES": "0",
                "CHRONICLE_ASSISTANT_ANSWERS": "all",
                **(env or {}),
            },
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log: Any = None
        self.start_timeout = 60.0
        """Seconds `start` waits for the first healthy answer (a busy machine may need more)."""

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"server-{self.port}.log"

    def start(self, timeout: float = 30) -> Server:
        """Returns once /health answers (`timeout`: a generous bound; a node rebuilding its read
        models, or a loaded host, needs more)."""
        self.log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [*self.launcher, CHRONICLE, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port), "--log-level", self.log_level],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + max(timeout, self.start_timeout)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.1)
        self.stop()  # not left running (and holding its database) after the test gave up on it
        raise RuntimeError("server did not become healthy")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.log is not None:
            self.log.close()

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.log.close()

    def client(self, token: str | None = None) -> Api:
        return Api(self.url, token)

    def admin(self) -> Api:
        """A new admin (made with the CLI, as an operator would), signed in."""
        email = f"admin-{uuid.uuid4().hex[:12]}@example.org"
        made = cli(self.data_dir, "users", "create", email, "--role", "admin", "--password-stdin", input="admin password\n")
        assert made.returncode == 0, made.stderr
        login = self.client().post("/api/auth/login", {"email": email, "password": "admin password"})
        assert login.status_code == 200, login.text
        return self.client(login.json()["access_token"])


class Api:
    def __init__(self, url: str, token: str | None = None) -> None:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=url, headers=headers, timeout=30)
        self.token = token

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.get(path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return self.http.post(path, json=json, **kwargs)

    def put(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return self.http.put(path, json=json, **kwargs)

    def patch(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        return self.http.patch(path, json=json, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.http.delete(path, **kwargs)

    def head(self) -> int:
        return self.get("/health").json()["head"]

    def signup(self, email: str, password: str = "correct horse", name: str = "Someone") -> tuple[Api, dict]:
        """Registers and logs in; returns a client carrying the user's token, and the user."""
        user = self.post("/api/auth/register", {"email": email, "password": password, "display_name": name})
        assert user.status_code == 201, user.text
        login = self.post("/api/auth/login", {"email": email, "password": password})
        assert login.status_code == 200, login.text
        return Api(str(self.http.base_url), login.json()["access_token"]), user.json()
