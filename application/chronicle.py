"""The eventsourcing Application that holds Chronicle's aggregates."""

from __future__ import annotations

from eventsourcing.application import Application


class Chronicle(Application):
    """Aggregates are cached and fast-forwarded from the store, so a command loads only
    the events it has not yet seen; messages are their own aggregates, so a session's
    aggregate never grows with its message count."""

    env = {
        "AGGREGATE_CACHE_MAXSIZE": "20000",
    }
