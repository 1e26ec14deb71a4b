"""The data directory holds message text, emails and the data keys that crypto-shredding
destroys: whatever the umask, nothing Chronicle creates in it is readable by others."""

import os
import stat

import pytest

from tests.backend import ON_POSTGRES
from tests.e2e.server import Server, cli

pytestmark = pytest.mark.e2e


def loose(data_dir) -> list[str]:
    """Paths under data_dir that group or others may read, write or enter."""
    found = []
    for root, dirs, files in os.walk(data_dir):
        for name in dirs + files:
            path = os.path.join(root, name)
            if name.startswith("server-") and name.endswith(".log"):
                continue  # the test's own log of the server's output
            if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                found.append(f"{path} {stat.S_IMODE(os.stat(path).st_mode):o}")
    return found


def test_everything_created_is_private_under_umask_022(tmp_path):
    data_dir = tmp_path / "fresh"
    old = os.umask(0o022)
    try:
        made = cli(data_dir, "users", "create", "ann@example.org", "--password-stdin", input="correct horse\n")
        assert made.returncode == 0, made.stderr
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        server = Server(data_dir).start()
        try:
            ann = server.client()
            token = ann.post("/api/auth/login", {"email": "ann@example.org", "password": "correct horse"}).json()["access_token"]
            ann = server.client(token)
            sid = ann.post("/api/sessions", {"title": "Private"}).json()["id"]
            ann.post(f"/api/sessions/{sid}/messages", {"content": "secret words"})
            uploaded = ann.post("/api/documents", files={"file": ("notes.txt", b"secret file", "text/plain")})
            assert uploaded.status_code == 201, uploaded.text
            ann.get(f"/api/documents/{uploaded.json()['id']}", params={"after_position": uploaded.json()["position"]})
        finally:
            server.stop()
    finally:
        os.umask(old)
    names = {p.name for p in data_dir.iterdir()}
    stores = {"read.sqlite3", "blobs"} | (set() if ON_POSTGRES else {"events.sqlite3", "keys.sqlite3"})
    assert stores <= names, names
    assert loose(data_dir) == []


def test_an_existing_directory_with_loose_modes_is_reported_at_start(tmp_path):
    data_dir = tmp_path / "shared"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    made = cli(data_dir, "users", "create", "bob@example.org", "--password-stdin", input="correct horse\n")
    assert made.returncode == 0
    assert "readable by others" in made.stderr and "chmod 700" in made.stderr
