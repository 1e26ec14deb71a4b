"""The event log on PostgreSQL (`CHRONICLE_DATABASE_URL`): eventsourcing's PostgreSQL recorder,
with gapless positions in commit order and the hash-chain link of every event written in the
same transaction, as `ChainedSQLiteRecorder` does on SQLite.

Positions follow commit order: eventsourcing's recorder takes `LOCK TABLE … IN EXCLUSIVE MODE`
on the events table before it inserts (readers are not blocked), so the writers' transactions
are serialised from the moment they are numbered until they commit, and no reader can pass a
position that a transaction still open will fill later.

Each inserting transaction also sends `NOTIFY chronicle_log` with its highest position (and the
database's clock, for the lag figure); PostgreSQL delivers it at commit, in commit order, to
every node's projection process (`postgres_notifications.LogNotifications`), which wakes its
runner at once instead of at its next poll (ADR-042). Under that lock this recorder numbers
the events itself, `MAX(notification_id) + 1, + 2, …`, instead of the table's sequence: a
transaction refused by the (originator_id, originator_version) key leaves no hole, so
positions are 1, 2, 3, … as on SQLite and `verify` needs no exception for gaps."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, ProgrammingError, StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor, IsolationLevel
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier
from tenacity import Retrying, retry_if_exception_type, stop_before_delay, wait_fixed

from application.chronicle import Chronicle
from infrastructure.storage.event_chain import GENESIS, ChainWalk, link, session_of
from infrastructure.storage.postgres_schema import EVENTS_TABLE

WRITE_PATIENCE = 3.0
"""Seconds within which a write's attempts on a lost or unreachable database must end (no attempt
starts that could run past it; a request then answers 503 with Retry-After): long enough to ride
over a dropped connection or a fast restart."""

POOL_WAIT = "1"
"""Seconds a caller waits for one of the pool's connections (eventsourcing's POSTGRES_CONNECT_TIMEOUT
is the pool's wait, not a TCP timeout): each of its retries waits this long again."""

LOG_CHANNEL = "chronicle_log"
"""The channel on which every inserting transaction announces its highest position (at commit)."""


def postgres_env(database_url: str) -> dict[str, str]:
    """eventsourcing's POSTGRES_* settings from a `postgresql://` URL. Every Chronicle process
    opens a few event stores (the command bus's, an uncached reader's, the projection
    process's), so each pool is small: 2 connections kept, up to 8 more under load."""
    parts = conninfo_to_dict(database_url)
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": str(parts.get("dbname") or ""),
        "POSTGRES_HOST": str(parts.get("host") or ""),
        "POSTGRES_PORT": str(parts.get("port") or "5432"),
        "POSTGRES_USER": unquote(str(parts.get("user") or "")),
        "POSTGRES_PASSWORD": unquote(str(parts.get("password") or "")),
        "POSTGRES_CONNECT_TIMEOUT": POOL_WAIT,
        "POSTGRES_POOL_SIZE": "2",
        "POSTGRES_MAX_OVERFLOW": "8",
        "POSTGRES_PRE_PING": "y",
        "APPLICATION_RECORDER_TOPIC": "infrastructure.storage.postgres_log:ChainedPostgresRecorder",
        "CREATE_TABLE": "n",  # the schema is made and upgraded by postgres_schema's numbered steps, before the store opens
    }


_UNDECORATED_INSERT = getattr(PostgresApplicationRecorder.insert_events, "__wrapped__", None)
if _UNDECORATED_INSERT is None:  # an eventsourcing release that no longer decorates it with functools.wraps
    raise ImportError("eventsourcing's PostgresApplicationRecorder.insert_events has no __wrapped__: review ChainedPostgresRecorder")


class ChainedPostgresRecorder(PostgresApplicationRecorder):
    """eventsourcing's PostgreSQL recorder, numbering events gaplessly under its table lock and
    adding a chain link per inserted event (same transaction)."""

    def __init__(self, datastore: PostgresDatastore, *, events_table_name: str = "stored_events") -> None:
        if datastore.enable_db_functions:
            raise ProgrammingError("POSTGRES_ENABLE_DB_FUNCTIONS inserts without the chain: leave it unset")
        if events_table_name != EVENTS_TABLE:
            raise ProgrammingError(f"the schema's steps make {EVENTS_TABLE}, not {events_table_name}")
        super().__init__(datastore, events_table_name=events_table_name)
        schema, table = Identifier(datastore.schema), Identifier(events_table_name)
        self.insert_events_statement = SQL(
            "INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state, notification_id)"
            " SELECT e.originator_id, e.originator_version, e.topic, e.state,"
            " (SELECT COALESCE(MAX(notification_id), 0) FROM {schema}.{table}) + e.n"
            " FROM unnest(%s::{schema}.{event_type}[]) WITH ORDINALITY AS e(originator_id, originator_version, topic, state, n)"
            " ORDER BY e.n RETURNING notification_id"
        ).format(schema=schema, table=table, event_type=Identifier(self.stored_event_type_name))
        self._chain = SQL("{}.event_chain").format(schema)
        self._events = SQL("{}.{}").format(schema, table)

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """eventsourcing's insert, retried on a lost or unreachable database for at most
        `WRITE_PATIENCE` seconds: its own decorator makes 10 attempts that each wait the pool's
        timeout, so a write to a database that is down held its request for well over a minute
        instead of answering 503."""
        insert = _UNDECORATED_INSERT
        for attempt in Retrying(
            retry=retry_if_exception_type((InterfaceError, OperationalError)),
            stop=stop_before_delay(WRITE_PATIENCE),
            wait=wait_fixed(0.2),
            reraise=True,
        ):
            with attempt:
                return insert(self, stored_events, **kwargs)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _fetch_ids_after_insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if not positions:
            return positions
        previous = self._link_before(curs, positions[0])
        rows = []
        for position, stored in zip(positions, stored_events, strict=True):
            originator = _hex(stored.originator_id)
            previous = link(previous, position, originator, stored.originator_version, stored.topic, stored.state)
            rows.append((position, previous, session_of(originator, stored.topic, stored.state)))
        curs.executemany(SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(self._chain), rows)
        curs.execute(
            "SELECT pg_notify(%s, %s::text || ' ' || extract(epoch FROM clock_timestamp())::text)",
            (LOG_CHANNEL, positions[-1]),
        )  # queued now, delivered when this transaction commits (never if it rolls back)
        return positions

    def _link_before(self, curs: Cursor[DictRow], position: int) -> bytes:
        """The link of the event before `position`; events stored without links (copied in by
        hand) are linked first, in the same transaction."""
        curs.execute(
            SQL("SELECT position, hash FROM {} WHERE position < %s ORDER BY position DESC LIMIT 1").format(self._chain), (position,)
        )
        row = curs.fetchone()
        last, previous = (row["position"], bytes(row["hash"])) if row else (0, GENESIS)
        if last == position - 1:
            return previous
        curs.execute(
            SQL(
                "SELECT notification_id, originator_id, originator_version, topic, state FROM {}"
                " WHERE notification_id > %s AND notification_id < %s ORDER BY notification_id"
            ).format(self._events),
            (last, position),
        )
        missing = []
        for row in curs.fetchall():
            originator = _hex(row["originator_id"])
            previous = link(previous, row["notification_id"], originator, row["originator_version"], row["topic"], bytes(row["state"]))
            missing.append((row["notification_id"], previous, session_of(originator, row["topic"], bytes(row["state"]))))
        curs.executemany(SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(self._chain), missing)
        return previous

    def chain_head(self) -> tuple[int, str]:
        with self.datastore.get_connection() as conn:
            row = conn.execute(SQL("SELECT position, hash FROM {} ORDER BY position DESC LIMIT 1").format(self._chain)).fetchone()
        return (int(row["position"]), bytes(row["hash"]).hex()) if row else (0, GENESIS.hex())

    @contextmanager
    def chain_walk(self) -> Iterator[ChainWalk]:
        """One REPEATABLE READ transaction: the count, the events and the links are one snapshot;
        server-side cursors stream them in batches."""
        with self.datastore.get_connection() as conn:
            conn.autocommit = False
            conn.isolation_level = IsolationLevel.REPEATABLE_READ
            try:
                with conn.transaction():
                    conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")  # hashing between batches is not idleness
                    count = conn.execute(SQL("SELECT COUNT(*) AS n FROM {}").format(self._events)).fetchone()
                    events = conn.cursor("chain_events", row_factory=tuple_row)
                    events.execute(
                        SQL(
                            "SELECT notification_id, originator_id, originator_version, topic, state FROM {} ORDER BY notification_id"
                        ).format(self._events)
                    )
                    links = conn.cursor("chain_links", row_factory=tuple_row)
                    links.execute(SQL("SELECT position, hash FROM {} ORDER BY position").format(self._chain))
                    yield (
                        int(count["n"]) if count else 0,
                        ((p, _hex(o), v, t, bytes(s)) for p, o, v, t, s in events),
                        ((p, bytes(h)) for p, h in links),
                    )
            finally:
                conn.isolation_level = None
                conn.autocommit = True


def _hex(originator_id: UUID | str) -> str:
    return originator_id.hex if isinstance(originator_id, UUID) else UUID(originator_id).hex


def _recorder(app: Chronicle) -> ChainedPostgresRecorder:
    recorder = app.recorder
    assert isinstance(recorder, ChainedPostgresRecorder)
    return recorder


class PostgresEventLog:
    """Positions in the global log: the stored event's `notification_id`."""

    def __init__(self, app: Chronicle) -> None:
        self._app = app
        self._recorder = _recorder(app)

    def position_of(self, originator_id: UUID, version: int) -> int:
        recorder = self._recorder
        with recorder.datastore.get_connection() as conn:
            row = conn.execute(
                SQL("SELECT notification_id FROM {} WHERE originator_id=%s AND originator_version=%s").format(recorder._events),
                (originator_id, version),
            ).fetchone()
        if row is None:
            raise LookupError(f"no event {originator_id} v{version}")
        return int(row["notification_id"])

    def head(self) -> int:
        return self._app.recorder.max_notification_id() or 0
