"""Types at the HTTP edge, shared by every handler: positions, cursors, emails and names are typed
once, so that the same bad input gets the same 400 everywhere and the OpenAPI document states
the rule. Rules the domain decides (a name without control or format characters, an address
with an @) are stated in the document through `Meta.extra["json_schema"]` and checked where
they are decided, so that the error message stays the domain's."""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from typing import Annotated, Literal

import msgspec
from litestar.params import Parameter

MAX_POSITION = 2**62
"""Far beyond any log (SQLite rowids and PostgreSQL bigints stop at 2**63 - 1), and exact as a
float, which is how bounds reach the OpenAPI document."""

AfterPosition = Annotated[
    int | None,
    Parameter(
        ge=0,
        le=MAX_POSITION,
        description="Read-your-writes: wait until the read model has reached this global position (from a command's answer). "
        "A position beyond the log's head is refused with 409, naming the head.",
    ),
]
Cursor = Annotated[
    str | None,
    Parameter(
        pattern=r"^[0-9]{0,18}$",
        max_length=18,
        description="`next_cursor` from the previous page (ASCII digits); absent or empty for the first page.",
    ),
]


def _refused_characters() -> str:
    """A regex class body of every control (Cc) and format (Cf) character: what a name may not hold."""
    ranges: list[tuple[int, int]] = []
    for code in range(sys.maxunicode + 1):
        if unicodedata.category(chr(code)) in ("Cc", "Cf"):
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1] = (ranges[-1][0], code)
            else:
                ranges.append((code, code))

    def escaped(code: int) -> str:
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"

    return "".join(escaped(a) if a == b else f"{escaped(a)}-{escaped(b)}" for a, b in ranges)


@functools.cache
def name_pattern() -> str:
    """A one-line name: something other than spaces, and no control or format character
    (computed when the OpenAPI document is built, not at import)."""
    refused = _refused_characters()
    return f"^[^{refused}]*[^\\s{refused}][^{refused}]*$"


def name(max_length: int) -> msgspec.Meta:
    return msgspec.Meta(min_length=1, max_length=max_length, extra={"json_schema": {"pattern": name_pattern}})


UUID_TEXT = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
"""A UUID as the API writes it (the form OpenAPI's `uuid` format means)."""

Role = Literal["user", "admin", "auditor"]

Email = Annotated[str, msgspec.Meta(max_length=254, extra={"json_schema": {"format": "email"}})]
