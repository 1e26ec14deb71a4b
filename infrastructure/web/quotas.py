"""Per-user quotas, set by admins: messages per day, assistant replies per day (days in UTC) and
storage bytes. The daily quotas are decided on the write side by the commands that consume them
(`application.quotas`); what is read here — usage to show, the storage check before an upload,
the engine's check before it asks a provider — comes from the read models.

An exceeded quota answers 429 with a problem detail naming it, its limit, the usage and when
it resets (`Retry-After` too); storage frees up when documents are deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec

from domain.usage import QuotaExceeded
from domain.user import QUOTA_MAX
from projections.documents import storage_used
from projections.messages import messages_posted_since, replies_since
from projections.storage import ReadConnection
from projections.users import quotas_of

Limit = Annotated[int, msgspec.Meta(ge=0, le=QUOTA_MAX)]


class Quotas(msgspec.Struct, forbid_unknown_fields=True):
    """Each limit is a whole number, or null for no limit."""

    messages_per_day: Limit | None = None
    replies_per_day: Limit | None = None
    storage_bytes: Limit | None = None


class Usage(msgspec.Struct):
    day: str
    resets_at: datetime
    messages_today: int
    replies_today: int
    storage_bytes: int
    quotas: Quotas


def _day(now: datetime | None = None) -> tuple[datetime, datetime]:
    now = now or datetime.now(UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + timedelta(days=1)


async def usage_of(db: ReadConnection, user_id: str) -> Usage:
    start, reset = _day()
    quotas = Quotas(**await quotas_of(db, user_id))
    return Usage(
        day=start.date().isoformat(),
        resets_at=reset,
        messages_today=await messages_posted_since(db, user_id, start.isoformat()),
        replies_today=await replies_since(db, user_id, start.isoformat(), (start - timedelta(days=1)).isoformat()),
        storage_bytes=await storage_used(db, user_id),
        quotas=quotas,
    )


async def reply_quota_left(db: ReadConnection, user_id: str) -> bool:
    """The engine asks before it spends a provider call; the recording command decides."""
    limit = (await quotas_of(db, user_id))["replies_per_day"]
    if limit is None:
        return True
    start, _ = _day()
    return await replies_since(db, user_id, start.isoformat(), (start - timedelta(days=1)).isoformat()) < limit


async def require_storage_quota(db: ReadConnection, user_id: str, adding: int) -> None:
    limit = (await quotas_of(db, user_id))["storage_bytes"]
    if limit is not None:
        used = await storage_used(db, user_id)
        if used + adding > limit:
            raise QuotaExceeded("storage_bytes", limit, used, None)
