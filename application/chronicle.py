"""The eventsourcing Application that holds Chronicle's aggregates."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import Recording

from domain.message import Message


class Chronicle(Application[UUID]):
    """Aggregates stay cached in memory between commands: the command bus is the one writer,
    so the cache is current without a query per command. Commands work on the cached
    objects themselves (no deep copy); the bus evicts whatever a failed group touched, and
    a save that finds the store ahead of the cache (another process wrote) is refused by
    the store and retried on freshly loaded aggregates. Messages are their own aggregates,
    so a session's aggregate never grows with its message count.

    The cache holds 10,000 aggregates, least recently used out first, and a message is not put in
    it when it is posted: messages are most of what is saved and are rarely commanded again (an
    edit loads one back), while the sessions and users that every post needs stay. With every
    posted message kept (and 50,000 slots), the cache filled within half a minute of posting and
    was most of what each full garbage collection had to scan: ≈ 200,000 objects, 100 ms with the
    event loop stopped, about once a second (ADR-048)."""

    env = {
        "AGGREGATE_CACHE_MAXSIZE": "10000",
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
            if type(aggregate) is not Message or aggregate.version > 1:  # a new message: not cached (above)
                processing.aggregates[aggregate.id] = aggregate
        recordings = self._record(processing)
        self._notify(recordings)
        return recordings
