"""Retention: messages keep their content for a number of days — the global default
(`CHRONICLE_RETENTION_DAYS`, none by default) or the session's own `retention_days` — and then
lose it by crypto-shredding. Message content is sealed with a key per author, session and day,
so expiring a day destroys keys and rewrites nothing: the events stay (who posted, where, when),
their content reads as "[erased]", the hash chain still verifies. Each expiry is recorded as
`ContentExpired(before)` on the session (`application.erasure.expire_content`), and the read
models are then rebuilt. The server runs it every `CHRONICLE_RETENTION_INTERVAL` seconds, an
operator with `chronicle retention run`."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from types import EllipsisType

import structlog

from application.chat import ExpireContent
from application.erasure import expire_content
from domain.identity import new_id
from infrastructure.storage.read_store import SQLiteReadStore
from infrastructure.write_side import WriteSide
from projections.sessions import retention_overrides

log = structlog.stdlib.get_logger(__name__)


class RetentionPostponed(Exception):
    """Per-session overrides come from the read model: a stale one could expire what a session
    asked to keep, so nothing is destroyed until it has caught up."""


def apply_retention(
    write: WriteSide, today: date, execute: Callable[[ExpireContent], object], *, default_days: int | None | EllipsisType = ...
) -> dict[str, tuple[str, int]]:
    """Destroys the keys of expired days; returns, per session id, the first day kept and how
    many keys went. `execute` records each session's `ContentExpired`. `default_days` is the
    global retention (`CHRONICLE_RETENTION_DAYS` unless given)."""
    days = write.settings.retention_days if default_days is ... else default_days
    if "correlation_id" in structlog.contextvars.get_contextvars():  # a CLI command's own id
        return _apply_retention(write, days, today, execute)
    with structlog.contextvars.bound_contextvars(correlation_id=str(new_id())):  # the server's job: one id per run
        return _apply_retention(write, days, today, execute)


def _apply_retention(
    write: WriteSide, default_days: int | None, today: date, execute: Callable[[ExpireContent], object]
) -> dict[str, tuple[str, int]]:
    store = SQLiteReadStore(write.settings.read_store_path)  # its own connection: the runner's is busy
    try:
        with store.transaction() as tx:
            if tx.positions().get("sessions", 0) < write.runner.head() or "sessions" in store.failures():
                raise RetentionPostponed("the sessions read model is behind the log; no key is destroyed now")
            overrides = retention_overrides(tx)
    finally:
        store.close()
    expired = expire_content(write.keys, overrides, default_days, today, execute)
    log.info(
        "retention run",
        today=today.isoformat(),
        default_days=default_days,
        sessions_expired=len(expired),
        keys_destroyed=sum(count for _, count in expired.values()),
    )
    return expired
