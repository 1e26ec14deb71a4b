"""A PostgreSQL server of a test's own, for tests that stop and restart the server itself (the
shared one at 127.0.0.1:5432 serves the other tests running beside them): `initdb` in a temporary
directory, its own port and socket directory, trust authentication on loopback. Run as the
`postgres` system user when the suite runs as root (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from tests.e2e.server import free_port


class PrivatePostgres:
    def __init__(self) -> None:
        bindir = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        self.bin = Path(bindir)
        self.directory = Path(tempfile.mkdtemp(prefix="chronicle-postgres-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.port = free_port()
        self._as_owner: list[str] = []
        try:
            if os.geteuid() == 0:
                shutil.chown(self.directory, "postgres", "postgres")
                self._as_owner = ["runuser", "-u", "postgres", "--"]
            self._run("initdb", "--pgdata", str(self.data), "--auth", "trust", "--username", "postgres", "--no-sync", "--no-instructions")
            self.start()
            with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
                admin.execute("CREATE DATABASE chronicle")
        except BaseException:
            self.remove()
            raise

    def url(self, database: str = "chronicle") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, program: str, *args: str) -> None:
        done = subprocess.run([*self._as_owner, str(self.bin / program), *args], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"{program} {' '.join(args)}: {done.stdout}{done.stderr}"

    def start(self) -> None:
        """Start and wait until it accepts connections (pg_ctl -w)."""
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1"
        self._run("pg_ctl", "--pgdata", str(self.data), "--log", str(self.log), "--options", options, "--wait", "start")

    def stop(self, mode: str = "fast") -> None:
        """`immediate` is a crash: no checkpoint, the next start replays the WAL."""
        self._run("pg_ctl", "--pgdata", str(self.data), "--mode", mode, "--wait", "stop")

    def remove(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.stop("immediate")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
