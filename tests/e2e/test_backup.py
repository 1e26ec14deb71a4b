"""Backups that restore, with real servers, real files and the real `chronicle` command: a backup
taken under load keeps every acknowledged message, a restored directory has the same chain and the
same read models, and a stale keys backup cannot bring back an erased person."""

from __future__ import annotations

import json
import sqlite3
import stat
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from uuid import UUID

import httpx
import pytest

from tests.e2e.server import Api, Server, cli
from tests.e2e.test_documents import convert, uploaded
from tests.e2e.test_durability import read_tables, wait_caught_up

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.sqlite_only(
        reason="`chronicle backup`/`restore` copy a data directory's SQLite files; on PostgreSQL they refuse "
        "(test_postgres_event_store checks the refusal) and the database is backed up with PostgreSQL's tools"
    ),
]


def all_messages(client: Api, session_id: str, after_position: int | None = None) -> list[dict]:
    """Every message of a session, oldest first, following the cursor."""
    items: list[dict] = []
    cursor = None
    while True:
        params: dict = {
            "limit": 500,
            **({"cursor": cursor} if cursor else {}),
            **({"after_position": after_position} if after_position else {}),
        }
        page = client.get(f"/api/sessions/{session_id}/messages", params=params)
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return items


def one_line_error(done, code: int, words: str) -> None:
    assert done.returncode == code, (done.stdout, done.stderr)
    assert words in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr, done.stderr


def verified_head(data_dir: Path) -> str:
    done = cli(data_dir, "audit", "verify")
    assert done.returncode == 0, done.stderr
    return done.stdout.split("head hash ")[1].strip()


def backup(data_dir: Path, events: Path, keys: Path) -> dict:
    done = cli(data_dir, "backup", str(events), "--keys-to", str(keys))
    assert done.returncode == 0, done.stderr
    manifest = json.loads((events / "chronicle-backup.json").read_text())
    assert f"head hash {manifest['head_hash']}" in done.stdout
    return manifest


def restore(events: Path, keys: Path, data_dir: Path, *extra: str, env: dict[str, str] | None = None):
    return cli(data_dir, "restore", str(events), "--keys-from", str(keys), *extra, env=env)


def test_a_backup_under_load_keeps_every_message_acknowledged_before_it_started(tmp_path):
    (tmp_path / "data").mkdir()
    server = Server(tmp_path / "data", log_dir=tmp_path).start()
    try:
        writer, _ = server.client().signup("writer@example.org")
        sid = writer.post("/api/sessions", {"title": "busy"}).json()["id"]
        acked: list[tuple[str, int, str]] = []
        lock = threading.Lock()
        stop = threading.Event()
        going = threading.Event()  # set once 50 posts are acknowledged

        def load() -> None:
            """About 50 posts a second, each recorded once the server has acknowledged it."""
            n, began = 0, time.monotonic()
            while not stop.wait(max(0.0, began + n / 50 - time.monotonic())):
                content = f"load message {n}"
                try:
                    response = writer.post(f"/api/sessions/{sid}/messages", {"content": content}, timeout=10)
                except httpx.TransportError:
                    continue
                if response.status_code == 201:
                    with lock:
                        acked.append((response.json()["id"], response.json()["position"], content))
                        if len(acked) >= 50:
                            going.set()
                n += 1

        loader = threading.Thread(target=load)
        load_began = time.monotonic()
        loader.start()
        try:
            assert going.wait(30), f"the load did not get going ({len(acked)} acknowledged)"
            with lock:
                before = list(acked)
            started = time.monotonic()
            manifest = backup(server.data_dir, tmp_path / "backup", tmp_path / "keys")
            took = time.monotonic() - started
            with lock:
                during = len(acked) - len(before)
        finally:
            stop.set()
            loader.join()
        rate = len(acked) / (time.monotonic() - load_began)
        assert during > 0 and rate > 30, f"the load went on while the backup ran ({during} posts, {rate:.0f}/s)"
        assert manifest["head_position"] >= max(position for _, position, _ in before)
        original_chain = cli(server.data_dir, "audit", "verify", "--expect-head", manifest["head_hash"])
        assert original_chain.returncode == 0, "the backup's head is a link of the live log"
    finally:
        server.stop()

    restored_dir = tmp_path / "restored"
    done = restore(tmp_path / "backup", tmp_path / "keys", restored_dir)
    assert done.returncode == 0, done.stderr
    assert verified_head(restored_dir) == manifest["head_hash"]
    restored = Server(restored_dir, log_dir=tmp_path).start()
    try:
        stored = {m["id"]: m for m in all_messages(restored.client(writer.token), sid)}
        missing = [(message_id, position) for message_id, position, _ in before if message_id not in stored]
        assert not missing, f"acknowledged before the backup but not restored: {missing[:5]} (of {len(before)})"
        assert all(stored[message_id]["content"] == content for message_id, _, content in before)
        assert max(m["position"] for m in stored.values()) <= manifest["head_position"]
    finally:
        restored.stop()
    print(f"backup under {rate:.0f} posts/s: {len(before)} acknowledged before, {during} during its {took:.2f}s")


def test_a_restored_directory_has_the_same_chain_read_models_files_and_signing_key(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    # The signing key is generated and kept in the data directory (no CHRONICLE_SECRET_KEY).
    server = Server(data, env={"CHRONICLE_SECRET_KEY": ""}, log_dir=tmp_path).start()
    try:
        admin = server.admin()
        ann, ann_user = server.client().signup("ann@example.org", name="Ann")
        bob, bob_user = server.client().signup("bob@example.org", name="Bob")
        cy, cy_user = server.client().signup("cy@example.org", name="Cy")
        sid = ann.post("/api/sessions", {"title": "Plans"}).json()["id"]
        ann.post(f"/api/sessions/{sid}/members", {"user_id": bob_user["id"]})
        ann.post(f"/api/sessions/{sid}/members", {"user_id": cy_user["id"]})
        first = ann.post(f"/api/sessions/{sid}/messages", {"content": "the lighthouse plans"}).json()
        ann.patch(f"/api/sessions/{sid}/messages/{first['id']}", {"content": "the lighthouse plans, revised"})
        bob.post(f"/api/sessions/{sid}/messages", {"content": "Bob agrees"})
        cy.post(f"/api/sessions/{sid}/messages", {"content": "Cy will be erased"})
        document = uploaded(ann, "plans.md", b"# Plans\n\nThe lighthouse, revised.\n", session_id=sid, content_type="text/markdown")
        conversion = convert(ann, document["id"], "html")
        assert conversion["status"] == "completed", conversion
        assert admin.post(f"/api/admin/users/{cy_user['id']}/erase").status_code == 202
        wait_caught_up(admin)
        manifest = backup(data, tmp_path / "backup", tmp_path / "keys")
    finally:
        server.stop()

    # What goes where: the keys and the signing key never sit beside the events.
    assert sorted(p.name for p in (tmp_path / "keys").iterdir()) == ["chronicle-keys.json", "keys.sqlite3", "secret.key"]
    assert not {"keys.sqlite3", "secret.key", "read.sqlite3"} & {p.name for p in (tmp_path / "backup").iterdir()}
    assert manifest["files"] >= 2  # the upload and its conversion
    for path in [p for top in ("backup", "keys") for p in [tmp_path / top, *(tmp_path / top).rglob("*")]]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} has mode {mode:o}"

    restored_dir = tmp_path / "restored"
    done = restore(tmp_path / "backup", tmp_path / "keys", restored_dir, env={"CHRONICLE_SECRET_KEY": ""})
    assert done.returncode == 0, done.stderr
    assert "erasures re-applied: 1" in done.stderr
    assert verified_head(restored_dir) == verified_head(data) == manifest["head_hash"]
    assert read_tables(restored_dir) == read_tables(data), "the rebuilt read models equal the original's"
    assert (restored_dir / "secret.key").read_bytes() == (data / "secret.key").read_bytes()
    for path in [restored_dir, *restored_dir.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path} has mode {mode:o}"

    original_answers = []
    for directory in (data, restored_dir):
        running = Server(directory, env={"CHRONICLE_SECRET_KEY": ""}, log_dir=tmp_path).start()
        try:
            # The tokens the original signed are good on the restore: the signing key came back.
            reader, auditor = running.client(bob.token), running.client(admin.token)
            answers = {
                "messages": all_messages(reader, sid),
                "sessions": reader.get("/api/sessions").json(),
                "document": reader.get(f"/api/documents/{document['id']}").json(),
                "content": reader.get(f"/api/documents/{document['id']}/content").content,
                "converted": reader.get(f"/api/documents/{document['id']}/conversions/{conversion['id']}/content").text,
                "users": auditor.get("/api/admin/users").json(),
            }
        finally:
            running.stop()
        original_answers.append(answers)
    assert original_answers[0] == original_answers[1]
    contents = [m["content"] for m in original_answers[1]["messages"]]
    assert "the lighthouse plans, revised" in contents and "Bob agrees" in contents and "[erased]" in contents
    assert "Cy will be erased" not in contents
    assert original_answers[1]["content"] == b"# Plans\n\nThe lighthouse, revised.\n"


def keys_of(keys_file: Path, person: str | None = None, session: str | None = None) -> int:
    db = sqlite3.connect(f"file:{keys_file}?mode=ro", uri=True)
    try:
        if person is not None:
            return db.execute("SELECT COUNT(*) FROM data_keys WHERE person=?", (UUID(person).hex,)).fetchone()[0]
        return db.execute("SELECT COUNT(*) FROM data_keys WHERE session=?", (UUID(session).hex,)).fetchone()[0]
    finally:
        db.close()


def test_a_stale_keys_backup_cannot_bring_back_an_erased_person_or_expired_content(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    server = Server(data, log_dir=tmp_path).start()
    try:
        admin = server.admin()
        ann, ann_user = server.client().signup("ann@example.org", name="Ann")
        bob, bob_user = server.client().signup("bob@example.org", name="Bob")
        shared = bob.post("/api/sessions", {"title": "Shared"}).json()["id"]
        bob.post(f"/api/sessions/{shared}/members", {"user_id": ann_user["id"]})
        ann.post(f"/api/sessions/{shared}/messages", {"content": "Ann's secret"})
        bob.post(f"/api/sessions/{shared}/messages", {"content": "Bob's words stay"})
        short = bob.post("/api/sessions", {"title": "Short-lived", "retention_days": 1}).json()["id"]
        bob.post(f"/api/sessions/{short}/messages", {"content": "Bob's passing remark"})
        wait_caught_up(admin)
        backup(data, tmp_path / "before-events", tmp_path / "before-keys")

        assert admin.post(f"/api/admin/users/{ann_user['id']}/erase").status_code == 202
        wait_caught_up(admin)
        expired = cli(data, "retention", "run", "--today", (date.today() + timedelta(days=2)).isoformat())
        assert expired.returncode == 0 and "1 session(s) had expired content" in expired.stderr, expired.stderr
        wait_caught_up(admin)
        backup(data, tmp_path / "after-events", tmp_path / "after-keys")
    finally:
        server.stop()
    stale_keys = tmp_path / "before-keys" / "keys.sqlite3"
    assert keys_of(stale_keys, person=ann_user["id"]) > 0 and keys_of(stale_keys, session=short) > 0, "the old keys backup still has them"

    # An older keys backup is refused unless asked for, and the directory is left as it was.
    refused_dir = tmp_path / "refused"
    one_line_error(restore(tmp_path / "after-events", tmp_path / "before-keys", refused_dir), 2, "--allow-older-keys")
    assert not refused_dir.exists()

    # Asked for, the log's erasures and expiries are applied to it again.
    restored_dir = tmp_path / "restored"
    done = restore(tmp_path / "after-events", tmp_path / "before-keys", restored_dir, "--allow-older-keys")
    assert done.returncode == 0, done.stderr
    assert "erasures re-applied: 1, expiries re-applied: 1" in done.stderr
    assert keys_of(restored_dir / "keys.sqlite3", person=ann_user["id"]) == 0
    assert keys_of(restored_dir / "keys.sqlite3", session=short) == 0
    # An older event backup with newer keys: the erasure (after that backup) holds too.
    older_dir = tmp_path / "older"
    older = restore(tmp_path / "before-events", tmp_path / "after-keys", older_dir)
    assert older.returncode == 0, older.stderr
    assert "erased after this backup" in older.stderr and ann_user["id"] in older.stderr, "the operator is told whom to erase again"
    assert ann_user["id"] not in done.stderr

    for directory in (restored_dir, older_dir):
        running = Server(directory, log_dir=tmp_path).start()
        try:
            reader = running.client(bob.token)
            contents = sorted(m["content"] for m in all_messages(reader, shared) if m["role"] == "user")
            assert contents == ["Bob's words stay", "[erased]"], (directory.name, contents)
            assert [m["content"] for m in all_messages(reader, short) if m["role"] == "user"] == ["[erased]"], directory.name
        finally:
            running.stop()


def test_bad_requests_are_refused_in_one_line_and_change_nothing(tmp_path):
    data = tmp_path / "data"
    made = cli(data, "users", "create", "root@example.org", "--password-stdin", input="a long password\n")
    assert made.returncode == 0, made.stderr

    one_line_error(
        cli(tmp_path / "typo", "backup", str(tmp_path / "b"), "--keys-to", str(tmp_path / "k")), 2, "holds no Chronicle event store"
    )
    assert not (tmp_path / "typo").exists() and not (tmp_path / "b").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("keep me")
    one_line_error(cli(data, "backup", str(tmp_path / "full"), "--keys-to", str(tmp_path / "k")), 2, "not an empty directory")
    one_line_error(cli(data, "backup", str(tmp_path / "b"), "--keys-to", str(tmp_path / "b" / "keys")), 2, "apart from the event backup")
    one_line_error(cli(data, "backup", str(data / "backup"), "--keys-to", str(tmp_path / "k")), 2, "inside the data directory")
    assert (tmp_path / "full" / "something").read_text() == "keep me" and not (tmp_path / "b").exists()

    backup(data, tmp_path / "b", tmp_path / "k")
    one_line_error(restore(tmp_path / "b", tmp_path / "k", data), 2, "not an empty directory")
    one_line_error(restore(tmp_path / "full", tmp_path / "k", tmp_path / "new"), 2, "not a complete Chronicle event backup")
    one_line_error(restore(tmp_path / "b", tmp_path / "b", tmp_path / "new"), 2, "not a complete Chronicle keys backup")
    other = tmp_path / "other"
    assert cli(other, "users", "create", "someone@example.org", "--password-stdin", input="a long password\n").returncode == 0
    backup(other, tmp_path / "other-b", tmp_path / "other-k")
    one_line_error(restore(tmp_path / "b", tmp_path / "other-k", tmp_path / "new"), 2, "belongs to another event log")
    assert not (tmp_path / "new").exists()

    # A damaged backup is caught by its chain or its files' addresses, and the target is left empty.
    events = sqlite3.connect(tmp_path / "b" / "events.sqlite3")
    events.execute("UPDATE stored_events SET state = CAST('{}' AS BLOB) WHERE rowid = 1")
    events.commit()
    events.close()
    damaged = restore(tmp_path / "b", tmp_path / "k", tmp_path / "new")
    one_line_error(damaged, 1, "does not verify")
    assert list((tmp_path / "new").iterdir()) == []
    stored = tmp_path / "b2" / "blobs" / "ab" / "cd" / ("abcd" + "0" * 60)
    backup(data, tmp_path / "b2", tmp_path / "k2")
    stored.parent.mkdir(parents=True)
    stored.write_bytes(b"not what its name says")
    one_line_error(restore(tmp_path / "b2", tmp_path / "k2", tmp_path / "new"), 1, "is damaged")
    assert list((tmp_path / "new").iterdir()) == []
