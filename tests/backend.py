"""The store the suite runs on, chosen with `CHRONICLE_TEST_BACKEND`: `sqlite` (the default) keeps
each data directory's event log and data keys in its own SQLite files; `postgresql` gives every
data directory a test makes its own fresh PostgreSQL database (`tests.postgres.fresh_database`,
on `CHRONICLE_TEST_POSTGRES`), used by every server, CLI command and in-process store on that
directory (`CHRONICLE_DATABASE_URL`), and dropped when the test (or, for a module's server, the
module) that made it ends. The read models stay in the data directory on both backends.

Tests that are about the SQLite files themselves carry `@pytest.mark.sqlite_only` and are
deselected on the PostgreSQL run (the run's summary counts them)."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
from contextlib import ExitStack, closing
from pathlib import Path
from uuid import UUID

import psycopg

from infrastructure.settings import Settings
from tests.postgres import fresh_database

BACKEND = os.environ.get("CHRONICLE_TEST_BACKEND", "").strip() or "sqlite"
if BACKEND not in ("sqlite", "postgresql"):
    raise ValueError(f"CHRONICLE_TEST_BACKEND must be sqlite or postgresql, not {BACKEND!r}")
ON_POSTGRES = BACKEND == "postgresql"


class DataDirDatabases:
    """One PostgreSQL database per data directory, made on first use; `drop_since(mark)` drops
    those made after `mark()` (with whatever connections they still have)."""

    def __init__(self) -> None:
        self._made: list[tuple[Path, str, ExitStack]] = []

    def url_for(self, data_dir: Path) -> str:
        key = Path(data_dir).resolve()
        for path, url, _ in self._made:
            if path == key:
                return url
        stack = ExitStack()
        url = stack.enter_context(fresh_database())
        self._made.append((key, url, stack))
        return url

    def mark(self) -> int:
        return len(self._made)

    def drop_since(self, mark: int) -> None:
        while len(self._made) > mark:
            self._made.pop()[2].close()


databases = DataDirDatabases()


def backend_env(data_dir: Path) -> dict[str, str]:
    """The environment a `chronicle` process on `data_dir` needs for the backend under test."""
    return {"CHRONICLE_DATABASE_URL": databases.url_for(data_dir)} if ON_POSTGRES else {}


def settings_for(data_dir: Path, **kwargs: bool) -> Settings:
    """`Settings.from_env(data_dir)` on the backend under test (for stores opened in-process)."""
    settings = Settings.from_env(data_dir, **kwargs)
    return dataclasses.replace(settings, database_url=databases.url_for(data_dir)) if ON_POSTGRES else settings


@dataclasses.dataclass(frozen=True)
class StoredRow:
    """One stored event as the log holds it: the aggregate id as 32-hex text on both backends."""

    position: int
    originator_id: str
    originator_version: int
    topic: str
    state: bytes


def stored_events(data_dir: Path, *topic_endings: str) -> list[StoredRow]:
    """The events stored in `data_dir`'s log, in position order (those whose topic ends with one
    of `topic_endings`, when given): read from the SQLite file (read-only) or the PostgreSQL
    table directly, past the application, for tests that check what was really committed."""
    url = backend_env(data_dir).get("CHRONICLE_DATABASE_URL")
    if url is None:
        with closing(sqlite3.connect(f"file:{Path(data_dir) / 'events.sqlite3'}?mode=ro", uri=True)) as db:
            rows = db.execute("SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid").fetchall()
    else:
        with psycopg.connect(url) as pg:
            rows = pg.execute(
                "SELECT notification_id, originator_id, originator_version, topic, state FROM chronicle_events ORDER BY notification_id"
            ).fetchall()
    return [
        StoredRow(int(p), UUID(str(o)).hex, int(v), t, bytes(s)) for p, o, v, t, s in rows if not topic_endings or t.endswith(topic_endings)
    ]


def overwrite_state(data_dir: Path, position: int, state: bytes) -> None:
    """Changes a stored event's bytes behind the log's back (a tampering the chain must find)."""
    url = backend_env(data_dir).get("CHRONICLE_DATABASE_URL")
    if url is None:
        with closing(sqlite3.connect(Path(data_dir) / "events.sqlite3")) as db, db:
            db.execute("UPDATE stored_events SET state=? WHERE rowid=?", (state, position))
    else:
        with psycopg.connect(url) as pg:
            pg.execute("UPDATE chronicle_events SET state=%s WHERE notification_id=%s", (state, position))
