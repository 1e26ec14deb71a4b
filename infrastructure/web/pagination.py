"""Cursor pagination shared by every list endpoint: items in position order, an opaque
cursor to continue after the last one, null when there is nothing more."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec
from litestar.exceptions import ValidationException

T = TypeVar("T")

MAX_LIMIT = 500


class Page(msgspec.Struct, Generic[T]):
    items: list[T]
    next_cursor: str | None


def cursor_position(cursor: str | None) -> int:
    """A cursor is a position in ASCII digits (`'²'.isdigit()` is true, `int('²')` fails)."""
    if cursor is None or cursor == "":
        return 0
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 18:
        raise ValidationException("invalid cursor", extra=[{"key": "cursor", "message": "not a cursor this API gave out"}])
    return int(cursor)


def page(rows: list[dict[str, Any]], limit: int, convert: Any, key: str = "position") -> Page[Any]:
    """`rows` was fetched with limit + 1, so a next cursor is only given when more exist."""
    more = len(rows) > limit
    rows = rows[:limit]
    return Page(items=[convert(r) for r in rows], next_cursor=str(rows[-1][key]) if more and rows else None)
