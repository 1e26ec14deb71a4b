"""The base of Chronicle's aggregates: every event carries its provenance and clock time."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.identity import new_id
from domain.provenance import clock, current_provenance


class DomainError(Exception):
    """A command was refused by a domain rule; nothing was recorded."""


class NotFound(DomainError):
    """The thing asked for does not exist (or is not visible to the actor)."""


class Forbidden(DomainError):
    """The actor may see the thing but may not do this to it."""


class Conflict(DomainError):
    """The command contradicts the current state (e.g. a duplicate)."""


class InvalidValue(DomainError):
    """A value breaks an invariant; `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ChronicleAggregate(Aggregate):
    class Event(Aggregate.Event):
        actor_id: str
        correlation_id: str

        @staticmethod
        def create_timestamp() -> datetime:
            return clock.now()

    class Created(Event, Aggregate.Created):
        pass

    @staticmethod
    def create_id(*_: Any, **__: Any) -> UUID:
        return new_id()

    @classmethod
    def _create(cls, event_class: Any, **kwargs: Any) -> Any:
        return super()._create(event_class, **_with_provenance(kwargs))

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        super().trigger_event(event_class, **_with_provenance(kwargs))


def _with_provenance(kwargs: dict[str, Any]) -> dict[str, Any]:
    provenance = current_provenance()
    kwargs.setdefault("actor_id", provenance.actor_id)
    kwargs.setdefault("correlation_id", provenance.correlation_id)
    return kwargs


def require_text(field: str, value: str, *, min_length: int = 1, max_length: int) -> str:
    if not isinstance(value, str) or not min_length <= len(value) <= max_length:
        raise InvalidValue(field, f"{field} must be {min_length} to {max_length} characters")
    return value


def require_name(field: str, value: str, *, max_length: int) -> str:
    """A one-line name (a title, a display name): NFC-normalised and trimmed, without control or
    format characters (NUL, line breaks, bidirectional overrides), which would break a client's
    layout or hide what it shows. Message content keeps them (it is shown as text, escaped)."""
    if isinstance(value, str):
        value = unicodedata.normalize("NFC", value).strip()
        if any(unicodedata.category(c) in ("Cc", "Cf") for c in value):
            raise InvalidValue(field, f"{field} must not hold control or format characters")
    return require_text(field, value, max_length=max_length)
