"""The event store: Chronicle's eventsourcing Application on one SQLite file in WAL mode.

SQLite's default `synchronous=FULL` is kept: the WAL is fsynced at every commit, so an
event acknowledged to a client survives a crash or a power loss. Group commit in the
command bus makes that one fsync per group of commands, not per command. Every event also gets
a link in a hash chain, in the same transaction (`event_chain`)."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.sqlite import SQLiteApplicationRecorder

from application.chronicle import Chronicle
from infrastructure.settings import Settings
from infrastructure.storage.sealing import KeyStore, SealingMapper


def open_event_store(settings: Settings, *, cached: bool = True) -> Chronicle:
    """`cached=False` gives a reader for threads other than the command bus's: it loads
    aggregates from the store every time and never touches the bus's cached objects."""
    app = Chronicle(
        env={
            **({} if cached else {"AGGREGATE_CACHE_MAXSIZE": ""}),
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": str(settings.event_store_path),
            "SQLITE_LOCK_TIMEOUT": "10",
            "TRANSCODER_TOPIC": "infrastructure.storage.event_encoding:MsgspecTranscoder",
            "APPLICATION_RECORDER_TOPIC": "infrastructure.storage.event_chain:ChainedSQLiteRecorder",
            "MAPPER_TOPIC": "infrastructure.storage.sealing:SealingMapper",
        }
    )
    assert isinstance(app.mapper, SealingMapper)
    app.mapper.keys = KeyStore.at(settings.keys_path)
    return app


def data_keys(app: Chronicle) -> KeyStore:
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
