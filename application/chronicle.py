"""The eventsourcing Application that holds Chronicle's aggregates."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Recording


class Chronicle(Application[UUID]):
    """Aggregates stay cached in memory between commands: the command bus is the one writer,
    so the cache is current without a query per command. Commands work on the cached
    objects themselves (no deep copy); the bus evicts whatever a failed group touched, and
    a save that finds the store ahead of the cache (another process wrote) is refused by
    the store and retried on freshly loaded aggregates. Messages are their own aggregates,
    so a session's aggregate never grows with its message count.

    The cache holds 5,000 aggregates, least recently used out first: a session or a user in use
    stays; a message, saved once and rarely commanded again, soon leaves. At 50,000 the cached
    messages were most of what a full garbage collection had to scan (≈ 200,000 objects, 100 ms
    with the event loop stopped, every few seconds under load; ADR-048); a miss costs one indexed
    read of the aggregate's events."""

    env = {
        "AGGREGATE_CACHE_MAXSIZE": "5000",
        "AGGREGATE_CACHE_FASTFORWARD": "n",
        "DEEPCOPY_FROM_AGGREGATE_CACHE": "n",
    }

    def save(self, *aggregates: Aggregate) -> list[Recording[UUID]]:  # type: ignore[override]  # aggregates only, on purpose (below)
        """`Application.save` for aggregates only: the library's version tells aggregates from
        events with `isinstance` checks against runtime protocols, which cost a sixth of the
        command bus's time on Python 3.11. No snapshots or process policies are configured."""
        processing: ProcessingEvent[UUID] = ProcessingEvent()
        for aggregate in aggregates:
            processing.events.extend(aggregate.collect_events())
            processing.aggregates[aggregate.id] = aggregate
        recordings = self._record(processing)
        self._notify(recordings)
        return recordings
