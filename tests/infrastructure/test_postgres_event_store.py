"""The event log and the data keys on a real PostgreSQL server (`CHRONICLE_DATABASE_URL`): commands
round-trip through the composition root, the hash chain verifies and finds tampering, destroyed
keys leave no readable copy, conflicts are refused per aggregate, and global positions follow
commit order under writers in several processes. Each test has its own database, dropped after."""

from __future__ import annotations

import logging
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from uuid import uuid4

import anyio
import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from application.accounts import RegisterUser, user_by_email
from application.chat import EditMessage, PostMessage, StartSession, UpdateSession
from domain.message import Message
from domain.user import ERASED
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings
from infrastructure.storage.event_chain import chain_head, verify
from infrastructure.storage.event_store import audit_log, chain_of, open_event_store
from infrastructure.storage.postgres_keys import PostgresKeyStore
from infrastructure.storage.postgres_log import ChainedPostgresRecorder
from infrastructure.write_side import WriteSide
from tests.postgres import fresh_database

EVENTS_TABLE = "chronicle_events"


@pytest.fixture
def database_url(monkeypatch: pytest.MonkeyPatch):
    with fresh_database() as url:
        monkeypatch.setenv("CHRONICLE_DATABASE_URL", url)
        yield url
        store = PostgresKeyStore._open.pop(url, None)
        if store is not None:
            store.close()


@pytest.fixture
def pg_side(database_url: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CHRONICLE_SECRET_KEY", raising=False)
    side: WriteSide = bootstrap(Settings.from_env(data_dir))
    yield side
    side.close()


def register(side: WriteSide, email: str = "ann@example.org"):
    return side.bus.execute_now(RegisterUser(email, "Ann", "hash"), "test").value


def sql(url: str, statement: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True) as db:
        cursor = db.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def test_the_settings_take_a_postgresql_url_and_nothing_else(monkeypatch: pytest.MonkeyPatch, data_dir: Path):
    monkeypatch.setenv("CHRONICLE_DATABASE_URL", "mysql://db/chronicle")
    with pytest.raises(ValueError, match="postgresql://"):
        Settings.from_env(data_dir)
    monkeypatch.delenv("CHRONICLE_DATABASE_URL")
    assert Settings.from_env(data_dir).database_url is None  # SQLite stays the default


def test_commands_round_trip_on_postgresql_and_nothing_is_written_to_sqlite_files(pg_side: WriteSide, data_dir: Path, database_url: str):
    bus = pg_side.bus
    owner = register(pg_side)
    assert user_by_email(pg_side.app, "ANN@example.org").id == owner.id
    session = bus.execute_now(StartSession(owner.id, "Plans"), str(owner.id)).value
    posted = bus.execute_now(PostMessage(session.id, owner.id, "hello"), str(owner.id))
    edited = bus.execute_now(EditMessage(session.id, posted.value.message.id, owner.id, "hello!"), str(owner.id))
    assert [posted.position, edited.position] == [4, 5] == [4, pg_side.app.recorder.max_notification_id()]
    fresh = open_event_store(Settings.from_env(data_dir), cached=False)
    try:
        assert fresh.repository.get(posted.value.message.id).content == "hello!"
    finally:
        fresh.close()
    assert not (data_dir / "events.sqlite3").exists() and not (data_dir / "keys.sqlite3").exists()
    stored = sql(database_url, f"SELECT convert_from(state, 'UTF8') FROM {EVENTS_TABLE} WHERE notification_id = 4")[0][0]
    assert "hello" not in stored and "sealed:" in stored  # message content is sealed in PostgreSQL too


@pytest.mark.anyio
async def test_concurrent_commands_are_group_committed_and_none_is_lost(pg_side: WriteSide):
    bus = pg_side.bus
    owner = register(pg_side)
    session = bus.execute_now(StartSession(owner.id, "Plans"), str(owner.id)).value
    bus.start()
    results = []

    async def post(i: int) -> None:
        results.append(await bus.execute(PostMessage(session.id, owner.id, f"m{i}"), str(owner.id)))

    batches_before = bus.batches
    async with anyio.create_task_group() as tg:
        for i in range(200):
            tg.start_soon(post, i)
    assert sorted(r.position for r in results) == list(range(4, 204))
    assert bus.batches - batches_before < 200
    notifications = pg_side.app.recorder.select_notifications(start=1, limit=1000)
    posted = [pg_side.app.mapper.to_domain_event(n) for n in notifications]
    assert sorted(e.content for e in posted if isinstance(e, Message.MessagePosted)) == sorted(f"m{i}" for i in range(200))


def test_a_stale_save_conflicts_per_aggregate_and_leaves_no_gap_in_positions(pg_side: WriteSide, data_dir: Path):
    owner = register(pg_side)
    session_id = pg_side.bus.execute_now(StartSession(owner.id, "v0"), str(owner.id)).value.id
    other = open_event_store(Settings.from_env(data_dir))
    try:
        mine, theirs = pg_side.app.repository.get(session_id), other.repository.get(session_id)
        theirs.rename(owner.id, "theirs")
        other.save(theirs)
        mine.rename(owner.id, "mine")
        with pytest.raises(IntegrityError):
            pg_side.app.save(mine)
        recorder = pg_side.app.recorder
        recorder.insert_events([StoredEvent(uuid4(), 1, "tests:Probe", b"{}")])
        positions = [n.id for n in recorder.select_notifications(start=1, limit=100)]
        assert positions == list(range(1, len(positions) + 1))  # the refused transaction left no hole
        assert pg_side.bus.execute_now(UpdateSession(session_id, owner.id, title="after"), str(owner.id)).position == positions[-1] + 1
    finally:
        other.close()


def test_the_hash_chain_verifies_through_the_recorder_and_finds_tampering(pg_side: WriteSide, database_url: str):
    owner = register(pg_side)
    session = pg_side.bus.execute_now(StartSession(owner.id, "Plans"), str(owner.id)).value
    for i in range(20):
        pg_side.bus.execute_now(PostMessage(session.id, owner.id, f"message {i}"), str(owner.id))
    chain = chain_of(pg_side.app)
    assert isinstance(chain, ChainedPostgresRecorder)
    intact = verify(chain)
    assert intact.ok and intact.events == 23 and (intact.head_position, intact.head_hash) == chain_head(chain)
    assert verify(chain, expect_head=intact.head_hash).ok

    sql(database_url, f"UPDATE {EVENTS_TABLE} SET state = state || '\\x20'::bytea WHERE notification_id = 10")
    changed = verify(chain)
    assert changed.broken_at == 10 and "does not match" in changed.problem

    sql(database_url, f"DELETE FROM {EVENTS_TABLE} WHERE notification_id = 10")
    missing = verify(chain)
    assert missing.broken_at == 10 and "missing" in missing.problem


def test_chronicle_audit_verify_takes_database_url_and_backup_refuses_postgresql(pg_side: WriteSide, database_url: str, data_dir: Path):
    register(pg_side)
    head = chain_head(chain_of(pg_side.app))
    env = {key: value for key, value in os.environ.items() if key != "CHRONICLE_DATABASE_URL"}
    chronicle = [sys.executable, "-m", "infrastructure.cli"]
    verified = subprocess.run(
        [*chronicle, "audit", "verify", "--data-dir", str(data_dir), "--database-url", database_url],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert verified.returncode == 0, verified.stderr
    assert f"head position {head[0]}, head hash {head[1]}" in verified.stdout
    backup = subprocess.run(
        [
            *chronicle,
            "backup",
            "--data-dir",
            str(data_dir),
            "--database-url",
            database_url,
            str(data_dir / "b"),
            "--keys-to",
            str(data_dir / "k"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert backup.returncode == 2 and "pg_dump" in backup.stderr


def test_destroying_a_key_erases_the_content_and_leaves_no_copy_in_the_table_files(pg_side: WriteSide, database_url: str):
    owner, other = register(pg_side), register(pg_side, "bob@example.org")
    session = pg_side.bus.execute_now(StartSession(owner.id, "Plans"), str(owner.id)).value
    posted = pg_side.bus.execute_now(PostMessage(session.id, owner.id, "my secret"), str(owner.id)).value.message
    kept = pg_side.bus.execute_now(StartSession(other.id, "Theirs"), str(other.id)).value
    keys = sql(database_url, "SELECT key FROM data_keys WHERE person = %s", (owner.id.hex,))
    assert len(keys) == 2  # the person's own key and the key of their messages of today
    sql(database_url, "CREATE EXTENSION IF NOT EXISTS pageinspect")

    def table_bytes() -> bytes:
        pages = sql(database_url, "SELECT pg_relation_size('data_keys') / current_setting('block_size')::int")[0][0]
        return b"".join(bytes(sql(database_url, "SELECT get_raw_page('data_keys', %s)", (page,))[0][0]) for page in range(pages))

    assert all(bytes(key) in table_bytes() for (key,) in keys)  # what the check below looks for is there before
    generation = pg_side.keys.generation()
    pg_side.keys.destroy(owner.id.hex)

    assert not any(bytes(key) in table_bytes() for (key,) in keys)
    assert pg_side.keys.generation() == generation + 1
    reader = open_event_store(pg_side.settings, cached=False)
    try:
        assert reader.repository.get(posted.id).content == ERASED
        assert reader.repository.get(owner.id).email == ERASED
        assert reader.repository.get(kept.id).title == "Theirs"
        assert reader.repository.get(other.id).email == "bob@example.org"
    finally:
        reader.close()
    assert verify(chain_of(pg_side.app)).ok  # the stored bytes are unchanged: the chain still holds


def test_a_destroy_waits_out_a_transaction_older_than_it_and_then_leaves_no_copy(
    pg_side: WriteSide, database_url: str, caplog: pytest.LogCaptureFixture
):
    """An older transaction (an ANALYZE, a pg_dump) may still see the deleted rows, so VACUUM FULL
    keeps them; the destroy vacuums again once that transaction has ended."""
    owner = register(pg_side)
    keys = sql(database_url, "SELECT key FROM data_keys WHERE person = %s", (owner.id.hex,))
    sql(database_url, "CREATE EXTENSION IF NOT EXISTS pageinspect")

    def table_bytes() -> bytes:
        pages = sql(database_url, "SELECT pg_relation_size('data_keys') / current_setting('block_size')::int")[0][0]
        return b"".join(bytes(sql(database_url, "SELECT get_raw_page('data_keys', %s)", (page,))[0][0]) for page in range(pages))

    refused = threading.Event()

    class Refusals(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "older transaction" in record.getMessage():
                refused.set()

    handler = Refusals()
    caplog.set_level(logging.INFO, logger="infrastructure.storage.postgres_keys")
    logging.getLogger("infrastructure.storage.postgres_keys").addHandler(handler)
    older = psycopg.connect(database_url)
    try:
        older.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        older.execute("SELECT count(*) FROM chronicle_events").fetchone()  # begins, and takes the snapshot
        destroying = threading.Thread(target=pg_side.keys.destroy, args=(owner.id.hex,))
        destroying.start()
        assert refused.wait(PostgresKeyStore.SCRUB_PATIENCE), "the first VACUUM FULL kept no row: the older snapshot did not count"
        assert all(bytes(key) in table_bytes() for (key,) in keys)  # kept while the snapshot lives
        older.commit()
        destroying.join(PostgresKeyStore.SCRUB_PATIENCE)
        assert not destroying.is_alive()
    finally:
        older.close()
        logging.getLogger("infrastructure.storage.postgres_keys").removeHandler(handler)
    assert not any(bytes(key) in table_bytes() for (key,) in keys)


def test_a_destroy_that_cannot_scrub_in_time_returns_and_says_what_to_vacuum(
    pg_side: WriteSide, database_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
):
    """The keys are deleted either way: past its patience the destroy returns (an erasure goes on
    to record itself) and warns the operator, and the next scrub tries once without waiting."""
    owner, other = register(pg_side), register(pg_side, "bob@example.org")
    monkeypatch.setattr(PostgresKeyStore, "SCRUB_PATIENCE", 0.3)
    older = psycopg.connect(database_url)
    try:
        older.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        older.execute("SELECT count(*) FROM chronicle_events").fetchone()
        pg_side.keys.destroy(owner.id.hex)
        warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "VACUUM FULL data_keys" in r.getMessage()]
        assert len(warnings) == 1 and "dead row versions cannot be removed yet" in warnings[0], warnings
        assert sql(database_url, "SELECT count(*) FROM data_keys WHERE person = %s", (owner.id.hex,)) == [(0,)]
        caplog.clear()
        caplog.set_level(logging.INFO, logger="infrastructure.storage.postgres_keys")
        pg_side.keys.destroy(other.id.hex)  # within the patience of the one that gave up: one try, no wait
        assert not [r for r in caplog.records if "vacuuming again" in r.getMessage()]
    finally:
        older.close()


def _write_in_small_transactions(data_dir: str, database_url: str, seconds: float, committed: multiprocessing.Queue) -> None:
    """A writer process: transactions of 1 to 3 events for `seconds`; reports how many it committed."""
    os.environ["CHRONICLE_DATABASE_URL"] = database_url
    app = open_event_store(Settings.from_env(data_dir))
    count, deadline = 0, time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            size = 1 + count % 3
            aggregate = uuid4()
            app.recorder.insert_events([StoredEvent(aggregate, v, "tests:Probe", b"{}") for v in range(1, size + 1)])
            count += size
    finally:
        app.close()
        committed.put(count)


def _read_from_the_last_position(data_dir: str, database_url: str, writers_done, seen: multiprocessing.Queue) -> None:
    """A reader process: tails the log from its last position; reports every position it read, in
    order, and stops once the writers are done and it has read up to the head."""
    os.environ["CHRONICLE_DATABASE_URL"] = database_url
    app = open_event_store(Settings.from_env(data_dir), cached=False)
    positions: list[int] = []
    last = 0
    try:
        while True:
            finished = writers_done.is_set()
            batch = app.recorder.select_notifications(start=last + 1, limit=500)
            positions += [n.id for n in batch]
            last = batch[-1].id if batch else last
            if finished and not batch and last >= (app.recorder.max_notification_id() or 0):
                break
    finally:
        app.close()
        seen.put(positions)


def test_global_positions_follow_commit_order_under_writers_in_four_processes(database_url: str, tmp_path: Path):
    """A reader tailing the log from its last position never finds a later position before an
    earlier one is visible (it would pass it for good), and reads every committed event."""
    data_dir = tmp_path / "node"
    data_dir.mkdir()
    open_event_store(Settings.from_env(data_dir)).close()  # the schema, before the processes race to it
    context = multiprocessing.get_context("spawn")
    committed, seen, writers_done = context.Queue(), context.Queue(), context.Event()
    reader = context.Process(target=_read_from_the_last_position, args=(str(data_dir), database_url, writers_done, seen))
    writers = [context.Process(target=_write_in_small_transactions, args=(str(data_dir), database_url, 4.0, committed)) for _ in range(4)]
    reader.start()
    for writer in writers:
        writer.start()
    counts = [committed.get(timeout=120) for _ in writers]
    for writer in writers:
        writer.join(30)
        assert writer.exitcode == 0
    writers_done.set()
    positions = seen.get(timeout=120)
    reader.join(30)
    assert reader.exitcode == 0
    total = sum(counts)
    assert total > 400, f"the writers committed only {total} events: too few to race"
    skipped = sorted(set(range(1, total + 1)) - set(positions))
    assert not skipped, f"the reader passed {len(skipped)} positions that were committed later, first {skipped[:5]}"
    assert positions == list(range(1, total + 1))  # in order, none twice, no hole
    app = open_event_store(Settings.from_env(data_dir), cached=False)
    try:
        assert app.recorder.max_notification_id() == total
        assert verify(chain_of(app)).events == total
    finally:
        app.close()


def test_the_audit_log_replays_and_filters_the_postgresql_log(pg_side: WriteSide):
    owner, other = register(pg_side), register(pg_side, "bob@example.org")
    session = pg_side.bus.execute_now(StartSession(owner.id, "Plans"), str(owner.id)).value
    pg_side.bus.execute_now(StartSession(other.id, "Elsewhere"), str(other.id))
    posted = pg_side.bus.execute_now(PostMessage(session.id, owner.id, "hello"), str(owner.id))
    audit = audit_log(pg_side.settings, pg_side.reader)
    assert audit.head() == posted.position and audit.session_exists(session.id) and audit.owner_of(session.id) == owner.id
    timeline = audit.timeline(session.id, posted.position)
    assert timeline.title == "Plans" and [m["content"] for m in timeline.view()["messages"]] == ["hello"]
    assert audit.position_at(datetime.now(UTC)) == posted.position
    found, reached = audit.events(0, 100, session=session.id, actor=str(owner.id))
    assert [item["type"] for item in found] == ["SessionStarted", "MessagePosted"] and reached == posted.position
