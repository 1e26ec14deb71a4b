"""Retention: messages keep their content for a number of days — the global default
(`CHRONICLE_RETENTION_DAYS`, none by default) or the session's own `retention_days` — and then
lose it by crypto-shredding. Message content is sealed with a key per author, session and day,
so expiring a day destroys keys and rewrites nothing: the events stay (who posted, where, when),
their content reads as "[erased]", the hash chain still verifies. Each expiry is recorded as
`ContentExpired(before)` on the session, and the read models are then rebuilt."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from uuid import UUID

import structlog

from application.chat import ExpireContent
from domain.identity import new_id
from infrastructure.bootstrap import WriteSide
from infrastructure.storage.read_store import SQLiteReadStore
from infrastructure.storage.sealing import KeyStore
from projections.sessions import retention_overrides

log = structlog.stdlib.get_logger(__name__)


class RetentionPostponed(Exception):
    """Per-session overrides come from the read model: a stale one could expire what a session
    asked to keep, so nothing is destroyed until it has caught up."""


def apply_retention(
    write: WriteSide,
    keys: KeyStore,
    default_days: int | None,
    today: date,
    execute: Callable[[ExpireContent], object],
) -> dict[str, tuple[str, int]]:
    """Destroys the keys of expired days; returns, per session id, the first day kept and how
    many keys went. `execute` records each session's `ContentExpired`."""
    if "correlation_id" in structlog.contextvars.get_contextvars():  # a CLI command's own id
        return _apply_retention(write, keys, default_days, today, execute)
    with structlog.contextvars.bound_contextvars(correlation_id=str(new_id())):  # the server's job: one id per run
        return _apply_retention(write, keys, default_days, today, execute)


def _apply_retention(
    write: WriteSide,
    keys: KeyStore,
    default_days: int | None,
    today: date,
    execute: Callable[[ExpireContent], object],
) -> dict[str, tuple[str, int]]:
    store = SQLiteReadStore(write.settings.read_store_path)  # its own connection: the runner's is busy
    try:
        with store.transaction() as tx:
            if tx.positions().get("sessions", 0) < write.runner.head() or "sessions" in store.failures():
                raise RetentionPostponed("the sessions read model is behind the log; no key is destroyed now")
            overrides = retention_overrides(tx)
    finally:
        store.close()
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
    log.info(
        "retention run",
        today=today.isoformat(),
        default_days=default_days,
        sessions_expired=len(expired),
        keys_destroyed=sum(count for _, count in expired.values()),
    )
    return {str(UUID(h)): value for h, value in expired.items()}
