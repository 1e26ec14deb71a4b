"""The aggregates one batch of commands reads and changes, saved together in one transaction."""

from __future__ import annotations

from typing import TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Repository
from eventsourcing.domain import Aggregate, CanMutateAggregate

from application.event_log import EventLog

A = TypeVar("A", bound=Aggregate)


class RetryAfterSave(Exception):
    """Raised by a handler that needs what an earlier command of the same group has not
    saved yet (a repeated post whose first copy is still pending): the command bus runs
    it again right after the group's save."""


class UnitOfWork:
    def __init__(self, repository: Repository[UUID], event_log: EventLog) -> None:
        self._repository = repository
        self.event_log = event_log
        self._aggregates: dict[UUID, Aggregate | None] = {}
        self._marks: dict[UUID, int] = {}

    def begin_command(self) -> None:
        """From here on, `command_events` tells what the next command triggers."""
        self._marks = {}

    def _touch(self, aggregate: Aggregate) -> None:
        if aggregate.id not in self._marks:
            self._marks[aggregate.id] = len(aggregate.pending_events)

    def find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        """The aggregate as this batch sees it, or None if there is none of this type."""
        if aggregate_id not in self._aggregates:
            try:
                self._aggregates[aggregate_id] = self._repository.get(aggregate_id)
            except AggregateNotFoundError:
                self._aggregates[aggregate_id] = None
        aggregate = self._aggregates[aggregate_id]
        if not isinstance(aggregate, cls):
            return None
        self._touch(aggregate)
        return aggregate

    def get(self, cls: type[A], aggregate_id: UUID, missing: Exception) -> A:
        aggregate = self.find(cls, aggregate_id)
        if aggregate is None:
            raise missing
        return aggregate

    def add(self, aggregate: Aggregate) -> None:
        """A new aggregate: every event it has pending belongs to the current command."""
        if self._aggregates.get(aggregate.id) is not aggregate:
            self._aggregates[aggregate.id] = aggregate
            self._marks[aggregate.id] = 0

    def command_events(self) -> list[CanMutateAggregate[UUID]]:
        """Events the current command has triggered so far, on the aggregates it touched."""
        events: list[CanMutateAggregate[UUID]] = []
        for key, mark in self._marks.items():
            aggregate = self._aggregates[key]
            if aggregate is not None:
                events.extend(aggregate.pending_events[mark:])
        return events

    def changed(self) -> list[Aggregate]:
        return [agg for agg in self._aggregates.values() if agg is not None and agg.pending_events]

    def forget(self) -> None:
        """Evicts every aggregate this unit loaded from the repository's cache: after a
        failed group they may hold changes that were never saved."""
        cache = self._repository.cache
        if cache is None:
            return
        for key in self._aggregates:
            try:
                cache.get(key, evict=True)
            except KeyError:
                pass
