"""Conditional GETs for read views (ADR-045): an ETag derived from where the read models last
changed for what the view shows (`projections.change_positions`), the read store's generation,
the caller, the query and the view's shape; `If-None-Match` with a current tag answers 304
before the view's tables are read. `Cache-Control: private, no-cache` keeps shared caches out and
makes the browser revalidate every time (it sends `If-None-Match` by itself).

The tags are weak: they name a state of the read models, not a byte sequence (a proxy that
compresses the body keeps them valid, and If-None-Match compares weakly anyway)."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec
from litestar import Request, Response

CACHE_CONTROL = "private, no-cache"
REVALIDATED = {"revalidated": True}
"""Route option: the operation answers 304 to a current `If-None-Match` (the OpenAPI document says so)."""


@functools.cache
def representation(view: Any) -> str:
    """A digest of the view's JSON schema, part of every tag: a server whose views gained or
    changed a field answers 200 to the tags of the old shape."""
    return hashlib.blake2b(msgspec.json.encode(msgspec.json.schema(view)), digest_size=8).hexdigest()


def view_tag(state: Mapping[str, Any], request: Request[Any, Any, Any], view: Any, *query: object) -> str | None:
    """The tag of what this request is about to read, or None when the read models it comes from
    are not in step (a projector failed, reset or catching up): then nothing is cached.
    `state` is a `*_view_state` row; it must be read before the view, so that the view is never
    older than its tag (a tag older than its view only costs one more 200)."""
    if not state["in_step"] or state["generation"] is None:
        return None
    parts = (state["generation"], state["changed"] or 0, request.user.id, request.url.path, representation(view), *query)
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=12).hexdigest()
    return f'W/"{digest}"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Weak comparison (RFC 9110 §13.1.2) against each tag listed, or `*`."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    opaque = tag.removeprefix("W/")
    return any(candidate.strip().removeprefix("W/") == opaque for candidate in if_none_match.split(","))


def not_modified(request: Request[Any, Any, Any], tag: str | None) -> Response[Any] | None:
    """The 304 for a current `If-None-Match`, else None (read the view)."""
    if tag is None or not matches(request.headers.get("if-none-match"), tag):
        return None
    return Response(None, status_code=304, headers={"ETag": tag, "Cache-Control": CACHE_CONTROL})


def tagged(content: Any, tag: str | None) -> Response[Any]:
    headers = {"Cache-Control": CACHE_CONTROL}
    if tag is not None:
        headers["ETag"] = tag
    return Response(content, headers=headers)
