"""The fast read path of the log: stored rows (originator, version, topic, state bytes) decoded
straight into domain events, without eventsourcing's `StoredEvent`, id converters and mapper.

The result is what `SealingMapper.to_domain_event` gives for the same row (same class, same
fields, same values; `tests/infrastructure/test_event_reading.py` holds it to that), at a
fraction of the cost: the state is decoded once by msgspec, repeated ids (a session's, an
author's) become one `UUID` object each, and a sealed field's key is looked up once per key
and read, straight from the key store's file (never from a cache another process's erasure
may not have reached yet)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import TranscodingNotRegisteredError
from eventsourcing.utils import resolve_topic

from infrastructure.storage.event_encoding import _uuid_from_hex
from infrastructure.storage.sealing import PERSONAL, DataKeys, open_personal_fields

_decode_json = msgspec.json.Decoder().decode


class EventDecoder:
    """Decodes rows for one read (a replay): keys and ids are remembered for its length only."""

    def __init__(self, keys: DataKeys | None) -> None:
        self._keys = keys
        self._ciphers: dict[str, AESGCM | None] = {}
        self._uuids: dict[str, UUID] = {}
        self._classes: dict[str, tuple[type, int]] = {}

    def decode(self, originator_id: str | UUID, version: int, topic: str, state: bytes) -> Any:
        known = self._classes.get(topic)
        if known is None:
            cls = resolve_topic(topic)
            known = self._classes[topic] = (cls, getattr(cls, "class_version", 1))
        cls, class_version = known
        fields: dict[str, Any] = _decode_json(state)
        for key, value in fields.items():
            kind = type(value)
            if kind is dict or kind is list:
                fields[key] = self._untag(value)
        fields["originator_id"] = self._uuid(originator_id)
        fields["originator_version"] = version
        from_version = fields.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(fields)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", fields)
        if cls in PERSONAL:
            if self._keys is None:
                raise RuntimeError("a sealed field cannot be read without the key store")
            open_personal_fields(event, self._cipher)
        return event

    def _cipher(self, subject: str) -> AESGCM | None:
        if subject in self._ciphers:
            return self._ciphers[subject]
        assert self._keys is not None
        cipher = self._ciphers[subject] = self._keys.stored_cipher(subject)
        return cipher

    def _uuid(self, text: str | UUID) -> UUID:
        if isinstance(text, UUID):  # PostgreSQL's uuid column
            return text
        uuid = self._uuids.get(text)
        if uuid is None:
            uuid = self._uuids[text] = _uuid_from_hex(text)
        return uuid

    def _untag(self, value: Any) -> Any:
        """The transcoder's tags (`{"_type_": …, "_data_": …}`) turned back into values."""
        if type(value) is list:
            return [self._untag(item) if type(item) in (dict, list) else item for item in value]
        kind = value.get("_type_") if len(value) == 2 and "_data_" in value else None
        if kind == "uuid_hex":
            return self._uuid(value["_data_"])
        if kind == "datetime_iso":
            return datetime.fromisoformat(value["_data_"])
        if kind == "decimal_str":
            return Decimal(value["_data_"])
        if kind is not None:
            raise TranscodingNotRegisteredError(f"Data serialized with name {kind!r} is not deserializable.")
        return {key: self._untag(item) if type(item) in (dict, list) else item for key, item in value.items()}
