"""Who did a thing, in answer to which request, and when: recorded on every event."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime

SYSTEM_ACTOR = "system"


@dataclass(frozen=True)
class Provenance:
    actor_id: str
    correlation_id: str


_provenance: ContextVar[Provenance] = ContextVar(
    "chronicle_provenance",
    default=Provenance(SYSTEM_ACTOR, ""),  # noqa: B039 - a frozen dataclass, never mutated
)


def current_provenance() -> Provenance:
    return _provenance.get()


@contextmanager
def acting_as(actor_id: str, correlation_id: str) -> Iterator[None]:
    """Events triggered inside this block record this actor and correlation id."""
    token = _provenance.set(Provenance(actor_id, correlation_id))
    try:
        yield
    finally:
        _provenance.reset(token)


def _system_now() -> datetime:
    return datetime.now(tz=UTC)


class Clock:
    """The time events are stamped with; tests replace it to control time."""

    def __init__(self) -> None:
        self._now: Callable[[], datetime] = _system_now

    def now(self) -> datetime:
        return self._now()

    @contextmanager
    def frozen_by(self, now: Callable[[], datetime]) -> Iterator[None]:
        previous, self._now = self._now, now
        try:
            yield
        finally:
            self._now = previous


clock = Clock()
