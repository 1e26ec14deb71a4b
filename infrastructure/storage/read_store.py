"""The read store on SQLite: a file of read tables beside the event store, written only by
projectors (stdlib sqlite3, in their own thread) and read by queries (aiosqlite)."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from projections.projector import Projector
from projections.storage import Row

log = logging.getLogger(__name__)

_TRACKING = "CREATE TABLE IF NOT EXISTS projection_positions ( name TEXT PRIMARY KEY, position INTEGER NOT NULL, updated_at REAL NOT NULL)"
_FAILURES = (
    "CREATE TABLE IF NOT EXISTS projection_failures ("
    " name TEXT PRIMARY KEY, position INTEGER NOT NULL, error TEXT NOT NULL, at REAL NOT NULL)"
)
SCRATCH_CACHE_KIB = 256 * 1024
"""A rebuild's shadow keeps up to this much of itself in memory (SQLite's default is 2 MiB)."""
_SCHEMAS = "CREATE TABLE IF NOT EXISTS projection_schemas (name TEXT PRIMARY KEY, fingerprint TEXT NOT NULL)"
GENERATION = (
    "CREATE TABLE IF NOT EXISTS read_generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)",
    "INSERT OR IGNORE INTO read_generation VALUES (1, 0)",
)
"""Goes up whenever read tables are replaced or emptied rather than moved forward by events (a
rebuild's swap, a reset, a schema change): what they show may then differ at the same positions
(an erasure rebuild reads "[erased]"), so the HTTP layer's ETags, which it is part of, all change."""
BUMP_GENERATION = "UPDATE read_generation SET value = value + 1 WHERE id = 1"
_KEY_GENERATION = "CREATE TABLE IF NOT EXISTS replica_key_generation (id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL)"


def schema_fingerprint(projector: Projector) -> str:
    return hashlib.sha256("\n".join(projector.schema).encode()).hexdigest()[:16]


def _dict_row(cursor: Any, row: tuple) -> Row:
    return {d[0]: v for d, v in zip(cursor.description, row, strict=True)}


class SQLiteReadTransaction:
    """Writes are queued and sent to SQLite with `executemany`, one call per run of the same
    statement instead of one per event (a statement costs ≈ 6 µs of which most is the call).
    Consecutive `execute`s of the same SQL join one run; an `insert` joins its SQL's run even
    across other inserts. Any other statement, any read and `flush` send the queue in order,
    so a projector reads what it has written."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection
        self.published: list[tuple[str, bytes]] = []
        self._queue: list[tuple[str, list[Sequence[Any]]]] = []
        self._inserts: dict[str, list[Sequence[Any]]] = {}

    def publish(self, channel: str, body: bytes) -> None:
        self.published.append((channel, body))

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        if self._queue and self._queue[-1][0] == sql and sql not in self._inserts:
            self._queue[-1][1].append(params)
            return
        self.flush()
        self._queue.append((sql, [params]))

    def insert(self, sql: str, params: Sequence[Any]) -> None:
        rows = self._inserts.get(sql)
        if rows is None:
            rows = self._inserts[sql] = []
            self._queue.append((sql, rows))
        rows.append(params)

    def flush(self) -> None:
        queue, self._queue, self._inserts = self._queue, [], {}
        for sql, rows in queue:
            if len(rows) == 1:
                self._connection.execute(sql, rows[0])
            else:
                self._connection.executemany(sql, rows)

    def discard(self) -> None:
        self._queue, self._inserts = [], {}

    def savepoint(self, name: str) -> None:
        self.flush()
        self._connection.execute(f"SAVEPOINT {name}")

    def rollback_to(self, name: str) -> None:
        """Forgets the queue and undoes everything since the savepoint (which stays open)."""
        self.discard()
        self._connection.execute(f"ROLLBACK TO {name}")

    def release(self, name: str) -> None:
        self.flush()
        self._connection.execute(f"RELEASE {name}")

    def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        self.flush()
        cursor = self._connection.execute(sql, params)
        return [_dict_row(cursor, row) for row in cursor.fetchall()]

    def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        self.flush()
        cursor = self._connection.execute(sql, params)
        row = cursor.fetchone()
        return None if row is None else _dict_row(cursor, row)

    def positions(self) -> dict[str, int]:
        self.flush()
        rows = self._connection.execute("SELECT name, position FROM projection_positions").fetchall()
        return {name: int(position) for name, position in rows}

    def record_failure(self, name: str, position: int, error: str) -> None:
        self.flush()
        self._connection.execute("INSERT OR REPLACE INTO projection_failures VALUES (?,?,?,?)", (name, position, error[:1000], time.time()))

    def failures(self) -> dict[str, tuple[int, str]]:
        self.flush()
        rows = self._connection.execute("SELECT name, position, error FROM projection_failures").fetchall()
        return {name: (int(position), error) for name, position, error in rows}

    def set_positions(self, positions: dict[str, int]) -> None:
        self.flush()
        now = time.time()
        self._connection.executemany(
            "INSERT INTO projection_positions (name, position, updated_at) VALUES (?, ?, ?)"
            " ON CONFLICT(name) DO UPDATE SET position=excluded.position, updated_at=excluded.updated_at",
            [(name, position, now) for name, position in positions.items()],
        )
        self._connection.executemany("DELETE FROM projection_failures WHERE name=? AND position<=?", [(n, p) for n, p in positions.items()])


class SQLiteReadStore:
    """The writer side. Read tables can always be rebuilt from the log, so the file uses
    synchronous=NORMAL: a power loss may undo the last read-model commits, and their
    positions with them, so the projectors simply apply those events again."""

    def __init__(self, path: Path, *, scratch: bool = False) -> None:
        """`scratch`: a file that is thrown away if anything goes wrong (a rebuild's shadow):
        its journal stays in memory and nothing is fsynced."""
        self.path = path
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        if scratch:
            self._connection.execute("PRAGMA journal_mode=MEMORY")
            self._connection.execute("PRAGMA synchronous=OFF")
            self._connection.execute(f"PRAGMA cache_size=-{SCRATCH_CACHE_KIB}")  # indexes on random ids stay in memory
            self._connection.execute("PRAGMA temp_store=MEMORY")
            return
        self._connection.execute("PRAGMA journal_mode=WAL")
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.execute("PRAGMA secure_delete=ON")  # erased content leaves no trace in free pages

    def close(self) -> None:
        self._connection.close()

    def ensure_schema(self, projectors: Sequence[Projector]) -> None:
        """Creates what is missing. A projector whose schema changed since its tables were
        built (or that was built before schemas were fingerprinted) starts again from an
        empty table at position 0: a read model is rebuilt from the log, never migrated."""
        with self.transaction() as tx:
            tx.execute(_TRACKING)
            tx.execute(_FAILURES)
            tx.execute(_SCHEMAS)
            for statement in GENERATION:
                tx.execute(statement)
            tx.flush()
            known = dict(self._connection.execute("SELECT name, fingerprint FROM projection_schemas").fetchall())
            positions = self.positions()
            for projector in projectors:
                fingerprint = schema_fingerprint(projector)
                if known.get(projector.name) != fingerprint:
                    if positions.get(projector.name, 0) > 0 or projector.name in known:
                        log.warning("the %s read model's schema changed: rebuilding it from the log", projector.name)
                        for table in projector.tables:
                            tx.execute(f"DROP TABLE IF EXISTS {table}")
                        tx.set_positions({projector.name: 0})
                        tx.execute("DELETE FROM projection_failures WHERE name=?", (projector.name,))
                        tx.execute(BUMP_GENERATION)
                    tx.execute("INSERT OR REPLACE INTO projection_schemas VALUES (?,?)", (projector.name, fingerprint))
                for statement in projector.schema:
                    tx.execute(statement)

    @contextmanager
    def transaction(self) -> Iterator[SQLiteReadTransaction]:
        """BEGIN IMMEDIATE: two processes applying the log (a server and a rebuild) take
        turns, and each re-reads positions inside its transaction, so no event is applied twice."""
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            tx = SQLiteReadTransaction(self._connection)
            yield tx
            tx.flush()
            self._connection.execute("COMMIT")
        except BaseException:
            if self._connection.in_transaction:
                self._connection.execute("ROLLBACK")
            raise

    def positions(self) -> dict[str, int]:
        rows = self._connection.execute("SELECT name, position FROM projection_positions").fetchall()
        return {name: int(position) for name, position in rows}

    def failures(self) -> dict[str, tuple[int, str]]:
        """Projectors stopped by an event they could not apply: name → (position, error)."""
        return SQLiteReadTransaction(self._connection).failures()

    def reset(self, projectors: Sequence[Projector]) -> None:
        """Drops the projectors' tables and positions and creates them empty, in one transaction."""
        with self.transaction() as tx:
            tx.execute(_TRACKING)
            tx.execute(_FAILURES)
            tx.execute(_SCHEMAS)
            for statement in GENERATION:
                tx.execute(statement)
            tx.execute(BUMP_GENERATION)
            for projector in projectors:
                tx.execute("INSERT OR REPLACE INTO projection_schemas VALUES (?,?)", (projector.name, schema_fingerprint(projector)))
                for table in projector.tables:
                    tx.execute(f"DROP TABLE IF EXISTS {table}")
                for statement in projector.schema:
                    tx.execute(statement)
            tx.set_positions({projector.name: 0 for projector in projectors})

    def key_generation(self) -> int | None:
        """The key store's generation when these read models were last rebuilt after keys were
        destroyed (None: never recorded). See `workers.replica_erasures`."""
        try:
            row = self._connection.execute("SELECT value FROM replica_key_generation").fetchone()
        except sqlite3.OperationalError:
            return None  # no such table yet
        return None if row is None else int(row[0])

    def set_key_generation(self, generation: int) -> None:
        with self.transaction() as tx:
            tx.execute(_KEY_GENERATION)
            tx.execute("INSERT OR REPLACE INTO replica_key_generation VALUES (1, ?)", (generation,))

    def dump(self, tables: Sequence[str]) -> dict[str, list[tuple]]:
        """Every row of these tables with its rowid, in a stable order (for comparing two builds:
        a rebuild gives the same rowids as the live build, as `tests/e2e/test_durability.py` checks)."""
        return {table: sorted(self._connection.execute(f"SELECT rowid, * FROM {table}").fetchall(), key=repr) for table in tables}


class AioSQLiteReadConnection:
    """The query side: one aiosqlite connection (its own thread), read-only."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection

    @classmethod
    async def open(cls, path: Path) -> AioSQLiteReadConnection:
        connection = await aiosqlite.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
        connection.row_factory = _dict_row
        return cls(connection)

    async def close(self) -> None:
        await self._connection.close()

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return await self._connection.execute_fetchall(sql, params)  # type: ignore[return-value]

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> Row | None:
        async with self._connection.execute(sql, params) as cursor:
            return await cursor.fetchone()  # type: ignore[return-value]
