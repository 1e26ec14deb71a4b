"""Rate limits as moving windows (the `limits` library: a request is counted against the last
full window wherever it falls, so no burst passes by straddling a window's edge).

- `login`: sign-in attempts per client address (the peer, or `X-Forwarded-For` only from
  `CHRONICLE_TRUSTED_PROXIES`), per minute.
- `login_account`: failed sign-ins per account in 15 minutes. Beyond it the account refuses
  sign-ins for the rest of the window, except from a browser that has signed in to that account
  before (it carries a device cookie, as OWASP recommends): an attacker who keeps failing can
  slow down strangers' guesses but cannot lock the owner out.
- `posts`: messages per user per minute; `lookups`: user lookups per user per minute.
- `writes`: the other changes to sessions and their messages (starting, renaming, deleting a
  session, members, retention, read markers, edits and deletions of messages) per user per
  minute: each appends an event and most send a frame to every member.
- `searches`: full-text searches per user per minute: the dearest read there is, since it
  ranks every message and passage the user may read that holds the words.
- `passwords`: requests without a signed-in user that make the server hash a password
  (registering, accepting an invitation, resetting a password), per client address per minute:
  each hash costs tens of milliseconds of a core and 64 MiB (argon2id).

A refusal is a 429 problem naming the limit, with `Retry-After`. 0 turns a limit off."""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from typing import Any

from limits import RateLimitItem, RateLimitItemPerMinute, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from litestar.connection import ASGIConnection
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler

from infrastructure.metrics import RATE_LIMITED
from infrastructure.settings import RateLimitSettings

DEVICE_COOKIE = "chronicle_device"


class RateLimited(HTTPException):
    status_code = 429

    def __init__(self, limit: str, retry_after: int) -> None:
        super().__init__(
            detail=f"too many requests for the {limit} limit; retry in {retry_after} s",
            headers={"Retry-After": str(retry_after)},
            extra={"limit": limit, "retry_after": retry_after},
        )
        self.limit = limit
        RATE_LIMITED.labels(limit).inc()


class RateLimits:
    """One per app: the windows live in this process's memory."""

    def __init__(self, settings: RateLimitSettings, secret: str) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._secret = secret.encode()
        self._items: dict[str, RateLimitItem | None] = {
            "login": RateLimitItemPerMinute(settings.login_per_minute) if settings.login_per_minute > 0 else None,
            "login_account": parse(f"{settings.login_failures_per_account}/15 minutes")
            if settings.login_failures_per_account > 0
            else None,
            "posts": RateLimitItemPerMinute(settings.posts_per_minute) if settings.posts_per_minute > 0 else None,
            "lookups": RateLimitItemPerMinute(settings.lookups_per_minute) if settings.lookups_per_minute > 0 else None,
            "passwords": RateLimitItemPerMinute(settings.passwords_per_minute) if settings.passwords_per_minute > 0 else None,
            "writes": RateLimitItemPerMinute(settings.writes_per_minute) if settings.writes_per_minute > 0 else None,
            "searches": RateLimitItemPerMinute(settings.searches_per_minute) if settings.searches_per_minute > 0 else None,
        }

    def hit(self, limit: str, key: str) -> None:
        """Counts one request; raises `RateLimited` when the window is full."""
        item = self._items[limit]
        if item is not None and not self._limiter.hit(item, limit, key):
            raise RateLimited(limit, self._retry_after(item, limit, key))

    def check(self, limit: str, key: str) -> None:
        """Raises `RateLimited` when the window is full, counting nothing."""
        item = self._items[limit]
        if item is not None and not self._limiter.test(item, limit, key):
            raise RateLimited(limit, self._retry_after(item, limit, key))

    def _retry_after(self, item: RateLimitItem, limit: str, key: str) -> int:
        stats = self._limiter.get_window_stats(item, limit, key)
        return max(1, math.ceil(stats.reset_time - time.time()))

    def device_token(self, user_id: str) -> str:
        """The device cookie's value for this account: proof this browser signed in to it before."""
        return hmac.new(self._secret, f"device:{user_id}".encode(), hashlib.sha256).hexdigest()

    def known_device(self, cookie: str | None, user_id: str) -> bool:
        return cookie is not None and hmac.compare_digest(cookie, self.device_token(user_id))


def client_address(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    return connection.client.host if connection.client else "unknown"


def _limited(limit: str, key_of: Any) -> Any:
    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        if connection.scope.get("method") != "OPTIONS":  # OPTIONS is answered without a user, and costs nothing
            connection.app.state.rate_limits.hit(limit, key_of(connection))

    guard.rate_limit = limit  # type: ignore[attr-defined] - read by the OpenAPI document (429)
    return guard


login_attempts = _limited("login", client_address)
posts = _limited("posts", lambda c: str(c.user.id))
lookups = _limited("lookups", lambda c: str(c.user.id))
password_work = _limited("passwords", client_address)
writes = _limited("writes", lambda c: str(c.user.id))
searches = _limited("searches", lambda c: str(c.user.id))
