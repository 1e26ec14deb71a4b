"""Erasing a person by crypto-shredding, through a real server: nothing of theirs stays readable
anywhere in the data directory, other people's data is intact, the hash chain still verifies."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests import document_files as files
from tests.e2e.conftest import assert_problem
from tests.e2e.server import Server, cli
from tests.e2e.test_documents import convert, uploaded

pytestmark = pytest.mark.e2e
SECRET = "zebra-unicorn-7731 is the vault combination"


def occurrences(data_dir: Path, needles: list[bytes]) -> list[str]:
    """Every file under the data directory (SQLite files, their WAL and journals, blobs) that
    still contains one of the needles."""
    found = []
    for path in data_dir.rglob("*"):
        if path.is_file() and not path.name.startswith("server-"):
            data = path.read_bytes()
            found += [f"{path.relative_to(data_dir)}: {needle!r}" for needle in needles if needle in data]
    return found


def wait_until_rebuilt(admin, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        statuses = admin.get("/api/admin/projections").json()
        if all(s["state"] == "live" and s["lag_events"] == 0 for s in statuses):
            return
        assert time.monotonic() < deadline, statuses
        time.sleep(0.1)


def test_an_erased_user_leaves_no_plaintext_and_everyone_else_keeps_theirs(tmp_path):
    assert (
        cli(tmp_path, "users", "create", "root@example.org", "--role", "admin", "--password-stdin", input="admin password\n").returncode
        == 0
    )
    server = Server(tmp_path).start()
    try:
        admin = server.client(
            server.client().post("/api/auth/login", {"email": "root@example.org", "password": "admin password"}).json()["access_token"]
        )
        ann, ann_user = server.client().signup("ann.erasable@example.org", name="Annabel Erasable")
        bob, bob_user = server.client().signup("bob@example.org", name="Bob")
        sid = ann.post("/api/sessions", {"title": "Shared"}).json()["id"]  # the assistant answers, quoting
        ann.post(f"/api/sessions/{sid}/members", {"user_id": bob_user["id"]})
        mine = ann.post(f"/api/sessions/{sid}/messages", {"content": SECRET}).json()
        ann.patch(f"/api/sessions/{sid}/messages/{mine['id']}", {"content": SECRET + ", edited"})
        bobs = bob.post(f"/api/sessions/{sid}/messages", {"content": "Bob's own words stay"}).json()
        asked = bob.post(f"/api/sessions/{sid}/messages", {"content": "What is the zebra unicorn vault combination?"}).json()
        deadline = time.monotonic() + 20
        while (
            len(
                [
                    m
                    for m in bob.get(f"/api/sessions/{sid}/messages", params={"after_position": bob.head()}).json()["items"]
                    if m["role"] == "assistant"
                ]
            )
            < 3
        ):
            assert time.monotonic() < deadline, "the assistant did not answer"
            time.sleep(0.1)
        document = uploaded(ann, "zebra-plans.txt", f"Plans: {SECRET}\n".encode(), session_id=sid)
        convert(ann, document["id"], "markdown")
        found = ann.get("/api/search", params={"q": "zebra", "after_position": ann.head()}).json()["hits"]
        assert found, "the secret was searchable before"
        quoted = bob.get(f"/api/sessions/{sid}/messages/{asked['id']}").json()
        reply = next(
            m for m in bob.get(f"/api/sessions/{sid}/messages", params={"limit": 500}).json()["items"] if m["reply_to"] == asked["id"]
        )
        assert "-7731 is the" in reply["content"] and quoted["author_id"] == bob_user["id"], "Bob's reply quotes Ann"
        needles = [b"zebra-unicorn-7731", b"-7731 is the", b"ann.erasable@example.org", b"Annabel Erasable", b"zebra-plans"]
        before = occurrences(tmp_path, needles)
        assert not any(f.startswith("events.sqlite3") and "zebra" in f for f in before), "personal fields are sealed"
        assert any(f.startswith("read.sqlite3") for f in before)

        assert_problem(bob.post(f"/api/admin/users/{ann_user['id']}/erase"), 403)
        erased = admin.post(f"/api/admin/users/{ann_user['id']}/erase")
        assert erased.status_code == 202, erased.text
        assert_problem(admin.post(f"/api/admin/users/{ann_user['id']}/erase"), 409)
        wait_until_rebuilt(admin)
        change = admin.patch(f"/api/admin/users/{ann_user['id']}", {"role": "auditor", "disabled": False})
        assert "erased" in assert_problem(change, 409)["detail"]
        assert "erased" in assert_problem(admin.patch(f"/api/admin/users/{ann_user['id']}", {"role": "auditor"}), 409)["detail"]
        changed = admin.get("/api/audit/events", params={"type": "UserRoleChanged"}).json()["items"]
        assert ann_user["id"] not in json.dumps(changed), "a refused change records none of its parts"
        deadline = time.monotonic() + 20
        while (left := occurrences(tmp_path, needles)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left == []

        assert_problem(ann.get("/api/me"), 401)
        assert_problem(server.client().post("/api/auth/login", {"email": "ann.erasable@example.org", "password": "correct horse"}), 403)
        items = bob.get(f"/api/sessions/{sid}/messages", params={"after_position": erased.json()["position"]}).json()["items"]
        contents = {m["id"]: m["content"] for m in items}
        assert contents[mine["id"]] == "[erased]" and contents[bobs["id"]] == "Bob's own words stay"
        replies = {m["reply_to"]: m["content"] for m in items if m["role"] == "assistant"}
        assert replies[mine["id"]] == "[erased]" and "bob" in replies[bobs["id"]].lower()
        assert replies[asked["id"]] == "[erased]"  # Bob's reply quoted Ann: the quote went with her key
        assert bob.get("/api/search", params={"q": "7731"}).json()["hits"] == []
        assert bob.get(f"/api/sessions/{sid}/documents").json()["items"] == []
        timeline = admin.get(f"/api/audit/sessions/{sid}/timeline").json()
        posted = [s for s in timeline["steps"] if s["type"] == "MessagePosted"]
        assert [s["data"]["content"] for s in posted] == [
            "[erased]",
            "Bob's own words stay",
            "What is the zebra unicorn vault combination?",
        ]
        assert "UserErased" in [e["type"] for e in admin.get("/api/audit/events", params={"type": "UserErased"}).json()["items"]]
    finally:
        server.stop()
    verified = cli(tmp_path, "audit", "verify")
    assert verified.returncode == 0, verified.stderr


def test_erasing_from_the_command_line(tmp_path):
    server = Server(tmp_path).start()
    try:
        cy, cy_user = server.client().signup("cy@example.org", name="Cyrus Quill")
        sid = cy.post("/api/sessions", {"title": "Notes", "assistant": False}).json()["id"]
        cy.post(f"/api/sessions/{sid}/messages", {"content": "quillfeather-secret-42"})
        uploaded(cy, "notes.txt", files.TEXT)
    finally:
        server.stop()
    done = cli(tmp_path, "users", "erase", cy_user["id"])
    assert done.returncode == 0, done.stderr
    assert "removed 1 file(s)" in done.stderr
    assert occurrences(tmp_path, [b"quillfeather-secret-42", b"Cyrus Quill", b"cy@example.org"]) == []
    again = cli(tmp_path, "users", "erase", cy_user["id"])
    assert again.returncode == 1 and "already erased" in again.stderr
    assert cli(tmp_path, "audit", "verify").returncode == 0


def test_an_erased_persons_address_may_be_registered_again(tmp_path):
    server = Server(tmp_path).start()
    try:
        admin = server.admin()
        _, first = server.client().signup("reuse@example.org", name="First Person")
        assert_problem(
            server.client().post(
                "/api/auth/register", {"email": "REUSE@example.org", "password": "correct horse", "display_name": "Copycat"}
            ),
            409,
        )
        assert admin.post(f"/api/admin/users/{first['id']}/erase").status_code == 202
        wait_until_rebuilt(admin)
        again, second = server.client().signup("reuse@example.org", name="Second Person")
        assert second["id"] != first["id"]
        assert again.get("/api/me").json()["display_name"] == "Second Person"
    finally:
        server.stop()
    assert cli(tmp_path, "audit", "verify").returncode == 0


def test_open_conversations_are_told_once_the_erasure_is_applied(tmp_path):
    import json

    from websockets.sync.client import connect

    from tests.e2e.test_streams import ws_url

    server = Server(tmp_path).start()
    try:
        admin = server.admin()
        ann, ann_user = server.client().signup("ann.gone@example.org", name="Ann")
        bob, bob_user = server.client().signup("bob.stays@example.org", name="Bob")
        sid = ann.post("/api/sessions", {"title": "Shared", "assistant": False}).json()["id"]
        said = ann.post(f"/api/sessions/{sid}/messages", {"content": "soon gone"}).json()
        head = ann.post(f"/api/sessions/{sid}/members", {"user_id": bob_user["id"]}).json()["position"]
        with connect(ws_url(server, f"/api/sessions/{sid}/stream", bob.token, head)) as ws:
            assert admin.post(f"/api/admin/users/{ann_user['id']}/erase").status_code == 202
            while (frame := json.loads(ws.recv(timeout=60)))["type"] != "user.erased":
                pass
            assert frame == {"session_id": sid, "type": "user.erased", "user_id": ann_user["id"]}
            items = bob.get(f"/api/sessions/{sid}/messages").json()["items"]
            assert [m["content"] for m in items if m["id"] == said["id"]] == ["[erased]"]  # already rebuilt
    finally:
        server.stop()
