"""Erasing a person (crypto-shredding): their data key is destroyed first — from that moment
nothing of theirs can be read anywhere — then `UserErased` is recorded, then every read model is
rebuilt from the log (now reading "[erased]" for their fields) through shadow tables, and the
files only they referenced are removed. The log keeps its shape and its hash chain."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

import structlog

from application.accounts import UserNotFound
from application.chronicle import Chronicle
from domain.aggregate import Conflict
from domain.user import User, email_claim_id
from infrastructure.bootstrap import WriteSide
from infrastructure.storage.sealing import SealingMapper
from infrastructure.storage.shadow_rebuild import rebuild

log = structlog.stdlib.get_logger(__name__)


def require_erasable(reader: Chronicle, user_id: UUID) -> UUID:
    """Refuses an unknown or already erased user; returns the id of their email claim, read
    while the address can still be read."""
    try:
        user = reader.repository.get(user_id)
    except Exception:  # noqa: BLE001 - AggregateNotFoundError and anything that is not a user
        raise UserNotFound() from None
    if not isinstance(user, User):
        raise UserNotFound()
    if getattr(user, "erased", False):
        raise Conflict("the user is already erased")
    return email_claim_id(user.email)


def destroy_key(reader: Chronicle, user_id: UUID) -> None:
    mapper = reader.mapper
    assert isinstance(mapper, SealingMapper) and mapper.keys is not None
    mapper.keys.destroy(user_id.hex)
    log.info("erasure: personal data key destroyed", user_id=str(user_id))


def rebuild_after_erasure(
    write: WriteSide, collect: Callable[[], object], progress: Callable[[int, int], None] = lambda done, head: None
) -> int:
    """Rebuilds every read model from the log and removes the blobs nobody references now."""
    log.info("erasure: rebuilding every read model")
    reached = rebuild(write.reader, write.settings.read_store_path, write.runner.projectors, progress)
    write.runner.wake()
    collect()
    log.info("erasure: read models rebuilt and unreferenced files removed", position=reached)
    return reached
