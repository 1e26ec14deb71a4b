"""The one place that wires Chronicle together: event store, command bus, read store, projectors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from application import accounts, assistant, chat, documents
from application.chronicle import Chronicle
from application.command_bus import CommandBus
from infrastructure.settings import Settings
from infrastructure.storage.blob_store import BlobStore
from infrastructure.storage.event_store import SQLiteEventLog, open_event_store
from infrastructure.storage.read_store import SQLiteReadStore
from infrastructure.workers.projection_runner import ProjectionRunner
from projections.catalog import all_projectors

HANDLERS = {**accounts.HANDLERS, **chat.HANDLERS, **assistant.HANDLERS, **documents.HANDLERS}


@dataclass
class WriteSide:
    settings: Settings
    app: Chronicle
    bus: CommandBus
    read_store: SQLiteReadStore
    runner: Any
    """A `ProjectionRunner` (a thread of this process: the CLI) or, in the server, a
    `ProjectionProcess` with the same interface. (`Any`: Litestar converts this dataclass
    with msgspec, which takes no union of two classes.)"""
    reader: Chronicle
    """The event store for reads outside the command bus (login, the chat engine): uncached."""
    blobs: BlobStore

    def close(self) -> None:
        self.bus.stop()
        self.runner.stop()
        self.read_store.close()
        self.reader.close()
        self.app.close()


def bootstrap(settings: Settings) -> WriteSide:
    app = open_event_store(settings)
    read_store = SQLiteReadStore(settings.read_store_path)
    blobs = BlobStore(settings.blobs_path)
    runner = ProjectionRunner(app, read_store, all_projectors(blobs.read_text))
    bus = CommandBus(app, SQLiteEventLog(app), HANDLERS, on_commit=runner.wake)
    return WriteSide(settings, app, bus, read_store, runner, open_event_store(settings, cached=False), blobs)
