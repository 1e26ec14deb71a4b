"""Daily quotas, decided on the write side by the commands that consume them."""

from __future__ import annotations

from uuid import UUID

from application.unit_of_work import UnitOfWork
from domain.provenance import clock
from domain.usage import DailyUsage, usage_id
from domain.user import QUOTAS, User


def consume_quota(uow: UnitOfWork, user_id: UUID, quota: str) -> None:
    """Takes one unit of the user's daily `quota`, if they have one; raises `QuotaExceeded`
    when it is used up. The limit and the count are both read on the write side, where
    commands run one at a time."""
    user = uow.find(User, user_id)
    if user is None:
        return
    limit = dict(zip(QUOTAS, user.quotas, strict=True)).get(quota)
    if limit is None:
        return
    day = clock.now().date()
    usage = uow.find(DailyUsage, usage_id(user_id, day))
    if usage is None:
        usage = DailyUsage(user_id=user_id, day=day.isoformat())
        uow.add(usage)
    usage.consume(quota, limit)
