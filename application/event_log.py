"""What the application needs to know about the global log beyond eventsourcing's recorder."""

from __future__ import annotations

from typing import Protocol
from uuid import UUID


class EventLog(Protocol):
    def position_of(self, originator_id: UUID, version: int) -> int:
        """The global position of one stored event."""

    def head(self) -> int:
        """The position of the newest event (0 for an empty log)."""
