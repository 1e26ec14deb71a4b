"""The data keys of crypto-shredding in PostgreSQL (`CHRONICLE_DATABASE_URL`): the same tables
and behaviour as `sealing.KeyStore`'s keys.sqlite3, in the database of the event log.

A deleted row stays in the table's pages as a dead tuple until vacuum, and plain VACUUM only
marks its space free (the bytes stay in the page until overwritten). So every destroy or expire
ends with `VACUUM FULL data_keys`, which writes the live rows into new files and unlinks the old
ones: nothing of a destroyed key can be read back through the database (not even with
pageinspect). VACUUM FULL must keep a dead row that a transaction older than the delete could
still see (an autovacuum ANALYZE, a long report): it then says so, and the store runs it again
as that transaction ends, for up to `SCRUB_PATIENCE` seconds (a pg_dump's lock on the table is
waited out the same way), then logs a warning naming the table to vacuum again.
What PostgreSQL keeps outside the table (WAL until recycled, WAL archives, base backups,
replicas' WAL) is the operator's to bound: see ADR-039 and the README."""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from typing import Literal, TypeVar

import psycopg
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import OperationalError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential,
    wait_fixed,
)

T = TypeVar("T")

log = logging.getLogger(__name__)
_KEPT = re.compile(r"(\d+) dead row versions cannot be removed yet")


class PostgresKeyStore:
    """Data keys by subject, in PostgreSQL; the interface of `sealing.KeyStore`."""

    _open: dict[str, PostgresKeyStore] = {}
    _opening = threading.Lock()
    TTL = 5.0
    """Another process may destroy keys: a cached key is trusted this many seconds at most."""
    SCRUB_PATIENCE = 15.0
    """How long a destroy waits for older transactions to end so that no dead copy of a key stays."""

    def __init__(self, database_url: str) -> None:
        self._url = database_url
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[AESGCM | None, float]] = {}
        self._notices: list[str] = []
        self._impatient_until = 0.0  # until then a scrub tries once: the last one gave up
        self._db = self._connect()  # the tables are made by postgres_schema's steps, before the store opens

    def _connect(self) -> psycopg.Connection[tuple]:
        try:
            db = psycopg.connect(self._url, autocommit=True, connect_timeout=10)
        except psycopg.OperationalError as error:
            raise OperationalError(error) from error
        db.add_notice_handler(lambda notice: self._notices.append(f"{notice.message_primary} {notice.message_detail}"))
        return db

    @classmethod
    def at(cls, database_url: str) -> PostgresKeyStore:
        """One store per database and process, shared by every mapper (so `forget` reaches all)."""
        with cls._opening:
            store = cls._open.get(database_url)
            if store is None or store._db.closed:
                store = cls._open[database_url] = cls(database_url)
            return store

    def _connection(self) -> psycopg.Connection[tuple]:
        """The store's connection, opened again if it was lost (a restarted server)."""
        if self._db.broken or self._db.closed:
            self._db = self._connect()
        return self._db

    def _reading(self, read: Callable[[psycopg.Connection[tuple]], T]) -> T:
        """`read` on the store's connection, on a new one if it was lost (terminated, a restarted
        server): 5 attempts 0.2 s apart, as eventsourcing's recorder retries its own reads.
        Only reads and idempotent inserts go through here; a fault that outlasts the attempts
        is raised as eventsourcing's `OperationalError`, as the event store raises its own."""
        try:
            for attempt in Retrying(
                retry=retry_if_exception_type((psycopg.OperationalError, psycopg.InterfaceError, OperationalError)),
                stop=stop_after_attempt(5),
                wait=wait_fixed(0.2),
                reraise=True,
            ):
                with attempt:
                    return read(self._connection())
        except (psycopg.OperationalError, psycopg.InterfaceError) as error:
            raise OperationalError(error) from error
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def stored_cipher(self, subject: str) -> AESGCM | None:
        """The key of a subject as the database holds it now, past this process's cache."""
        with self._lock:
            row = self._reading(lambda db: db.execute("SELECT key FROM data_keys WHERE subject=%s", (subject,)).fetchone())
        return AESGCM(bytes(row[0])) if row else None

    def cipher(self, subject: str, *, create: bool) -> AESGCM | None:
        """The key of a subject: `person` or `person.session.day`. A storage fault is raised as
        eventsourcing's `OperationalError`, as the event store raises its own."""
        entry = self._cache.get(subject)
        if entry is not None and entry[1] > time.monotonic() and (entry[0] is not None or not create):
            return entry[0]
        person, _, rest = subject.partition(".")

        def find(db: psycopg.Connection[tuple]) -> tuple | None | Literal[False]:
            """The key's row; False when the person is erased (no key is made for them again)."""
            row = db.execute("SELECT key FROM data_keys WHERE subject=%s", (subject,)).fetchone()
            if row is None and create:
                if db.execute("SELECT 1 FROM erased_subjects WHERE subject=%s", (person,)).fetchone():
                    return False
                session, _, day = rest.partition(".")
                db.execute(
                    "INSERT INTO data_keys VALUES (%s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                    (subject, AESGCM.generate_key(256), person, session or None, day or None),
                )
                row = db.execute("SELECT key FROM data_keys WHERE subject=%s", (subject,)).fetchone()
            return row

        with self._lock:
            row = self._reading(find)
            if row is False:
                return None
            cipher = AESGCM(bytes(row[0])) if row else None
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[subject] = (cipher, time.monotonic() + self.TTL)
            return cipher

    def destroy(self, person: str) -> None:
        """Every key of the person, scrubbed from the table's files; no new key is ever made for them."""
        with self._lock:
            db = self._connection()
            with db.transaction():
                db.execute("DELETE FROM data_keys WHERE person=%s", (person,))
                db.execute("INSERT INTO erased_subjects VALUES (%s, extract(epoch from now())) ON CONFLICT DO NOTHING", (person,))
                db.execute("UPDATE key_generation SET value = value + 1")
            self._cache.clear()
        self._scrub()

    def expire(self, before_day: str, sessions: Iterable[str] | None = None, *, keep: Iterable[str] = ()) -> dict[str, int]:
        """Destroys message keys of days before `before_day`, in `sessions` (all sessions when
        None, except those in `keep`); returns how many per session."""
        with self._lock:
            db = self._connection()
            with db.transaction():
                if sessions is None:
                    kept = set(keep)
                    found = db.execute(
                        "SELECT session, COUNT(*) FROM data_keys WHERE day < %s AND session IS NOT NULL GROUP BY session", (before_day,)
                    ).fetchall()
                    rows = [(r[0], int(r[1])) for r in found if r[0] not in kept]
                else:
                    rows = []
                    for session in sessions:
                        count = db.execute(
                            "SELECT COUNT(*) FROM data_keys WHERE day < %s AND session = %s", (before_day, session)
                        ).fetchone()
                        if count and count[0]:
                            rows.append((session, int(count[0])))
                for session, _ in rows:
                    db.execute("DELETE FROM data_keys WHERE day < %s AND session = %s", (before_day, session))
                if rows:
                    db.execute("UPDATE key_generation SET value = value + 1")
            if rows:
                self._cache.clear()
        if rows:
            self._scrub()
        return dict(rows)

    def _scrub(self) -> None:
        """Rewrites the key table without its deleted rows (autocommit: VACUUM runs in no
        transaction block). Tried again, for up to `SCRUB_PATIENCE` seconds, while a transaction
        older than the delete keeps them, while another session's lock on the table holds the
        VACUUM off (a pg_dump: `lock_timeout` 1 s a try) or after a lost connection; the key
        lock is let go between tries, so keys are read meanwhile. Within `SCRUB_PATIENCE` of a
        scrub that gave up, one try only (a retention run destroys session by session). Never
        raises: the keys are deleted already; what may stay is logged for the operator."""

        def vacuum() -> list[str]:
            """One VACUUM FULL; what it says it had to keep."""
            with self._lock:
                self._notices.clear()
                db = self._connection()
                try:
                    db.execute("SET lock_timeout = '1s'")
                    db.execute("VACUUM (FULL, VERBOSE) data_keys")
                finally:
                    if not db.broken:
                        db.execute("RESET lock_timeout")
                return [found.group(0) for notice in self._notices if (found := _KEPT.search(notice)) and found.group(1) != "0"]

        def gave_up(state: RetryCallState) -> list[str]:
            outcome = state.outcome
            if outcome is None:
                return ["no try was made"]
            error = outcome.exception()
            return [f"the last try failed: {error}"] if error is not None else list(outcome.result())

        patient = time.monotonic() >= self._impatient_until
        try:
            kept = Retrying(
                retry=retry_if_result(bool) | retry_if_exception_type((psycopg.OperationalError, psycopg.InterfaceError, OperationalError)),
                stop=stop_before_delay(self.SCRUB_PATIENCE if patient else 0),
                wait=wait_exponential(multiplier=0.05, max=1.0),
                before_sleep=lambda _: log.info("destroyed data keys kept by an older transaction or a lock: vacuuming again"),
                retry_error_callback=gave_up,
            )(vacuum)
        except (psycopg.Error, OperationalError) as error:  # anything else the server refuses: said, not raised
            kept = [f"the vacuum failed: {error}"]
        if kept:
            self._impatient_until = time.monotonic() + self.SCRUB_PATIENCE
            log.warning(
                "destroyed data keys may stay in data_keys' files: run VACUUM FULL data_keys once no transaction "
                "older than the destroy is open (%s)",
                "; ".join(kept),
            )
        else:
            self._impatient_until = 0.0

    def generation(self) -> int:
        """Goes up whenever keys are destroyed (by any process)."""
        with self._lock:
            row = self._reading(lambda db: db.execute("SELECT value FROM key_generation").fetchone())
            return int(row[0]) if row else 0

    def forget(self) -> None:
        """Drops every cached key (another process destroyed some)."""
        self._cache.clear()

    def close(self) -> None:
        """Under the lock: psycopg frees the connection without waiting for a thread inside it."""
        with self._lock:
            self._db.close()
