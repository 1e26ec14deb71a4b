"""What a person consumed of their daily quotas, counted by the commands that consume it.

One aggregate per person and UTC day. Commands run one at a time on the write side, so two
concurrent requests cannot both take the last unit of a quota (a check against a read model,
which trails the log, could let both through). Counting starts when a quota exists: a quota set
during a day counts what is consumed from then on."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import event

from domain.aggregate import ChronicleAggregate, DomainError

DAILY_QUOTAS = ("messages_per_day", "replies_per_day")


class QuotaExceeded(DomainError):
    def __init__(self, quota: str, limit: int, used: int, resets_at: datetime | None) -> None:
        when = f"; it resets at {resets_at.isoformat()}" if resets_at else "; delete documents to free space"
        super().__init__(f"the {quota} quota of {limit:,} is used up ({used:,} used){when}")
        self.quota, self.limit, self.used, self.resets_at = quota, limit, used, resets_at


def usage_id(user_id: UUID, day: date) -> UUID:
    return uuid5(NAMESPACE_URL, f"chronicle:usage:{user_id}:{day.isoformat()}")


class DailyUsage(ChronicleAggregate):
    @staticmethod
    def create_id(user_id: UUID, day: str) -> UUID:
        return usage_id(user_id, date.fromisoformat(day))

    class DailyUsageStarted(ChronicleAggregate.Created):
        user_id: UUID
        day: str

    @event(DailyUsageStarted)
    def __init__(self, user_id: UUID, day: str) -> None:
        self.user_id = user_id
        self.day = day
        self.used: dict[str, int] = {}

    def consume(self, quota: str, limit: int) -> None:
        """Takes one unit of `quota`; refused (nothing recorded) when `limit` units are taken."""
        used = self.used.get(quota, 0)
        if used >= limit:
            midnight = datetime.combine(date.fromisoformat(self.day) + timedelta(days=1), time(), UTC)
            raise QuotaExceeded(quota, limit, used, midnight)
        self._consumed(quota=quota)

    class QuotaConsumed(ChronicleAggregate.Event):
        quota: str

    @event(QuotaConsumed)
    def _consumed(self, quota: str) -> None:
        self.used = {**self.used, quota: self.used.get(quota, 0) + 1}
