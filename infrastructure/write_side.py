"""The write side as the composition root builds it: the event store, the command bus, the read
store, the projection runner (a thread for the CLI, a process for the server), an uncached reader
and the blob store. Entry points receive it; only `infrastructure.bootstrap` builds it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from application.chronicle import Chronicle
from application.command_bus import CommandBus
from infrastructure.settings import Settings
from infrastructure.storage.blob_store import BlobStore
from infrastructure.storage.event_store import data_keys
from infrastructure.storage.read_store import SQLiteReadStore
from infrastructure.storage.sealing import DataKeys


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

    @property
    def keys(self) -> DataKeys:
        """The data keys of crypto-shredding."""
        return data_keys(self.reader)

    def close(self) -> None:
        self.bus.stop()
        self.runner.stop()
        self.read_store.close()
        self.reader.close()
        self.app.close()
