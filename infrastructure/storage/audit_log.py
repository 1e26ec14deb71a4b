"""Reading the event log for auditors: a session's timeline as of a moment, and the raw event
stream filtered by session, actor, type and time. Reads the event store directly (the SQLite file
read-only with its own connection per call, or a connection of the PostgreSQL recorder's pool),
never the read models. The queries are written for SQLite; `_PostgresDialect` renames what
differs (placeholders, `rowid`, the table, `instr`).

A session's events are found through the `session` column of `event_chain` (written with each
event); its documents' and conversions' events by their aggregate ids."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, closing, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Mapper, StoredEvent

from application.session_timeline import SessionTimeline, event_data, event_type
from domain.conversion import TARGETS, conversion_id_for
from infrastructure.storage.event_reading import EventDecoder
from infrastructure.storage.sealing import DataKeys
from infrastructure.storage.timeline_snapshots import TimelineSnapshot, TimelineSnapshots

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
        with self._recorder.datastore.get_connection() as conn:
            yield _Translating(conn.cursor(row_factory=_sqlite_rows), self)

    def translate(self, sql: str, params: Any) -> tuple[str, list[Any]]:
        sql = sql.replace("instr(s.state, ?) > 0", "position(?::bytea in s.state) > 0")
        sql = sql.replace("stored_events", self._table).replace("event_chain", self._chain).replace("rowid", "notification_id")
        values = [value.encode() if isinstance(value, str) and value.startswith('"actor_id"') else value for value in params]
        return sql.replace("?", "%s"), values


def _sqlite_rows(cursor: Any) -> Any:
    """Rows as the SQLite file gives them: an aggregate id as its hex text, not a `UUID` (the
    replay keys documents and conversions by that text)."""

    def row(values: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(value.hex if isinstance(value, UUID) else value for value in values)

    return row


class _Translating:
    def __init__(self, cursor: Any, dialect: _PostgresDialect) -> None:
        self._cursor, self._dialect = cursor, dialect

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self._cursor.execute(*self._dialect.translate(sql, params))


class AuditLog:
    def __init__(self, source: Path | Any, mapper: Mapper[Any], snapshots: TimelineSnapshots | None = None) -> None:
        """`source`: the events.sqlite3 file, or the PostgreSQL recorder (`ChainedPostgresRecorder`)."""
        self._source = _SQLiteFile(source) if isinstance(source, Path) else _PostgresDialect(source)
        self._mapper = mapper
        keys = getattr(mapper, "keys", None)
        self._keys: DataKeys | None = keys if hasattr(keys, "stored_cipher") else None
        self._snapshots = snapshots if snapshots is not None else TimelineSnapshots()

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
        """The session as the events up to position `as_of` made it: folded from the nearest
        cached snapshot at or before `as_of` (or from the start), over rows decoded by the
        fast path. Snapshots are taken every `snapshots.every` rows on the way."""
        generation = self._keys.generation() if self._keys is not None else 0
        base = self._snapshots.nearest(session_id, generation, as_of)
        with self._connect() as db:
            rows, documents, attached_at = self._timeline_rows(db, session_id, base, as_of)
            if rows is None:  # a document attached after the snapshot has events before it
                base = None
                rows, documents, attached_at = self._timeline_rows(db, session_id, None, as_of)
        assert rows is not None
        return self._fold(session_id, generation, base, rows, documents, attached_at)

    def _timeline_rows(
        self, db: sqlite3.Connection, session_id: UUID, base: TimelineSnapshot | None, as_of: int
    ) -> tuple[list[tuple] | None, dict[str, str], dict[str, int]]:
        """The rows to fold after `base` up to `as_of` (in position order), which document each
        related aggregate belongs to, and where each document was first attached. None when
        `base` cannot be used."""
        start = base.position if base is not None else 0
        rows = db.execute(
            "SELECT s.rowid, s.originator_id, s.originator_version, s.topic, s.state FROM event_chain c"
            " JOIN stored_events s ON s.rowid = c.position WHERE c.session=? AND c.position > ? AND c.position <= ? ORDER BY c.position",
            (session_id.hex, start, as_of),
        ).fetchall()
        attached_at = dict.fromkeys(base.documents, start) if base is not None else {}
        for row in rows:
            if row[3] == _ATTACHED:
                attached_at.setdefault(row[1], row[0])
        document_of = {}
        for document in attached_at:
            document_of[document] = document
            for target in TARGETS:
                document_of[conversion_id_for(UUID(document), target).hex] = document
        new = [a for a, d in document_of.items() if attached_at[d] > start]
        if base is not None and new and _any_at_or_before(db, new, start):
            return None, {}, {}
        related = list(document_of)
        for first in range(0, len(related), 500):
            chunk = related[first : first + 500]
            rows += db.execute(
                f"SELECT {_COLUMNS} FROM stored_events WHERE originator_id IN ({','.join('?' * len(chunk))}) AND rowid > ? AND rowid <= ?",
                (*chunk, start, as_of),
            ).fetchall()
        rows.sort(key=lambda r: r[0])
        return rows, document_of, attached_at

    def _fold(
        self,
        session_id: UUID,
        generation: int,
        base: TimelineSnapshot | None,
        rows: list[tuple],
        document_of: dict[str, str],
        attached_at: dict[str, int],
    ) -> SessionTimeline:
        """Applies the rows, keeping a snapshot every `every` rows where the fold is one a later
        replay may start from: every document folded in so far was attached by then."""
        timeline = base.timeline.fork() if base is not None else SessionTimeline(session_id)
        applied = base.events if base is not None else 0
        needed = 0  # the latest attachment of a document folded in so far
        decode = EventDecoder(self._keys, text_ids=True).decode
        every = self._snapshots.every
        last = len(rows) - 1
        for index, (position, originator, version, topic, state) in enumerate(rows):
            timeline.apply(decode(originator, version, topic, state), position)
            document = document_of.get(originator)
            if document is not None:
                needed = max(needed, attached_at[document])
            applied += 1
            if applied % every == 0 and (index == last or rows[index + 1][0] > position) and needed <= position:
                documents = frozenset(d for d, at in attached_at.items() if at <= position)
                self._snapshots.keep(session_id, generation, TimelineSnapshot(position, applied, documents, timeline.fork()))
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
                decode = EventDecoder(self._keys).decode  # the fast path; keys read from the store once per 1,000 rows
                for row in rows:
                    event = decode(row[1], row[2], row[3], row[4])
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


def _any_at_or_before(db: sqlite3.Connection, aggregates: list[str], position: int) -> bool:
    """Whether any of these aggregates has an event at or before `position`."""
    for first in range(0, len(aggregates), 500):
        chunk = aggregates[first : first + 500]
        found = db.execute(
            f"SELECT 1 FROM stored_events WHERE originator_id IN ({','.join('?' * len(chunk))}) AND rowid <= ? LIMIT 1", (*chunk, position)
        ).fetchone()
        if found is not None:
            return True
    return False
