"""`chronicle migrate`: a SQLite data directory's event log and data keys, copied into an empty
PostgreSQL database, to run Chronicle on PostgreSQL from then on.

Order and the chain: every event keeps its position (SQLite's rowid becomes `notification_id`)
and its bytes as stored (sealed fields stay sealed), so the hash chain, whose links cover the
positions and the bytes, is the same chain: each link is computed again while copying, checked
against the source's link (a source whose chain does not hold is refused) and written beside its
event in the same transaction. `chronicle audit verify` gives the same head hash on both.

Batches: events go in batches (`COPY … FROM STDIN (FORMAT BINARY)`), one transaction each with
their links, under the events table's lock. A copy that stops (killed, connection lost) leaves a
prefix of the log, 1..P, whole batches only. Running the same migrate again resumes after P,
once the prefix is proved to be this log's: the links of 1..P are recomputed from the copied
events and the last must equal the source's link at P.

Keys: the data keys, the erased subjects and the key generation are copied last, in the
transaction that marks the copy finished (`log_import.finished_at`); a key destroyed in the
source is not in its `data_keys`, so it is not in the target either, and the erased subjects
keep it from ever being made again. Until that transaction, nodes refuse to start on the database
(`postgres_schema.ImportUnfinished`).

Refused: a target that is not empty (events, keys or erasures) unless it holds a prefix of this
log from an unfinished migrate; a data directory a running `chronicle serve` holds (its
`serve.lock`, which this command holds in turn until it has finished, so no server starts on
the source meanwhile). Tracking positions and read models are not copied: each node rebuilds
its read models from the log."""

from __future__ import annotations

import fcntl
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from uuid import UUID

import psycopg

from infrastructure.storage.event_chain import GENESIS, link
from infrastructure.storage.postgres_schema import EVENTS_TABLE, DatabaseRefused, connect, upgrade

BATCH = 5_000


class MigrationRefused(Exception):
    """The copy cannot start as asked (one line for the operator, exit 2); nothing was written."""


@dataclass(frozen=True)
class MigrationReport:
    events: int
    copied: int
    resumed_after: int
    keys: int
    erased_subjects: int
    head_position: int
    head_hash: str
    seconds: float

    @property
    def events_per_second(self) -> float:
        return self.copied / self.seconds if self.seconds else 0.0


def migrate_log(
    data_dir: Path, database_url: str, *, batch_size: int = BATCH, progress: Callable[[int, int], None] = lambda done, total: None
) -> MigrationReport:
    """Copies the log and the keys of `data_dir` into the database at `database_url` (see the
    module's docstring); `progress(copied so far, to copy)` after each batch."""
    started = time.perf_counter()
    events_path, keys_path = data_dir / "events.sqlite3", data_dir / "keys.sqlite3"
    if not data_dir.is_dir():
        raise MigrationRefused(f"no data directory {data_dir}; check --data-dir")
    if not events_path.is_file():
        raise MigrationRefused(f"{data_dir} holds no Chronicle event store (events.sqlite3); check --data-dir")
    with _held(data_dir), _source(events_path) as source:
        count, last = source.execute("SELECT COUNT(*), COALESCE(MAX(rowid), 0) FROM stored_events").fetchone()
        if count != last:
            raise MigrationRefused(f"the source log has gaps ({count} events up to position {last}): run chronicle audit verify")
        if count and not keys_path.is_file():
            raise MigrationRefused(f"{data_dir} has events but no keys.sqlite3: their personal fields could not be read")
        head_hash = _source_link(source, last)
        try:
            target = connect(database_url)
        except DatabaseRefused as refused:
            raise MigrationRefused(str(refused)) from refused
        with target:
            try:
                upgrade(target)
            except DatabaseRefused as refused:
                raise MigrationRefused(str(refused)) from refused
            _refuse_running_nodes(target)
            after, previous = _starting_point(target, source, str(data_dir), last, head_hash)
            copied = _copy_events(target, source, after, previous, last, batch_size, progress)
            keys, erased = _copy_keys_and_finish(target, keys_path, last, head_hash)
            row = target.execute("SELECT position, hash FROM event_chain ORDER BY position DESC LIMIT 1").fetchone()
            target_head = (int(row[0]), bytes(row[1]).hex()) if row else (0, GENESIS.hex())
            if target_head != (last, head_hash):
                raise RuntimeError(f"the copied log ends at {target_head}, the source at {(last, head_hash)}")
    return MigrationReport(count, copied, after, keys, erased, last, head_hash, time.perf_counter() - started)


def _refuse_running_nodes(target: psycopg.Connection[tuple]) -> None:
    """A node already running on the target would write events whose positions collide with the
    copied ones (a node that starts during the copy is refused: `log_import` is unfinished)."""
    row = target.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name LIKE %s",
        ("chronicle%",),
    ).fetchone()
    if row and row[0]:
        raise MigrationRefused(
            "chronicle nodes are connected to the database: stop them first (migrate copies into a database no one is writing to)"
        )


@contextmanager
def _held(data_dir: Path) -> Iterator[None]:
    """The data directory's serve.lock, as `chronicle serve` takes it: refused while a server
    holds it, and held until the copy ends, so no server writes to the source meanwhile."""
    with open(data_dir / "serve.lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise MigrationRefused(
                f"a chronicle serve is using {data_dir}: stop it first (migrate copies a log no one is writing to)"
            ) from None
        yield


@contextmanager
def _source(path: Path) -> Iterator[sqlite3.Connection]:
    """One read transaction on the source: every batch comes from the same snapshot."""
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("BEGIN")
        yield db
    finally:
        db.close()


def _source_link(source: sqlite3.Connection, position: int) -> str:
    if position == 0:
        return GENESIS.hex()
    row = source.execute("SELECT hash FROM event_chain WHERE position = ?", (position,)).fetchone()
    if row is None:
        raise MigrationRefused(f"the source's event {position} has no chain link: run chronicle audit verify")
    return bytes(row[0]).hex()


def _starting_point(target: psycopg.Connection[tuple], source: sqlite3.Connection, name: str, last: int, head: str) -> tuple[int, bytes]:
    """Where the copy starts (0, or the end of a verified prefix) and the link there; records
    the copy in `log_import`. Refuses a target that holds anything else."""
    stored, events = target.execute(f"SELECT COALESCE(MAX(notification_id), 0), COUNT(*) FROM {EVENTS_TABLE}").fetchone()  # type: ignore[misc]
    keys = target.execute("SELECT (SELECT COUNT(*) FROM data_keys) + (SELECT COUNT(*) FROM erased_subjects)").fetchone()[0]  # type: ignore[index]
    record = target.execute("SELECT source, finished_at IS NOT NULL FROM log_import").fetchone()
    if record is None:
        if events or keys:
            raise MigrationRefused(
                f"the database is not empty ({events} events, {keys} keys and erasures) and no chronicle migrate into it "
                "was interrupted: migrate copies into an empty database only"
            )
        target.execute("INSERT INTO log_import (source, source_head_position, source_head_hash) VALUES (%s, %s, %s)", (name, last, head))
        return 0, GENESIS
    if stored > last or stored != events:
        raise MigrationRefused(
            f"the database holds {events} events up to position {stored}, not a prefix of this log's {last}: "
            "it is not an interrupted copy of this data directory"
        )
    previous = _verified_prefix(target, stored)
    if previous.hex() != _source_link(source, stored):
        raise MigrationRefused(
            f"the database's events 1..{stored} are not this log's (their chain hash differs from the source's at position {stored}): "
            "it holds another log; migrate into an empty database"
        )
    if record[1]:
        if stored == last:
            return stored, previous  # copied before: only the keys are brought up to date again
        raise MigrationRefused(
            f"a finished migrate into this database copied up to position {stored}, and the source has {last} now: "
            "migrate into an empty database"
        )
    target.execute("UPDATE log_import SET source = %s, source_head_position = %s, source_head_hash = %s", (name, last, head))
    return stored, previous


def _verified_prefix(target: psycopg.Connection[tuple], upto: int) -> bytes:
    """The link at `upto` recomputed from the copied events, each checked against its copied link."""
    previous = GENESIS
    if upto == 0:
        return previous
    with target.transaction(), target.cursor(name="prefix") as cursor:
        cursor.itersize = 10_000
        cursor.execute(
            f"SELECT e.notification_id, e.originator_id, e.originator_version, e.topic, e.state, c.hash FROM {EVENTS_TABLE} e"  # type: ignore[arg-type]
            " LEFT JOIN event_chain c ON c.position = e.notification_id WHERE e.notification_id <= %s ORDER BY e.notification_id",
            (upto,),
        )
        expected = 1
        for position, originator, version, topic, state, stored_link in cursor:
            previous = link(previous, position, originator.hex, version, topic, bytes(state))
            if position != expected or stored_link is None or bytes(stored_link) != previous:
                raise MigrationRefused(
                    f"the database's copy does not hold at position {expected} (missing, changed or unlinked): "
                    "it is not an intact prefix of this log; migrate into an empty database"
                )
            expected += 1
    return previous


def _copy_events(
    target: psycopg.Connection[tuple],
    source: sqlite3.Connection,
    after: int,
    previous: bytes,
    last: int,
    batch_size: int,
    progress: Callable[[int, int], None],
) -> int:
    """Events after `after`, a batch per transaction, each with its link (recomputed, and
    checked against the source's)."""
    rows = source.execute(
        "SELECT s.rowid, s.originator_id, s.originator_version, s.topic, s.state, c.hash, c.session"
        " FROM stored_events s LEFT JOIN event_chain c ON c.position = s.rowid WHERE s.rowid > ? ORDER BY s.rowid",
        (after,),
    )
    to_copy, copied, expected = last - after, 0, after + 1
    progress(0, to_copy)
    while batch := rows.fetchmany(batch_size):
        events, links = [], []
        for position, originator, version, topic, state, source_link, session in batch:
            uuid = UUID(originator)
            previous = link(previous, position, uuid.hex, version, topic, state)
            if position != expected or source_link is None or bytes(source_link) != previous:
                raise MigrationRefused(
                    f"the source's hash chain does not hold at position {expected}: run chronicle audit verify "
                    f"(positions 1..{expected - 1} are copied; nothing after them)"
                )
            events.append((position, uuid, version, topic, state))
            links.append((position, previous, session))
            expected += 1
        with target.transaction(), target.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {EVENTS_TABLE} IN EXCLUSIVE MODE")  # type: ignore[arg-type]
            with cursor.copy(
                f"COPY {EVENTS_TABLE} (notification_id, originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)"  # type: ignore[arg-type]
            ) as copy:
                copy.set_types(["int8", "uuid", "int8", "text", "bytea"])
                for event in events:
                    copy.write_row(event)
            with cursor.copy("COPY event_chain (position, hash, session) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "bytea", "text"])
                for row in links:
                    copy.write_row(row)
        copied += len(batch)
        progress(copied, to_copy)
    return copied


def _copy_keys_and_finish(target: psycopg.Connection[tuple], keys_path: Path, last: int, head: str) -> tuple[int, int]:
    """The data keys, erased subjects and key generation as the source has them now, and the
    copy marked finished, in one transaction; the sequence and statistics after it."""
    keys: list[tuple] = []
    erased: list[tuple] = []
    generation = 0
    if keys_path.is_file():
        db = sqlite3.connect(f"file:{keys_path}?mode=ro", uri=True)
        try:
            keys = db.execute("SELECT subject, key, person, session, day FROM data_keys").fetchall()
            erased = db.execute("SELECT subject, at FROM erased_subjects").fetchall()
            row = db.execute("SELECT value FROM key_generation").fetchone()
            generation = int(row[0]) if row else 0
        finally:
            db.close()
    with target.transaction(), target.cursor() as cursor:
        cursor.execute("DELETE FROM data_keys")  # empty unless a finished copy is run again
        cursor.execute("DELETE FROM erased_subjects")
        with cursor.copy("COPY data_keys (subject, key, person, session, day) FROM STDIN") as copy:
            for key in keys:
                copy.write_row(key)
        with cursor.copy("COPY erased_subjects (subject, at) FROM STDIN") as copy:
            for subject in erased:
                copy.write_row(subject)
        cursor.execute("UPDATE key_generation SET value = GREATEST(value + 1, %s)", (generation,))
        cursor.execute("UPDATE log_import SET finished_at = now(), source_head_position = %s, source_head_hash = %s", (last, head))
        if last:
            cursor.execute(f"SELECT setval(pg_get_serial_sequence('{EVENTS_TABLE}', 'notification_id'), %s)", (last,))  # type: ignore[arg-type]
    target.execute("VACUUM (FULL) data_keys")  # a finished copy run again may have replaced keys: no old row stays in the files
    target.execute(f"ANALYZE {EVENTS_TABLE}")  # type: ignore[arg-type]
    target.execute("ANALYZE event_chain")
    return len(keys), len(erased)
