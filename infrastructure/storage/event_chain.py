"""Tamper evidence: every stored event gets a link in a SHA-256 hash chain, in global order.

link(n) = SHA-256(link(n-1) ‖ n ‖ originator id ‖ version ‖ topic ‖ state as stored), with
link(0) = 32 zero bytes. The links live in `event_chain` beside the stored events in the same
database (the SQLite file, or the PostgreSQL database of `CHRONICLE_DATABASE_URL`) and are
written in the same transaction as the events they cover. Changing a byte of
a stored event, deleting one or reordering two breaks the chain at that position; cutting events
off the end is caught by comparing with a head hash kept elsewhere (`verify(expect_head=…)`).

The chain covers the bytes as stored: an event whose personal data is encrypted keeps its
ciphertext, so destroying a key later does not break the chain."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder, SQLiteCursor

GENESIS = bytes(32)
CHAIN_TABLES = (
    "CREATE TABLE IF NOT EXISTS event_chain (position INTEGER PRIMARY KEY, hash BLOB NOT NULL, session TEXT)",
    "CREATE INDEX IF NOT EXISTS event_chain_by_session ON event_chain(session, position) WHERE session IS NOT NULL",
)
_SESSION_FIELD = re.compile(rb'"session_id":\{"_type_":"uuid_hex","_data_":"([0-9a-f]{32})"\}')
_SESSION_TOPIC = "domain.chat_session:ChatSession."


def session_of(originator_id: str, topic: str, state: bytes) -> str | None:
    """The chat session an event belongs to (its own events, and events naming a `session_id`):
    kept beside its link so an audit replay finds a session's events without a full scan."""
    if topic.startswith(_SESSION_TOPIC):
        return originator_id
    found = _SESSION_FIELD.search(state)
    return found.group(1).decode() if found else None


def link(previous: bytes, position: int, originator_id: str, version: int, topic: str, state: bytes) -> bytes:
    originator, kind = originator_id.encode(), topic.encode()
    return hashlib.sha256(
        b"".join(
            (
                previous,
                _PACK(position, len(originator)),
                originator,
                _VERSION(8, version),
                len(kind).to_bytes(8, "big"),
                kind,
                len(state).to_bytes(8, "big"),
                state,
            )
        )
    ).digest()


_PACK = struct.Struct(">QQ").pack
_VERSION = struct.Struct(">Qq").pack


ChainedEvent = tuple[int, str, int, str, bytes]
"""(position, originator id as 32 hex digits, version, topic, state as stored)."""


class ChainSource(Protocol):
    """A log with its chain, as `verify` and `chain_head` read it (read-only)."""

    def chain_head(self) -> tuple[int, str]:
        """The last position and its link (hex)."""

    def chain_walk(self) -> AbstractContextManager[ChainWalk]:
        """How many events, the events in position order, and the links in position order,
        all from one snapshot of the log."""


ChainWalk = tuple[int, Iterator[ChainedEvent], Iterator[tuple[int, bytes]]]


class SQLiteChainFile:
    """The chain of an events.sqlite3 file (a live store or a backup copy), read-only."""

    def __init__(self, path: Path | str) -> None:
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)

    def chain_head(self) -> tuple[int, str]:
        db = self._connect()
        try:
            row = db.execute("SELECT position, hash FROM event_chain ORDER BY position DESC LIMIT 1").fetchone()
        finally:
            db.close()
        return (int(row[0]), bytes(row[1]).hex()) if row else (0, GENESIS.hex())

    @contextmanager
    def chain_walk(self) -> Iterator[ChainWalk]:
        db = self._connect()  # one connection: both cursors read the same snapshot while either is open
        try:
            total = db.execute("SELECT COUNT(*) FROM stored_events").fetchone()[0]
            events = _rows(db, "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events ORDER BY rowid")
            links = _rows(db, "SELECT position, hash FROM event_chain ORDER BY position")
            yield total, events, ((position, bytes(digest)) for position, digest in links)
        finally:
            db.close()


class ChainedSQLiteRecorder(SQLiteApplicationRecorder):
    """eventsourcing's SQLite recorder, plus a chain link per inserted event (same transaction)."""

    def chain_head(self) -> tuple[int, str]:
        return SQLiteChainFile(self.datastore.pool.db_name).chain_head()

    def chain_walk(self) -> AbstractContextManager[ChainWalk]:
        """Through its own read-only connection, so a long walk holds none of the store's."""
        return SQLiteChainFile(self.datastore.pool.db_name).chain_walk()

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *CHAIN_TABLES]

    def _insert_events(self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        if not positions:
            return positions
        previous = _link_before(c, positions[0])
        rows = []
        for position, stored in zip(positions, stored_events, strict=True):
            originator = stored.originator_id.hex if isinstance(stored.originator_id, UUID) else str(stored.originator_id)
            previous = link(previous, position, originator, stored.originator_version, stored.topic, stored.state)
            rows.append((position, previous, session_of(originator, stored.topic, stored.state)))
        c.executemany("INSERT INTO event_chain VALUES (?,?,?)", rows)
        return positions


def _link_before(c: SQLiteCursor, position: int) -> bytes:
    """The link of the event before `position`; events stored before the chain existed (an
    older data directory) are linked first, in the same transaction."""
    c.execute("SELECT position, hash FROM event_chain WHERE position < ? ORDER BY position DESC LIMIT 1", (position,))
    row = c.fetchone()
    last, previous = (row[0], bytes(row[1])) if row else (0, GENESIS)
    if last == position - 1:
        return previous
    c.execute(
        "SELECT rowid, originator_id, originator_version, topic, state FROM stored_events WHERE rowid > ? AND rowid < ? ORDER BY rowid",
        (last, position),
    )
    missing = []
    for rowid, originator, version, topic, state in c.fetchall():
        previous = link(previous, rowid, originator, version, topic, state)
        missing.append((rowid, previous, session_of(originator, topic, state)))
    c.executemany("INSERT INTO event_chain VALUES (?,?,?)", missing)
    return previous


@dataclass(frozen=True)
class Verification:
    """`broken_at` is the first position whose link does not hold (None when all hold)."""

    events: int
    head_position: int
    head_hash: str
    broken_at: int | None = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_at is None and not self.problem


def chain_head(source: ChainSource | Path | str) -> tuple[int, str]:
    """The last position and its link: what `verify` must end at, and what an auditor writes down."""
    return _source(source).chain_head()


def _source(source: ChainSource | Path | str) -> ChainSource:
    return SQLiteChainFile(source) if isinstance(source, Path | str) else source


def _rows(db: sqlite3.Connection, sql: str, batch: int = 10_000) -> Iterator[tuple]:
    cursor = db.execute(sql)
    while rows := cursor.fetchmany(batch):
        yield from rows


def verify(
    source: ChainSource | Path | str, *, expect_head: str | None = None, progress: Callable[[int], None] = lambda done: None
) -> Verification:
    """Walks the whole log in position order, recomputing every link (read-only). `source` is a
    chained recorder (SQLite or PostgreSQL) or the path of an events.sqlite3 file (a backup)."""
    with _source(source).chain_walk() as (total, events, links):
        previous, expected, count, seen_expected = GENESIS, 1, 0, expect_head is None
        for event in events:
            position = event[0]
            stored = next(links, None)
            if position != expected:
                return Verification(count, expected - 1, previous.hex(), expected, f"event {expected} is missing")
            if stored is None or stored[0] != position:
                return Verification(count, position - 1, previous.hex(), position, f"event {position} has no chain link")
            previous = link(previous, *event)
            if previous != stored[1]:
                return Verification(
                    count,
                    position - 1,
                    stored[1].hex(),
                    position,
                    f"event {position} does not match its chain link (changed, reordered or replaced)",
                )
            count += 1
            expected += 1
            seen_expected = seen_expected or previous.hex() == expect_head
            if count % 100_000 == 0:
                progress(count)
        extra = next(links, None)
        if extra is not None:
            return Verification(count, expected - 1, previous.hex(), extra[0], f"event {extra[0]} is missing (its link remains)")
        progress(total)
        if not seen_expected:
            return Verification(
                count,
                expected - 1,
                previous.hex(),
                None,
                f"the expected head {expect_head} is not in the log: it was truncated or rewritten",
            )
        return Verification(count, expected - 1, previous.hex())
