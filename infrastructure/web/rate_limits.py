"""Rate limits on login (per client address) and on posting (per user), per minute; 0 turns one off."""

from __future__ import annotations

import os
from typing import Any

from litestar import Request
from litestar.middleware.rate_limit import RateLimitConfig, get_remote_address


def _limit(variable: str, default: int, identify: Any) -> list[Any]:
    value = os.environ.get(variable, "").strip()
    per_minute = int(value) if value else default
    if per_minute <= 0:
        return []
    return [RateLimitConfig(rate_limit=("minute", per_minute), identifier_for_request=identify).middleware]


def login_rate_limit() -> list[Any]:
    return _limit("CHRONICLE_RATE_LIMIT_LOGIN", 10, lambda r: f"login:{get_remote_address(r)}")


def lookup_rate_limit() -> list[Any]:
    return _limit("CHRONICLE_RATE_LIMIT_LOOKUPS", 30, lambda r: f"lookup:{getattr(r.scope.get('user'), 'id', '')}")


def posting_rate_limit() -> list[Any]:
    return _limit("CHRONICLE_RATE_LIMIT_POSTS", 600, _poster)


def _poster(request: Request[Any, Any, Any]) -> str:
    user = request.scope.get("user")
    return f"posts:{getattr(user, 'id', get_remote_address(request))}"
