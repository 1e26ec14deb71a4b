"""Reading the event log for auditors: a session's timeline as of a moment, and the raw event
stream filtered by session, actor, type and time. Reads the event store directly (the SQLite file
read-only with its own connection per call, or a connection of the PostgreSQL recorder's pool),
never the read models. The queries are written for SQLite; `_PostgresDialect` renames what
differs (placeholders, `rowid`, the table, `instr`).

A session's events are found through the `session` column of `event_chain` (written with each
event); its documents' and conversions' events by their aggregate ids."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent

from application.session_timeline import SessionTimeline, event_data, event_type
from domain.conversion import TARGETS, conversion_id_for

_COLUMNS = "rowid, originator_id, originator_version, topic, state"
_ATTACHED = "domain.document:Document.DocumentAttached"


class _SQLiteFile:
    def __init__(self, path: Path) -> None:
        self._path = path

    def connect(self) -> AbstractContextManager[Any]:
        return closing(sqlite3.connect(f"file:{self._path}?mode=ro", uri=True))


class _PostgresDialect:
    """A connection of the PostgreSQL recorder's pool, whose `execute` takes the SQLite queries."""

    def __init__(self, recorder: Any) -> None:
        self._recorder = recorder
        self._table = f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'
        self._chain = f'"{recorder.datastore.schema}".event_chain'

    @contextmanager
    def connect(self) -> Iterator[Any]:
        from psycopg.rows import tuple_row

        with self._recorder.datastore.get_connection() as conn:
            yield _Translating(conn.cursor(row_factory=tuple_row), self)

    def translate(self, sql: str, params: Any) -> tuple[str, list[Any]]:
        sql = sql.replace("instr(s.state, ?) > 0", "position(?::bytea in s.state) > 0")
        sql = sql.replace("stored_events", self._table).replace("event_chain", self._chain).replace("rowid", "notification_id")
        values = [value.encode() if isinstance(value, str) and value.startswith('"actor_id"') else value for value in params]
        return sql.replace("?", "%s"), values


class _Translating:
    def __init__(self, cursor: Any, dialect: _PostgresDialect) -> None:
        self._cursor, self._dialect = cursor, dialect

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self._cursor.execute(*self._dialect.translate(sql, params))


class AuditLog:
    def __init__(self, source: Path | Any, mapper: Mapper[Any]) -> None:
        """`source`: the events.sqlite3 file, or the PostgreSQL recorder (`ChainedPostgresRecorder`)."""
        self._source = _SQLiteFile(source) if isinstance(source, Path) else _PostgresDialect(source)
        self._mapper = mapper

    def _connect(self) -> AbstractContextManager[Any]:
        return self._source.connect()

    def _event(self, row: tuple) -> Any:
        rowid, originator, version, topic, state = row
        originator = originator if isinstance(originator, UUID) else UUID(originator)
        return self._mapper.to_domain_event(StoredEvent(originator, version, topic, bytes(state)))

    def head(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COALESCE(MAX(rowid), 0) FROM stored_events").fetchone()[0]

    def position_at(self, moment: datetime) -> int:
        """The last position whose event happened at or before `moment`."""
        with self._connect() as db:
            low, high = 0, db.execute("SELECT COALESCE(MAX(rowid), 0) FROM stored_events").fetchone()[0]
            while low < high:  # timestamps grow with positions (one writer, one clock)
                middle = (low + high + 1) // 2
                row = db.execute(f"SELECT {_COLUMNS} FROM stored_events WHERE rowid >= ? ORDER BY rowid LIMIT 1", (middle,)).fetchone()
                if row is not None and self._event(row).timestamp <= moment:
                    low = row[0]
                else:
                    high = middle - 1
            return low

    def session_exists(self, session_id: UUID) -> bool:
        with self._connect() as db:
            return db.execute("SELECT 1 FROM event_chain WHERE session=? LIMIT 1", (session_id.hex,)).fetchone() is not None

    def owner_of(self, session_id: UUID) -> UUID | None:
        """Who started the session (one indexed row: its first event), without replaying it."""
        with self._connect() as db:
            row = db.execute(
                f"SELECT {_COLUMNS} FROM stored_events WHERE originator_id=? AND originator_version=1", (session_id.hex,)
            ).fetchone()
        owner = getattr(self._event(row), "owner_id", None) if row is not None else None
        return owner if isinstance(owner, UUID) else None

    def timeline(self, session_id: UUID, as_of: int) -> SessionTimeline:
        """The session as the events up to position `as_of` made it."""
        timeline = SessionTimeline(session_id)
        with self._connect() as db:
            rows = db.execute(
                "SELECT s.rowid, s.originator_id, s.originator_version, s.topic, s.state FROM event_chain c"
                " JOIN stored_events s ON s.rowid = c.position WHERE c.session=? AND c.position <= ? ORDER BY c.position",
                (session_id.hex, as_of),
            ).fetchall()
            documents = {self._event(r).originator_id for r in rows if r[3] == _ATTACHED}
            related = [d.hex for d in documents] + [conversion_id_for(d, t).hex for d in documents for t in TARGETS]
            for start in range(0, len(related), 500):
                chunk = related[start : start + 500]
                rows += db.execute(
                    f"SELECT {_COLUMNS} FROM stored_events WHERE originator_id IN ({','.join('?' * len(chunk))}) AND rowid <= ?",
                    (*chunk, as_of),
                ).fetchall()
        for row in sorted(rows, key=lambda r: r[0]):
            timeline.apply(self._event(row), row[0])
        return timeline

    def events(
        self,
        after: int,
        limit: int,
        *,
        session: UUID | None = None,
        actor: str | None = None,
        type_: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        subject: UUID | None = None,
        scan: int = 50_000,
    ) -> tuple[list[dict[str, Any]], int]:
        """Up to `limit` events after position `after` that pass every filter, and the position
        the scan reached (pass it back as `after` to continue). At most `scan` stored events
        are looked at per call, so a rare filter answers in bounded time."""
        found: list[dict[str, Any]] = []
        reached = after
        for position, event in self._scan(after, session, actor, type_, subject, scan):
            reached = position
            if since is not None and event.timestamp < since:
                continue
            if until is not None and event.timestamp > until:
                reached = self.head()
                break
            found.append(describe(event, position))
            if len(found) == limit:
                break
        else:
            reached = self.head() if subject is not None else max(reached, min(after + scan, self.head()))
        return found, reached

    def _scan(
        self, after: int, session: UUID | None, actor: str | None, type_: str | None, subject: UUID | None, scan: int
    ) -> Iterator[tuple[int, Any]]:
        conditions, params = ["s.rowid > ?", "s.rowid <= ?"], [after, after + scan]
        if subject is not None:  # one aggregate: its events by its index, whatever their positions
            conditions, params = ["s.originator_id = ?", "s.rowid > ?"], [subject.hex, after]
        source = "stored_events s"
        if session is not None:
            source += " JOIN event_chain c ON c.position = s.rowid"
            conditions.append("c.session = ?")
            params.append(session.hex)
        if type_ is not None:
            conditions.append("s.topic LIKE ?")
            params.append(f"%.{type_}")
        if actor is not None:
            conditions.append("instr(s.state, ?) > 0")
            params.append(f'"actor_id":"{actor}"')
        with self._connect() as db:
            cursor = db.execute(
                f"SELECT s.rowid, s.originator_id, s.originator_version, s.topic, s.state FROM {source}"
                f" WHERE {' AND '.join(conditions)} ORDER BY s.rowid",
                params,
            )
            while rows := cursor.fetchmany(1000):
                for row in rows:
                    event = self._event(row)
                    if actor is None or event.actor_id == actor:
                        yield row[0], event


def describe(event: Any, position: int) -> dict[str, Any]:
    """An event as auditors read it: where, what, who, when, and its own fields."""
    return {
        "position": position,
        "type": event_type(event),
        "aggregate_id": str(event.originator_id),
        "version": event.originator_version,
        "at": event.timestamp,
        "actor_id": event.actor_id,
        "correlation_id": event.correlation_id,
        "data": event_data(event),
    }
