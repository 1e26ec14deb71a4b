"""The hash chain over the event log: tampering with the stored events (the SQLite file, or the
PostgreSQL database's tables) is found at its position."""

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import psycopg
import pytest

from application.accounts import RegisterUser
from application.chat import PostMessage, StartSession
from infrastructure.storage.event_chain import Verification, verify
from infrastructure.storage.event_store import open_event_store
from tests.backend import backend_env, settings_for

EVENTS = 2 + 1 + 40  # user, email claim, session, messages


class StoredLog:
    """The event log as stored, for a data directory on the backend under test: tampered with
    by SQL written for SQLite (`?`, `rowid`, `stored_events`), and verified as `chronicle audit
    verify` does (the file, or the PostgreSQL recorder)."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.url = backend_env(data_dir).get("CHRONICLE_DATABASE_URL")

    def execute(self, *statements: tuple[str, tuple]) -> None:
        if self.url is None:
            with closing(sqlite3.connect(self.data_dir / "events.sqlite3")) as db, db:
                for sql, params in statements:
                    db.execute(sql, params)
            return
        with psycopg.connect(self.url) as db:
            for sql, params in statements:
                db.execute(sql.replace("stored_events", "chronicle_events").replace("rowid", "notification_id").replace("?", "%s"), params)

    def state_at(self, position: int) -> bytes:
        if self.url is None:
            with closing(sqlite3.connect(self.data_dir / "events.sqlite3")) as db:
                return db.execute("SELECT state FROM stored_events WHERE rowid=?", (position,)).fetchone()[0]
        with psycopg.connect(self.url) as db:
            return bytes(db.execute("SELECT state FROM chronicle_events WHERE notification_id=%s", (position,)).fetchone()[0])

    def verify(self, expect_head: str | None = None) -> Verification:
        if self.url is None:
            return verify(self.data_dir / "events.sqlite3", expect_head=expect_head)
        app = open_event_store(settings_for(self.data_dir), cached=False)
        try:
            return verify(app.recorder, expect_head=expect_head)  # type: ignore[arg-type]
        finally:
            app.close()


@pytest.fixture
def log(write_side, data_dir):
    owner = write_side.bus.execute_now(RegisterUser("ann@example.org", "Ann", "h"), "t").value
    session = write_side.bus.execute_now(StartSession(owner.id, "Plans"), str(owner.id)).value
    for i in range(40):
        write_side.bus.execute_now(PostMessage(session.id, owner.id, f"message number {i}"), str(owner.id))
    write_side.close()
    return StoredLog(data_dir)


def chronicle(data_dir, *args):
    return subprocess.run(
        [sys.executable, "-m", "infrastructure.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **backend_env(data_dir)},
    )


def test_an_untouched_log_verifies_and_reports_its_head(log, data_dir):
    result = log.verify()
    assert result.ok and result.events == EVENTS and result.head_position == EVENTS
    done = chronicle(data_dir, "audit", "verify")
    assert done.returncode == 0
    assert done.stdout.strip() == f"{EVENTS} events verified, head position {EVENTS}, head hash {result.head_hash}"


def test_one_flipped_byte_is_found_at_its_position(log, data_dir):
    state = bytearray(log.state_at(17))
    state[state.index(b"session_id")] ^= 0x01
    log.execute(("UPDATE stored_events SET state=? WHERE rowid=?", (bytes(state), 17)))
    result = log.verify()
    assert not result.ok and result.broken_at == 17 and result.events == 16
    done = chronicle(data_dir, "audit", "verify")
    assert done.returncode == 1 and "chain broken at position 17" in done.stderr


def test_a_deleted_event_is_found_even_with_its_link_deleted_too(log):
    log.execute(("DELETE FROM stored_events WHERE rowid=?", (30,)), ("DELETE FROM event_chain WHERE position=?", (30,)))
    result = log.verify()
    assert result.broken_at == 30 and "missing" in result.problem


def test_two_reordered_events_are_found_at_the_first(log):
    a, b = log.state_at(20), log.state_at(21)
    log.execute(("UPDATE stored_events SET state=? WHERE rowid=?", (b, 20)), ("UPDATE stored_events SET state=? WHERE rowid=?", (a, 21)))
    assert log.verify().broken_at == 20


def test_a_rewritten_chain_does_not_hide_a_change_from_a_kept_head(log, data_dir):
    kept = log.verify().head_hash
    log.execute(("DELETE FROM stored_events WHERE rowid > ?", (35,)), ("DELETE FROM event_chain WHERE position > ?", (35,)))
    truncated = log.verify()
    assert truncated.ok and truncated.events == 35
    checked = log.verify(expect_head=kept)
    assert not checked.ok and "truncated or rewritten" in checked.problem
    done = chronicle(data_dir, "audit", "verify", "--expect-head", kept)
    assert done.returncode == 1 and "not in the log" in done.stderr


def test_the_log_keeps_growing_a_valid_chain_and_an_old_head_stays_found(write_side, data_dir):
    owner = write_side.bus.execute_now(RegisterUser("bob@example.org", "Bob", "h"), "t").value
    log = StoredLog(data_dir)
    kept = log.verify().head_hash
    session = write_side.bus.execute_now(StartSession(owner.id, "Later"), str(owner.id)).value
    write_side.bus.execute_now(PostMessage(session.id, owner.id, "more"), str(owner.id))
    assert log.verify(expect_head=kept).ok


def test_events_stored_before_the_chain_existed_are_linked_on_the_next_write(write_side, data_dir):
    owner = write_side.bus.execute_now(RegisterUser("cy@example.org", "Cy", "h"), "t").value
    log = StoredLog(data_dir)
    log.execute(("DELETE FROM event_chain", ()))
    write_side.bus.execute_now(StartSession(owner.id, "After the upgrade"), str(owner.id))
    result = log.verify()
    assert result.ok and result.events == 3


def test_an_altered_sealed_field_reads_as_unreadable_and_verify_names_it(write_side, data_dir):
    owner = write_side.bus.execute_now(RegisterUser("dee@example.org", "Dee", "h"), "t").value
    session = write_side.bus.execute_now(StartSession(owner.id, "Plans"), str(owner.id)).value
    posted = write_side.bus.execute_now(PostMessage(session.id, owner.id, "sealed:not really a sealed value"), str(owner.id))
    target = write_side.bus.execute_now(PostMessage(session.id, owner.id, "the real secret"), str(owner.id))
    log = StoredLog(data_dir)
    state = bytearray(log.state_at(target.position))
    at = state.index(b'"content":"sealed:') + 100
    state[at] = ord("A") if state[at] != ord("A") else ord("B")
    log.execute(("UPDATE stored_events SET state=? WHERE rowid=?", (bytes(state), target.position)))
    reader = write_side.reader
    first, second = (reader.mapper.to_domain_event(n) for n in reader.recorder.select_notifications(start=posted.position, limit=2))
    assert first.content == "sealed:not really a sealed value" and second.content == "[unreadable]"
    assert log.verify().broken_at == target.position
