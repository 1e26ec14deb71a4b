"""`chronicle migrate --to postgresql://…`: a SQLite data directory made by a real server and real
commands (every kind of event, an erasure and a retention run included) copied into a real
PostgreSQL database, then served from it by a real `chronicle serve` with a fresh data directory:
the same answers, the same head hash, erased content still erased; refusals and a resumed copy."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from tests import document_files as files
from tests.e2e.server import CHRONICLE, SECRET, Api, Server, cli, free_port
from tests.e2e.test_documents import convert, uploaded
from tests.e2e.test_erasure import wait_until_rebuilt
from tests.postgres import fresh_database
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(900),  # servers on a shared 2-core machine start slowly
    pytest.mark.sqlite_only(
        reason="the migration's source is a SQLite data directory and its target PostgreSQL in either run, "
        "so the PostgreSQL pass would only repeat it (and its source servers would be on PostgreSQL)"
    ),
]
START = 120  # seconds for a server to answer /health: generous, the machine is shared
PASSWORD = "correct horse"
SLOW_HOST = {"CHRONICLE_READ_WAIT": "60"}  # a new node rebuilds its read models first: queries wait for them


def migrate(data_dir: Path, url: str, *extra: str) -> subprocess.CompletedProcess:
    return cli(data_dir, "migrate", "--to", url, *extra)


def login(server: Server, email: str, password: str = PASSWORD) -> Api:
    """Signed in, once the node's read models know the person (a node just started is building them)."""

    def signed_in():
        response = server.client().post("/api/auth/login", {"email": email, "password": password})
        assert response.status_code in (200, 503), response.text
        return response.status_code == 200 and server.client(response.json()["access_token"])

    return wait_for(signed_in, f"{email} signed in", timeout=60)


def head_hash(data_dir: Path, env: dict[str, str] | None = None) -> str:
    verified = cli(data_dir, "audit", "verify", env=env)
    assert verified.returncode == 0, verified.stderr
    return verified.stdout.strip().rsplit("head hash ", 1)[1]


def wait_for_reply(client: Api, sid: str, question_id: str) -> dict:
    def reply():
        items = client.get(f"/api/sessions/{sid}/messages", params={"after_position": client.head(), "limit": 500}).json()["items"]
        return next((m for m in items if m["reply_to"] == question_id), None)

    return wait_for(reply, "the assistant's reply", timeout=60)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A SQLite data directory with every kind of event: users (one made by the CLI, one by an
    invitation), sessions with members, renames and retention, messages posted, edited and
    deleted, assistant replies, documents and conversions, read markers, an erasure, and a
    retention run; with the answers its own server gave afterwards."""
    data_dir = tmp_path_factory.mktemp("sqlite-node")
    made = cli(data_dir, "users", "create", "root@example.org", "--role", "admin", "--password-stdin", input="admin password\n")
    assert made.returncode == 0, made.stderr
    server = Server(data_dir, env=SLOW_HOST).start(timeout=START)
    try:
        admin = login(server, "root@example.org", "admin password")
        ann, ann_user = server.client().signup("ann@example.org", name="Ann")
        bob, bob_user = server.client().signup("bob@example.org", name="Bob")
        carol, carol_user = server.client().signup("carol@example.org", name="Carol Erasable")
        invitation = admin.post("/api/admin/invitations", {"email": "ivy@example.org", "role": "auditor"}).json()
        assert (
            server.client().post(f"/api/auth/invitations/{invitation['token']}", {"display_name": "Ivy", "password": PASSWORD}).status_code
            == 201
        )

        plans = ann.post("/api/sessions", {"title": "Plans", "assistant": True}).json()["id"]
        for member in (bob_user, carol_user):
            assert ann.post(f"/api/sessions/{plans}/members", {"user_id": member["id"]}).status_code == 201
        assert ann.patch(f"/api/sessions/{plans}", {"title": "Launch plans"}).status_code == 200
        first = ann.post(f"/api/sessions/{plans}/messages", {"content": "The narwhal launch is on Friday."}).json()
        ann.patch(f"/api/sessions/{plans}/messages/{first['id']}", {"content": "The narwhal launch is on Saturday."})
        oops = bob.post(f"/api/sessions/{plans}/messages", {"content": "typo message"}).json()
        assert bob.delete(f"/api/sessions/{plans}/messages/{oops['id']}").status_code == 200
        carols = carol.post(f"/api/sessions/{plans}/messages", {"content": "quokka-secret-4411 is my locker code"}).json()
        question = bob.post(f"/api/sessions/{plans}/messages", {"content": "When is the narwhal launch?"}).json()
        wait_for_reply(bob, plans, question["id"])
        wait_for_reply(carol, plans, carols["id"])
        document = uploaded(ann, "runbook.pdf", files.pdf(["Promote the narwhal replica first.", "Then rotate keys."]), session_id=plans)
        convert(ann, document["id"], "markdown")
        convert(ann, document["id"], "text")
        carol_doc = uploaded(carol, "quokka-notes.txt", b"quokka-secret-4411 notes\n", session_id=plans)
        convert(carol, carol_doc["id"], "markdown")
        marked = bob.put(f"/api/sessions/{plans}/read", {"position": question["position"]}).json()
        assert marked["recorded"] is True

        short = ann.post("/api/sessions", {"title": "Ephemeral", "assistant": False}).json()["id"]
        assert ann.put(f"/api/sessions/{short}/retention", {"retention_days": 1}).status_code == 200
        ann.post(f"/api/sessions/{short}/messages", {"content": "kumquat-ephemeral-55"})

        erased = admin.post(f"/api/admin/users/{carol_user['id']}/erase")
        assert erased.status_code == 202, erased.text
        wait_until_rebuilt(admin)
    finally:
        server.stop()
    later = (datetime.now(UTC).date() + timedelta(days=2)).isoformat()
    expired = cli(data_dir, "retention", "run", "--today", later)
    assert expired.returncode == 0 and f"session {short}: content before" in expired.stderr, expired.stderr

    server.start(timeout=START)
    try:
        answers = everything_seen(server, plans, document["id"])
    finally:
        server.stop()
    kumquat = answers["ann@example.org"]["messages"][short]
    assert [m["content"] for m in kumquat] == ["[erased]"], "the retention run erased the ephemeral session's content"
    assert "quokka-secret-4411" not in str(answers) and "quokka-notes" not in str(answers), "Carol's erasure took her words and files"
    assert all(not answers[email]["search"][1]["hits"] for email in ("ann@example.org", "bob@example.org", "ivy@example.org"))
    return {"data_dir": data_dir, "answers": answers, "sessions": (plans, short), "document": document["id"], "erased": carol_user["id"]}


def everything_seen(server: Server, plans: str, document_id: str) -> dict:
    """What each person (and the admin) is answered on the endpoints a client reads."""

    admin = login(server, "root@example.org", "admin password")
    wait_until_rebuilt(admin)
    seen: dict = {}
    head = server.client().head()
    for email in ("ann@example.org", "bob@example.org", "ivy@example.org"):
        client = login(server, email)
        sessions = client.get("/api/sessions", params={"after_position": head}).json()["items"]
        mine: dict = {
            "me": client.get("/api/me").json(),
            "sessions": sessions,
            "messages": {s["id"]: client.get(f"/api/sessions/{s['id']}/messages", params={"limit": 500}).json()["items"] for s in sessions},
            "session": {s["id"]: client.get(f"/api/sessions/{s['id']}").json() for s in sessions},
            "search": [client.get("/api/search", params={"q": q}).json() for q in ("narwhal", "quokka", "kumquat", "replica")],
            "documents": client.get("/api/documents").json(),
        }
        seen[email] = mine
    ann = login(server, "ann@example.org")
    conversions = ann.get(f"/api/documents/{document_id}/conversions").json()
    seen["conversions"] = conversions
    seen["converted"] = [
        ann.get(f"/api/documents/{document_id}/conversions/{c['id']}/content").text for c in conversions if c["status"] == "completed"
    ]
    seen["download"] = ann.get(f"/api/documents/{document_id}/content").content
    seen["plans_documents"] = ann.get(f"/api/sessions/{plans}/documents").json()
    seen["people"] = admin.get("/api/admin/users", params={"limit": 100}).json()
    seen["timeline"] = admin.get(f"/api/audit/sessions/{plans}/timeline").json()
    return seen


@pytest.fixture
def database_url():
    with fresh_database() as url:
        yield url


def test_a_migrated_log_is_served_from_postgresql_with_the_same_answers_and_head_hash(source: dict, database_url: str, tmp_path: Path):
    data_dir = source["data_dir"]
    moved = migrate(data_dir, database_url)
    assert moved.returncode == 0, moved.stderr
    sqlite_head = head_hash(data_dir)
    summary = moved.stdout
    events = int(summary.split(" events in the database")[0])
    assert f"({events} copied now)" in summary and f"head hash {sqlite_head}" in summary and "events/s" in summary

    pg = {"CHRONICLE_DATABASE_URL": database_url}
    assert head_hash(tmp_path / "verify", env=pg) == sqlite_head
    with psycopg.connect(database_url) as db:
        people_keys = {row[0] for row in db.execute("SELECT person FROM data_keys")}
        erased = [row[0] for row in db.execute("SELECT subject FROM erased_subjects")]
        status = db.execute("SELECT finished_at IS NOT NULL FROM log_import").fetchone()
    keys_file = sqlite3.connect(data_dir / "keys.sqlite3")
    source_keys = {row[0] for row in keys_file.execute("SELECT person FROM data_keys")}
    source_erased = {row[0] for row in keys_file.execute("SELECT subject FROM erased_subjects")}
    keys_file.close()
    carol = source["erased"].replace("-", "")
    assert carol in erased and carol not in people_keys, "Carol's key stays destroyed"
    assert (people_keys, set(erased)) == (source_keys, source_erased)
    assert status == (True,)

    node = tmp_path / "pg-node"
    node.mkdir(mode=0o700)
    shutil.copytree(data_dir / "blobs", node / "blobs")  # the stored files: README, Moving to PostgreSQL, step 4
    server = Server(node, env={**pg, **SLOW_HOST}, log_dir=tmp_path).start(timeout=START)
    try:
        plans, _ = source["sessions"]
        answers = everything_seen(server, plans, source["document"])
    finally:
        server.stop()
    timeline = answers.pop("timeline")
    for key, expected in source["answers"].items():
        if key != "timeline":
            assert answers[key] == expected, key
    # Known failure (found by this test, 2026-12-02): the audit timeline of a session with
    # documents answers 500 on the PostgreSQL node; everything above is equal.
    assert timeline == source["answers"]["timeline"], "the session's audit timeline differs on PostgreSQL"
    assert not (node / "events.sqlite3").exists() and not (node / "keys.sqlite3").exists()


def test_a_database_that_is_not_empty_is_refused_and_left_as_it_was(source: dict, database_url: str, tmp_path: Path):
    made = cli(
        tmp_path,
        "users",
        "create",
        "someone@example.org",
        "--password-stdin",
        input="a long password\n",
        env={"CHRONICLE_DATABASE_URL": database_url},
    )
    assert made.returncode == 0, made.stderr
    refused = migrate(source["data_dir"], database_url)
    assert refused.returncode == 2
    assert "the database is not empty (2 events" in refused.stderr and "empty database only" in refused.stderr
    with psycopg.connect(database_url) as db:
        assert db.execute("SELECT count(*) FROM chronicle_events").fetchone() == (2,)
        assert db.execute("SELECT count(*) FROM log_import").fetchone() == (0,)


def test_a_database_a_node_is_already_running_on_is_refused(source: dict, database_url: str, tmp_path: Path):
    """The database is still empty, but the node on it would write positions that collide with
    the copied ones."""
    node = Server(tmp_path / "node", env={"CHRONICLE_DATABASE_URL": database_url}, log_dir=tmp_path).start(timeout=START)
    try:
        refused = migrate(source["data_dir"], database_url)
    finally:
        node.stop()
    assert refused.returncode == 2 and "chronicle nodes are connected to the database: stop them first" in refused.stderr, refused.stderr
    with psycopg.connect(database_url) as db:
        assert db.execute("SELECT count(*) FROM chronicle_events").fetchone() == (0,)
        assert db.execute("SELECT count(*) FROM log_import").fetchone() == (0,)


def test_an_interrupted_migration_resumes_after_the_verified_prefix(source: dict, database_url: str, tmp_path: Path):
    data_dir = source["data_dir"]
    pg = {"CHRONICLE_DATABASE_URL": database_url}
    upgraded = subprocess.run([CHRONICLE, "db", "upgrade", "--database-url", database_url], capture_output=True, text=True, timeout=120)
    assert upgraded.returncode == 0, upgraded.stderr
    # The copy is stopped for real: a transaction of ours holds position 25's link uncommitted, so
    # the third batch (21..30) waits on it, after two batches have committed; then it is killed.
    blocker = psycopg.connect(database_url)
    blocker.execute("INSERT INTO event_chain VALUES (25, '\\x00', NULL)")
    copy = subprocess.Popen(
        [CHRONICLE, "migrate", "--to", database_url, "--batch-size", "10", "--data-dir", str(data_dir)],
        env={**os.environ, "CHRONICLE_SECRET_KEY": SECRET},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    with psycopg.connect(database_url, autocommit=True) as watch:

        def stuck() -> bool:
            copied = watch.execute("SELECT count(*) FROM chronicle_events").fetchone()
            waiting = watch.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            ).fetchone()
            return copied == (20,) and waiting == (1,)

        wait_for(stuck, "two batches committed and the third waiting", timeout=60)
    copy.kill()
    copy.wait()
    blocker.rollback()
    blocker.close()

    refused = cli(tmp_path / "node", "serve", "--port", str(free_port()), env=pg)
    assert refused.returncode == 2 and "has not finished" in refused.stderr, refused.stderr

    with psycopg.connect(database_url, autocommit=True) as db:
        db.execute("UPDATE chronicle_events SET state = state || '\\x20'::bytea WHERE notification_id = 7")
        tampered = migrate(data_dir, database_url)
        assert tampered.returncode == 2 and "not an intact prefix" in tampered.stderr, tampered.stderr
        db.execute("UPDATE chronicle_events SET state = substring(state from 1 for length(state) - 1) WHERE notification_id = 7")

    resumed = migrate(data_dir, database_url)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed after position 20" in resumed.stdout, resumed.stdout
    assert head_hash(tmp_path / "verify", env=pg) == head_hash(data_dir)
    again = migrate(data_dir, database_url)
    assert again.returncode == 0 and "(0 copied now" in again.stdout, again.stdout


def test_bad_inputs_and_a_running_server_are_refused_with_exit_2(database_url: str, tmp_path: Path):
    wrong_scheme = migrate(tmp_path, "mysql://localhost/chronicle")
    assert wrong_scheme.returncode == 2 and "--to must be a postgresql:// URL" in wrong_scheme.stderr
    missing = migrate(tmp_path / "nowhere", database_url)
    assert missing.returncode == 2 and "no data directory" in missing.stderr
    empty = migrate(tmp_path, database_url)
    assert empty.returncode == 2 and "holds no Chronicle event store" in empty.stderr
    node = tmp_path / "serving"
    server = Server(node, log_dir=tmp_path).start(timeout=START)
    try:
        busy = migrate(node, database_url)
    finally:
        server.stop()
    assert busy.returncode == 2 and "a chronicle serve is using" in busy.stderr, busy.stderr
    unreachable = migrate(node, "postgresql://127.0.0.1:1/nothing")
    assert unreachable.returncode == 2 and "cannot connect to the database" in unreachable.stderr, unreachable.stderr
    with psycopg.connect(database_url) as db:
        assert db.execute("SELECT to_regclass('chronicle_events')").fetchone() == (None,), "nothing was written"
