"""The fast read path of the log: stored rows (originator, version, topic, state bytes) read in
large ordered batches (`log_reader`, for SQLite and PostgreSQL alike) and decoded straight into
domain events, without eventsourcing's `Notification`, `StoredEvent`, id converters and mapper.

The result is what `SealingMapper.to_domain_event` gives for the same row (same class, same
fields, same values; `tests/infrastructure/test_audit_replay.py` holds it to that), at a
fraction of the cost: the state is decoded once by msgspec, repeated ids (a session's, an
author's) become one `UUID` object each, and a sealed field's key is looked up once per key
and read, straight from the key store's file (never from a cache another process's erasure
may not have reached yet).

Projectors read ids and times only to store them as text, so the decoder can leave them in
their stored form (`text_ids=True, text_times=True`, ADR-046): an id becomes its canonical text
once per read (`str(UUID)` of it, without a `UUID` object) and a time stays the ISO text it was
stored as (`datetime.isoformat()` of it), which `str()` and `projections.projector.iso` pass
through. An audit replay keeps times as `datetime` but takes ids as text (`text_ids=True`): it
shows them as text, and JSON writes a `UUID` as that same text."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol
from uuid import UUID

import msgspec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import ApplicationRecorder, TranscodingNotRegisteredError
from eventsourcing.sqlite import SQLiteApplicationRecorder
from eventsourcing.utils import resolve_topic

from infrastructure.storage.event_encoding import _uuid_from_hex
from infrastructure.storage.sealing import PERSONAL, PREFIX, DataKeys, open_personal_fields, open_sealed

_decode_json = msgspec.json.Decoder().decode

StoredRow = tuple[int, Any, int, str, bytes]
"""(position, originator id as stored: hex text on SQLite, a UUID on PostgreSQL, version, topic, state)."""


class LogReader(Protocol):
    """Stored events in position order, as rows, in batches as large as asked; `topics` and
    `stop` (the last position to read) narrow a scan to what a worker acts on."""

    def rows_after(self, position: int, limit: int, *, topics: Sequence[str] = (), stop: int | None = None) -> list[StoredRow]: ...


class SQLiteLogReader:
    """One SELECT per batch on the recorder's own connection: no `Notification` objects."""

    def __init__(self, recorder: SQLiteApplicationRecorder) -> None:
        self._datastore = recorder.datastore
        self._table = recorder.events_table_name

    def rows_after(self, position: int, limit: int, *, topics: Sequence[str] = (), stop: int | None = None) -> list[StoredRow]:
        where, params = "rowid>?", [position]
        if stop is not None:
            where += " AND rowid<=?"
            params.append(stop)
        if topics:
            where += f" AND topic IN ({','.join('?' * len(topics))})"
            params += topics
        with self._datastore.transaction(commit=False) as cursor:
            cursor.execute(
                f"SELECT rowid, originator_id, originator_version, topic, state FROM {self._table} WHERE {where} ORDER BY rowid LIMIT ?",
                (*params, limit),
            )
            return cursor.fetchall()  # type: ignore[no-any-return]


class RecorderLogReader:
    """Any other recorder (PostgreSQL): its notifications, turned into rows."""

    def __init__(self, recorder: ApplicationRecorder) -> None:
        self._recorder = recorder

    def rows_after(self, position: int, limit: int, *, topics: Sequence[str] = (), stop: int | None = None) -> list[StoredRow]:
        return [
            (n.id, n.originator_id, n.originator_version, n.topic, n.state)
            for n in self._recorder.select_notifications(start=position + 1, limit=limit, stop=stop, topics=topics)
        ]


def log_reader(recorder: ApplicationRecorder) -> LogReader:
    if isinstance(recorder, SQLiteApplicationRecorder):
        return SQLiteLogReader(recorder)
    return RecorderLogReader(recorder)


def canonical_id(text: str) -> str:
    """`str(UUID(text))` for the 32 hex digits the encoder writes, by slicing."""
    if len(text) != 32 or not (text.isascii() and text.isalnum()):
        return str(UUID(text))
    text = text.lower()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


class EventDecoder:
    """Decodes rows for one read (a replay, a batch of projection): keys and ids are remembered
    for its length only. `text_ids`: ids as canonical text; `text_times`: times as their stored
    ISO text. `cipher_of`: how a key is found (default: straight from the key store's file)."""

    def __init__(
        self,
        keys: DataKeys | None,
        *,
        text_ids: bool = False,
        text_times: bool = False,
        cipher_of: Callable[[str], AESGCM | None] | None = None,
    ) -> None:
        self._keys = keys
        self._ciphers: dict[str, AESGCM | None] = {}
        self._uuids: dict[Any, Any] = {}
        self._classes: dict[str, tuple[type, int]] = {}
        self._text_ids, self._text_times = text_ids, text_times
        self._lookup = cipher_of if cipher_of is not None else (keys.stored_cipher if keys is not None else None)

    def decode(self, originator_id: str | UUID, version: int, topic: str, state: bytes) -> Any:
        known = self._classes.get(topic)
        if known is None:
            cls = resolve_topic(topic)
            known = self._classes[topic] = (cls, getattr(cls, "class_version", 1))
        cls, class_version = known
        uuids = self._uuids
        fields: dict[str, Any] = _decode_json(state)
        for key, value in fields.items():
            kind = type(value)
            if kind is dict:
                tag = value.get("_type_") if len(value) == 2 and "_data_" in value else None
                if tag == "uuid_hex":  # the common cases inline: an id (seen before, mostly), a time
                    uuid = uuids.get(value["_data_"])
                    fields[key] = uuid if uuid is not None else self._uuid(value["_data_"])
                elif tag == "datetime_iso":
                    fields[key] = value["_data_"] if self._text_times else datetime.fromisoformat(value["_data_"])
                else:
                    fields[key] = self._untag(value)
            elif kind is list:
                fields[key] = self._untag(value)
        fields["originator_id"] = self._uuid(originator_id)
        fields["originator_version"] = version
        from_version = fields.pop("class_version", 1)
        while from_version < class_version:
            getattr(cls, f"upcast_v{from_version}_v{from_version + 1}")(fields)
            from_version += 1
        event = object.__new__(cls)
        object.__setattr__(event, "__dict__", fields)
        personal = PERSONAL.get(cls)
        if personal is not None:
            if "sources" in fields:  # a reply that may quote others: as many layers as it quotes
                open_personal_fields(event, self._cipher)
            else:  # one layer, what `open_personal_fields` does when nothing is quoted
                for name in personal[1]:
                    value = fields.get(name)
                    if type(value) is str and value.startswith(PREFIX):
                        value = open_sealed(value, self._cipher)
                    fields[name] = value
        return event

    def _cipher(self, subject: str) -> AESGCM | None:
        if subject in self._ciphers:
            return self._ciphers[subject]
        if self._lookup is None:
            raise RuntimeError("a sealed field cannot be read without the key store")
        cipher = self._ciphers[subject] = self._lookup(subject)
        return cipher

    def _uuid(self, text: str | UUID) -> Any:
        uuid = self._uuids.get(text)
        if uuid is None:
            if self._text_ids:
                uuid = str(text) if isinstance(text, UUID) else canonical_id(text)
            else:
                uuid = text if isinstance(text, UUID) else _uuid_from_hex(text)  # PostgreSQL's uuid column
            self._uuids[text] = uuid
        return uuid

    def _untag(self, value: Any) -> Any:
        """The transcoder's tags (`{"_type_": …, "_data_": …}`) turned back into values."""
        if type(value) is list:
            return [self._untag(item) if type(item) in (dict, list) else item for item in value]
        kind = value.get("_type_") if len(value) == 2 and "_data_" in value else None
        if kind == "uuid_hex":
            return self._uuid(value["_data_"])
        if kind == "datetime_iso":
            return value["_data_"] if self._text_times else datetime.fromisoformat(value["_data_"])
        if kind == "decimal_str":
            return Decimal(value["_data_"])
        if kind is not None:
            raise TranscodingNotRegisteredError(f"Data serialized with name {kind!r} is not deserializable.")
        return {key: self._untag(item) if type(item) in (dict, list) else item for key, item in value.items()}
