"""How event state is stored: the same JSON as eventsourcing's JSONTranscoder (UUIDs, datetimes
and decimals tagged as `{"_type_": …, "_data_": …}`), encoded and decoded with msgspec.

The stored bytes are interchangeable with the default transcoder's, so nothing already
stored changes; msgspec only makes it cheaper (≈15 µs → ≈3 µs per event each way here)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, SafeUUID

import msgspec
from eventsourcing.persistence import Transcoder, TranscodingNotRegisteredError

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def _tag(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or kind is float or value is None:
        return value
    if kind is dict:
        return {key: _tag(item) for key, item in value.items()}
    if kind is UUID:
        return {"_type_": "uuid_hex", "_data_": value.hex}
    if kind is datetime:
        return {"_type_": "datetime_iso", "_data_": value.isoformat()}
    if kind is list or kind is tuple:
        return [_tag(item) for item in value]
    if kind is Decimal:
        return {"_type_": "decimal_str", "_data_": str(value)}
    raise TranscodingNotRegisteredError(f"Object of type {kind} is not serializable.")


def _uuid_from_hex(text: str) -> UUID:
    """`UUID(hex)` without its parsing of URN prefixes, braces and dashes (≈ 5 µs → ≈ 1 µs; a
    message event holds two UUIDs): the encoder always writes 32 hex digits."""
    if len(text) != 32 or not (text.isascii() and text.isalnum()):
        return UUID(text)  # not what the encoder writes: the full parser decides
    uuid = object.__new__(UUID)
    object.__setattr__(uuid, "int", int(text, 16))
    object.__setattr__(uuid, "is_safe", SafeUUID.unknown)
    return uuid


_UNTAG = {"uuid_hex": _uuid_from_hex, "datetime_iso": datetime.fromisoformat, "decimal_str": Decimal}


def _untag(value: Any) -> Any:
    kind = type(value)
    if kind is dict:
        if len(value) == 2 and "_type_" in value and "_data_" in value:
            try:
                return _UNTAG[value["_type_"]](value["_data_"])
            except KeyError:
                raise TranscodingNotRegisteredError(f"Data serialized with name {value['_type_']!r} is not deserializable.") from None
        return _untag_fields(value)
    if kind is list:
        return [_untag(item) for item in value]
    return value


def _untag_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """An event's state: most values are plain, so only dicts and lists are looked into."""
    for key, item in fields.items():
        kind = type(item)
        if kind is dict or kind is list:
            fields[key] = _untag(item)
    return fields


class MsgspecTranscoder(Transcoder):
    def encode(self, obj: Any) -> bytes:
        return _encoder.encode(_tag(obj))

    def decode(self, data: bytes) -> Any:
        return _untag(_decoder.decode(data))
