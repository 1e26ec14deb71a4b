"""The event store: Chronicle's eventsourcing Application on one SQLite file in WAL mode, or on
PostgreSQL when `CHRONICLE_DATABASE_URL` is set (`postgres_log`, `postgres_keys`).

SQLite's default `synchronous=FULL` is kept: the WAL is fsynced at every commit, so an
event acknowledged to a client survives a crash or a power loss. Group commit in the
command bus makes that one fsync per group of commands, not per command. Every event also gets
a link in a hash chain, in the same transaction (`event_chain`)."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.sqlite import SQLiteApplicationRecorder

from application.chronicle import Chronicle
from application.event_log import EventLog
from infrastructure.settings import Settings
from infrastructure.storage.audit_log import AuditLog
from infrastructure.storage.event_chain import ChainedSQLiteRecorder, ChainSource
from infrastructure.storage.sealing import DataKeys, KeyStore, SealingMapper

SQLITE_LOG = {
    "PERSISTENCE_MODULE": "eventsourcing.sqlite",
    "SQLITE_LOCK_TIMEOUT": "10",
    "APPLICATION_RECORDER_TOPIC": "infrastructure.storage.event_chain:ChainedSQLiteRecorder",
}


def open_event_store(settings: Settings, *, cached: bool = True) -> Chronicle:
    """`cached=False` gives a reader for threads other than the command bus's: it loads
    aggregates from the store every time and never touches the bus's cached objects."""
    if settings.database_url is not None:
        from infrastructure.storage.postgres_keys import PostgresKeyStore
        from infrastructure.storage.postgres_log import postgres_env
        from infrastructure.storage.postgres_schema import prepare_database

        prepare_database(settings.database_url)  # the schema at this code's version, or a clear refusal
        persistence = postgres_env(settings.database_url)
        keys: DataKeys = PostgresKeyStore.at(settings.database_url)
    else:
        persistence = {**SQLITE_LOG, "SQLITE_DBNAME": str(settings.event_store_path)}
        keys = KeyStore.at(settings.keys_path)
    app = Chronicle(
        env={
            **({} if cached else {"AGGREGATE_CACHE_MAXSIZE": ""}),
            **persistence,
            "TRANSCODER_TOPIC": "infrastructure.storage.event_encoding:MsgspecTranscoder",
            "MAPPER_TOPIC": "infrastructure.storage.sealing:SealingMapper",
        }
    )
    assert isinstance(app.mapper, SealingMapper)
    app.mapper.keys = keys
    return app


def event_log(app: Chronicle) -> EventLog:
    """The command bus's view of global positions, for the store's backend."""
    if isinstance(app.recorder, SQLiteApplicationRecorder):
        return SQLiteEventLog(app)
    from infrastructure.storage.postgres_log import PostgresEventLog

    return PostgresEventLog(app)


def chain_of(app: Chronicle) -> ChainSource:
    """The log's hash chain, read through the store's recorder (either backend)."""
    recorder = app.recorder
    if isinstance(recorder, ChainedSQLiteRecorder):
        return recorder
    from infrastructure.storage.postgres_log import ChainedPostgresRecorder

    assert isinstance(recorder, ChainedPostgresRecorder)
    return recorder


def audit_log(settings: Settings, reader: Chronicle) -> AuditLog:
    """The auditors' reader of the log: the SQLite file read-only, or the PostgreSQL recorder."""
    return AuditLog(settings.event_store_path if settings.database_url is None else reader.recorder, reader.mapper)


def data_keys(app: Chronicle) -> DataKeys:
    """The data keys of crypto-shredding, which the sealing mapper opens events with."""
    mapper = app.mapper
    assert isinstance(mapper, SealingMapper) and mapper.keys is not None
    return mapper.keys


def _recorder(app: Chronicle) -> SQLiteApplicationRecorder:
    recorder = app.recorder
    assert isinstance(recorder, SQLiteApplicationRecorder)
    return recorder


class SQLiteEventLog:
    """Positions in the global log: SQLite's rowid of the stored event is its notification id."""

    def __init__(self, app: Chronicle) -> None:
        self._app = app
        self._datastore = _recorder(app).datastore

    def position_of(self, originator_id: UUID, version: int) -> int:
        with self._datastore.transaction(commit=False) as cursor:
            cursor.execute(
                "SELECT rowid FROM stored_events WHERE originator_id=? AND originator_version=?",
                (originator_id.hex, version),
            )
            row = cursor.fetchone()
        if row is None:
            raise LookupError(f"no event {originator_id} v{version}")
        return int(row[0])

    def head(self) -> int:
        return self._app.recorder.max_notification_id() or 0
