"""JSON request bodies are read strictly, before Litestar converts them: duplicate keys are
refused (which of two values counts is a guess two parsers may make differently, a classic way to
smuggle a field past a check), and every value must have its documented type. Litestar converts
bodies leniently (`0` for `false`, `"1"` for `1`) because it shares that conversion with query
strings, where every value arrives as text."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException

_PATH = re.compile(r"at `\$\.?([^`\[]*)")


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _DuplicateKey(key)
        seen[key] = value
    return seen


def _number(text: str) -> float | int:
    """JSON Schema counts `163.0` as an integer; so does this check (Litestar's conversion agrees)."""
    number = float(text)
    return int(number) if number.is_integer() else number


_STRICT = json.JSONDecoder(object_pairs_hook=_refuse_duplicates, parse_float=_number)
"""Built once: `json.loads` with these arguments builds a decoder per call."""


class StrictJsonBodies:
    """An app-level `before_request` hook; a handler's body type is looked up once."""

    def __init__(self) -> None:
        self._body_types: dict[int, type[msgspec.Struct] | None] = {}

    async def __call__(self, request: Request[Any, Any, Any]) -> None:
        handler = request.route_handler
        key = id(handler)
        if key not in self._body_types:
            data = handler.parsed_fn_signature.parameters.get("data")
            annotation = getattr(data, "annotation", None)
            self._body_types[key] = annotation if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct) else None
        struct = self._body_types[key]
        if struct is None:
            return
        body = await request.body()
        if not body:
            return
        try:
            decoded = _STRICT.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
        except _DuplicateKey as duplicate:
            raise ValidationException(
                "duplicate key in the JSON body", extra=[{"key": duplicate.key, "message": "appears more than once in the body"}]
            ) from None
        except (ValueError, RecursionError):
            return  # not JSON at all: Litestar's own decoding answers it
        try:
            msgspec.convert(decoded, type=struct, strict=True)
        except msgspec.ValidationError as error:
            found = _PATH.search(str(error))
            field = found.group(1) if found and found.group(1) else "data"  # the problem handler finds a named field
            raise ValidationException(str(error), extra=[{"key": field, "message": str(error).split(" - at ")[0]}]) from None
