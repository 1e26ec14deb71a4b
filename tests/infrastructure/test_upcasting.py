"""Events stored by an older version of Chronicle still read: a fixture data directory written
before `SessionStarted` gained `retention_days` (version 1) opens, replays and projects."""

import shutil
import sqlite3
from pathlib import Path
from uuid import UUID

import pytest

from application.chat import StartSession
from domain.chat_session import ChatSession
from infrastructure.bootstrap import bootstrap
from infrastructure.settings import Settings
from infrastructure.storage.event_chain import verify

FIXTURE = Path(__file__).parent.parent / "fixtures" / "v1"
OWNER = UUID("23da9000-e53a-47d5-bfb1-7822733e3f59")
SESSION = UUID("a2562392-590c-4120-8526-6d2ec868ba3c")


def stored_state(path: Path, position: int) -> bytes:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT state FROM stored_events WHERE rowid=?", (position,)).fetchone()[0]
    finally:
        db.close()


@pytest.mark.sqlite_only(reason="the version 1 fixture is a data directory of SQLite files written by an older Chronicle")
def test_a_version_1_session_started_event_is_upcast_when_read(tmp_path, monkeypatch):
    monkeypatch.delenv("CHRONICLE_SECRET_KEY", raising=False)
    for name in ("events.sqlite3", "keys.sqlite3"):
        shutil.copy(FIXTURE / name, tmp_path / name)
    assert b"class_version" not in stored_state(tmp_path / "events.sqlite3", 3)
    side = bootstrap(Settings.from_env(tmp_path))
    try:
        session = side.reader.repository.get(SESSION)
        assert isinstance(session, ChatSession)
        assert (session.title, session.owner_id, session.retention_days) == ("Launch plans", OWNER, None)
        side.runner.catch_up()
        rows = side.read_store.dump(["sessions", "messages", "session_retention"])
        assert [r[3] for r in rows["sessions"]] == ["Launch plans"]  # rows begin with the rowid
        assert [r[6] for r in rows["messages"]] == ["Stored before sessions had a retention policy."]
        assert rows["session_retention"] == []

        newer = side.bus.execute_now(StartSession(OWNER, "Newer", False, 30), str(OWNER))
        assert b'"class_version":2' in stored_state(tmp_path / "events.sqlite3", newer.position)
        assert side.reader.repository.get(newer.value.id).retention_days == 30
    finally:
        side.close()
    assert verify(tmp_path / "events.sqlite3").ok
