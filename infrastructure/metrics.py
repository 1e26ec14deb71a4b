"""Prometheus metrics recorded by the workers and the streams; `/metrics` exports them and the
admin dashboard reads the very same objects, so the two never disagree."""

from __future__ import annotations

import time

from prometheus_client import Counter, Gauge

REPLIES = Counter("chronicle_assistant_replies", "Assistant reply outcomes recorded", ["outcome"])
REPLIES_IN_FLIGHT = Gauge("chronicle_assistant_replies_in_flight", "Assistant replies being produced")
CONVERSIONS = Counter("chronicle_conversions", "Conversion outcomes recorded", ["outcome"])
CONVERSIONS_IN_FLIGHT = Gauge("chronicle_conversions_in_flight", "Conversions running")
WEBSOCKETS = Gauge("chronicle_websocket_connections", "Open WebSocket streams")
ACTIVE_USERS = Gauge("chronicle_active_users", "Users who made an authenticated request in the last 5 minutes")


class ActiveUsers:
    """Who was seen recently: one dict write per authenticated request."""

    WINDOW = 300.0

    def __init__(self) -> None:
        self._seen: dict[str, float] = {}

    def saw(self, user_id: str) -> None:
        self._seen[user_id] = time.monotonic()

    def count(self) -> int:
        cutoff = time.monotonic() - self.WINDOW
        if len(self._seen) > 10_000:
            self._seen = {u: t for u, t in self._seen.items() if t >= cutoff}
        return sum(1 for t in self._seen.values() if t >= cutoff)
