"""Erasing a person and expiring content past its retention, written once for the web API and
the command line. Both crypto-shred: the data keys go first (from that moment nothing sealed
with them can be read anywhere), then the fact is recorded (`UserErased`, `ContentExpired`).
Rebuilding the read models and removing the files nobody references any more follow, through
the `ReadModels` port."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import date, timedelta
from typing import Protocol
from uuid import UUID

from application.accounts import EraseUser, UserNotFound
from application.chat import ExpireContent
from application.chronicle import Chronicle
from application.command_bus import Outcome
from domain.aggregate import Conflict
from domain.user import User, email_claim_id

log = logging.getLogger(__name__)


class DataKeys(Protocol):
    """The key store of crypto-shredding (`infrastructure.storage.sealing.KeyStore`)."""

    def destroy(self, owner: str) -> None: ...

    def expire(self, before_day: str, sessions: Iterable[str] | None = None, *, keep: Iterable[str] = ()) -> dict[str, int]: ...


class ReadModels(Protocol):
    def rebuild(self) -> int:
        """Rebuilds every read model from the log, removes the files nobody references now,
        and returns the position reached."""
        ...


def erase_person(reader: Chronicle, keys: DataKeys, execute: Callable[[EraseUser], Outcome], user_id: UUID) -> Outcome:
    """Refuses an unknown or already erased person (nothing destroyed, nothing recorded), else
    destroys their key and records `UserErased`, with the id of their email claim read while the
    address can still be read (so that the address may be registered again)."""
    try:
        user: object = reader.repository.get(user_id)
    except Exception:  # noqa: BLE001 - AggregateNotFoundError, and anything that is not a user
        raise UserNotFound() from None
    if not isinstance(user, User):
        raise UserNotFound()
    if getattr(user, "erased", False):
        raise Conflict("the user is already erased")
    claim = email_claim_id(user.email)
    keys.destroy(user_id.hex)
    log.info("erasure: personal data key destroyed", extra={"user_id": str(user_id)})
    return execute(EraseUser(user_id, claim))


def expire_content(
    keys: DataKeys,
    overrides: Mapping[str, int],
    default_days: int | None,
    today: date,
    execute: Callable[[ExpireContent], object],
) -> dict[str, tuple[str, int]]:
    """Destroys the keys of the days past each session's retention (`overrides`, by session id)
    or the default; records `ContentExpired` per session; returns, per session id, the first day
    kept and how many keys went."""
    expired: dict[str, tuple[str, int]] = {}
    for session_id, days in overrides.items():
        before = (today - timedelta(days=days)).isoformat()
        for session_hex, count in keys.expire(before, [UUID(session_id).hex]).items():
            expired[session_hex] = (before, count)
    if default_days:
        before = (today - timedelta(days=default_days)).isoformat()
        keep = {UUID(session_id).hex for session_id in overrides}
        for session_hex, count in keys.expire(before, None, keep=keep).items():
            expired[session_hex] = (before, count)
    for session_hex, (before, _) in expired.items():
        execute(ExpireContent(UUID(session_hex), before))
    return {str(UUID(h)): value for h, value in expired.items()}
