"""The PostgreSQL schema of Chronicle, created and upgraded by numbered steps, never by hand.

Each step (`STEPS`) runs in its own transaction together with the row of `schema_versions` that
records it, so a step is either applied and recorded or neither. Every node runs `upgrade` at
start (and `chronicle db upgrade` does it on request) under one advisory lock, so nodes starting
together apply each step once: the first takes the lock and applies what is missing, the others
wait, then find nothing left to do.

Version 1 is the schema as it was before versions were recorded (eventsourcing's events table,
our hash chain and the data keys). A database made by that code has the tables but no
`schema_versions`: it is recognised as version 1 (its statements are all `IF NOT EXISTS`, so
nothing is made again) and upgraded from there.

A node whose code knows fewer steps than the database has applied refuses to start
(`SchemaTooNew`): an older node could write what the newer schema no longer means. A database
into which `chronicle migrate` is copying a log refuses nodes too (`ImportUnfinished`) until the
copy has finished: a node writing there would break the copy's resumption."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import psycopg

SCHEMA_LOCK = 0x43485243  # "CHRC": the advisory lock under which the schema changes, one node at a time
EVENTS_TABLE = "chronicle_events"
"""eventsourcing names an application's events table after the application (`Chronicle`)."""


@dataclass(frozen=True)
class Step:
    version: int
    name: str
    statements: Sequence[str]


STEPS: tuple[Step, ...] = (
    Step(
        1,
        "event log, hash chain and data keys",
        (
            # eventsourcing 9.5's PostgreSQL application recorder, as it made them itself before
            # (a composite type has no IF NOT EXISTS)
            "DO $$ BEGIN IF to_regtype('stored_event_uuid') IS NULL THEN"
            " CREATE TYPE stored_event_uuid AS (originator_id uuid, originator_version bigint, topic text, state bytea);"
            " END IF; END $$",
            f"CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (originator_id uuid NOT NULL, originator_version bigint NOT NULL,"
            " topic text, state bytea, notification_id bigserial, PRIMARY KEY (originator_id, originator_version))"
            " WITH (autovacuum_enabled = true, autovacuum_vacuum_threshold = 100000000, autovacuum_vacuum_scale_factor = 0.5,"
            " autovacuum_analyze_threshold = 1000, autovacuum_analyze_scale_factor = 0.01)",
            f"CREATE UNIQUE INDEX IF NOT EXISTS {EVENTS_TABLE}_notification_id_idx ON {EVENTS_TABLE} (notification_id ASC)",
            # the hash chain (event_chain.py), one link per event, written with it
            "CREATE TABLE IF NOT EXISTS event_chain (position bigint PRIMARY KEY, hash bytea NOT NULL, session text)",
            "CREATE INDEX IF NOT EXISTS event_chain_by_session ON event_chain (session, position) WHERE session IS NOT NULL",
            # the data keys of crypto-shredding (postgres_keys.py)
            "CREATE TABLE IF NOT EXISTS data_keys"
            " (subject text PRIMARY KEY, key bytea NOT NULL, person text NOT NULL, session text, day text)",
            "CREATE INDEX IF NOT EXISTS data_keys_by_person ON data_keys (person)",
            "CREATE INDEX IF NOT EXISTS data_keys_by_day ON data_keys (day, session)",
            "CREATE TABLE IF NOT EXISTS erased_subjects (subject text PRIMARY KEY, at double precision NOT NULL)",
            "CREATE TABLE IF NOT EXISTS key_generation (id integer PRIMARY KEY CHECK (id = 1), value bigint NOT NULL)",
            "INSERT INTO key_generation VALUES (1, 0) ON CONFLICT DO NOTHING",
        ),
    ),
    Step(
        2,
        "log_import: a copy by chronicle migrate, and whether it has finished",
        (
            "CREATE TABLE log_import (id integer PRIMARY KEY DEFAULT 1 CHECK (id = 1), source text NOT NULL,"
            " source_head_position bigint NOT NULL, source_head_hash text NOT NULL,"
            " started_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz)",
        ),
    ),
)
LATEST = STEPS[-1].version


class DatabaseRefused(Exception):
    """The database cannot be used by this node as it is (one line for the operator, exit 2)."""


class SchemaTooNew(DatabaseRefused):
    pass


class ImportUnfinished(DatabaseRefused):
    pass


@dataclass(frozen=True)
class AppliedStep:
    version: int
    name: str
    applied_at: datetime
    how: str
    """`applied`, or `recognised` for version 1 of a database made before versions were recorded."""
    applied_by: str


@dataclass(frozen=True)
class SchemaStatus:
    version: int
    latest: int
    applied: list[AppliedStep]
    import_source: str | None = None
    import_finished: bool = True

    @property
    def pending(self) -> list[Step]:
        return [step for step in STEPS if step.version > self.version]


def connect(database_url: str) -> psycopg.Connection[tuple]:
    """A connection in autocommit (each step opens its own transaction); a bad URL or an
    unreachable server is refused with psycopg's reason."""
    try:
        return psycopg.connect(database_url, autocommit=True, connect_timeout=10)
    except (psycopg.OperationalError, psycopg.ProgrammingError) as error:
        raise DatabaseRefused(f"cannot connect to the database: {str(error).strip()}") from error


def upgrade(db: psycopg.Connection[tuple], on_step=lambda step, how: None) -> SchemaStatus:  # type: ignore[no-untyped-def]
    """Applies every step the database lacks, under the schema lock; returns the status after.
    Refuses (`SchemaTooNew`) a database that has steps this code does not know."""
    db.execute("SELECT pg_advisory_lock(%s)", (SCHEMA_LOCK,))
    try:
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_versions (version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now(), how text NOT NULL, applied_by text NOT NULL)"
        )
        current = _version(db)
        _refuse_newer(current)
        by = f"{socket.gethostname()} pid {os.getpid()}"
        for step in STEPS:
            if step.version <= current:
                continue
            how = "recognised" if step.version == 1 and _exists(db, EVENTS_TABLE) else "applied"
            with db.transaction():
                for statement in step.statements:
                    db.execute(statement)  # type: ignore[arg-type]  # our own constant text
                db.execute(
                    "INSERT INTO schema_versions (version, name, how, applied_by) VALUES (%s, %s, %s, %s)",
                    (step.version, step.name, how, by),
                )
            on_step(step, how)
    finally:
        if not db.broken:  # a lost session has released its lock with it
            db.execute("SELECT pg_advisory_unlock(%s)", (SCHEMA_LOCK,))
    return status(db)


def status(db: psycopg.Connection[tuple]) -> SchemaStatus:
    """What the database has applied (read only; version 0 for a database without versions)."""
    if not _exists(db, "schema_versions"):
        return SchemaStatus(0, LATEST, [])
    rows = db.execute("SELECT version, name, applied_at, how, applied_by FROM schema_versions ORDER BY version").fetchall()
    applied = [AppliedStep(*row) for row in rows]
    version = applied[-1].version if applied else 0
    source, finished = None, True
    if _exists(db, "log_import"):
        row = db.execute("SELECT source, finished_at IS NOT NULL FROM log_import").fetchone()
        if row:
            source, finished = row[0], bool(row[1])
    return SchemaStatus(version, LATEST, applied, source, finished)


def prepare_database(database_url: str) -> SchemaStatus:
    """What every node runs before it uses the database: upgrade to this code's version, and
    refuse a database that is newer or that `chronicle migrate` has not finished filling."""
    with connect(database_url) as db:
        try:
            current = status(db)  # read only: a role without CREATE runs an up-to-date schema
            if current.pending or current.version == 0:
                current = upgrade(db)
            else:
                _refuse_newer(current.version)
        except psycopg.Error as error:  # no privilege to create, the connection lost mid-way
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise DatabaseRefused(
                f"cannot prepare the database's schema: {reason} (a role that may create tables runs `chronicle db upgrade` once)"
            ) from error
    if not current.import_finished:
        raise ImportUnfinished(
            f"a chronicle migrate from {current.import_source} into this database has not finished: "
            "run the same chronicle migrate again to complete it before starting a node"
        )
    return current


def _version(db: psycopg.Connection[tuple]) -> int:
    row = db.execute("SELECT max(version) FROM schema_versions").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def _refuse_newer(version: int) -> None:
    if version > LATEST:
        raise SchemaTooNew(
            f"the database's schema is at version {version}, newer than this Chronicle knows (up to {LATEST}): "
            "a newer Chronicle has upgraded it; run that version on this node too"
        )


def _exists(db: psycopg.Connection[tuple], table: str) -> bool:
    row = db.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()
    return bool(row and row[0])
