"""The msgspec transcoder stores exactly what eventsourcing's JSON transcoder stores."""

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    TranscodingNotRegisteredError,
    UUIDAsHex,
)

from infrastructure.storage.event_encoding import MsgspecTranscoder


@pytest.fixture
def reference() -> JSONTranscoder:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


STATES = [
    {
        "timestamp": datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC),
        "session_id": uuid4(),
        "content": 'héllo "world" \n',
        "client_message_id": None,
        "assistant": True,
        "n": 3,
        "ratio": 0.5,
    },
    {"nested": {"ids": [uuid4(), uuid4()], "amount": Decimal("1.10")}, "empty": {}, "items": []},
]


@pytest.mark.parametrize("state", STATES)
def test_both_transcoders_read_each_others_bytes(reference, state):
    ours = MsgspecTranscoder()
    assert ours.decode(reference.encode(state)) == state
    assert reference.decode(ours.encode(state)) == state


def test_unknown_types_are_refused_both_ways():
    with pytest.raises(TranscodingNotRegisteredError):
        MsgspecTranscoder().encode({"x": object()})
    with pytest.raises(TranscodingNotRegisteredError):
        MsgspecTranscoder().decode(b'{"x": {"_type_": "mystery", "_data_": 1}}')


def test_a_uuid_written_in_another_form_still_decodes_and_a_malformed_one_is_refused():
    """The fast path takes the encoder's 32 hex digits; anything else goes to `uuid.UUID`'s own
    parser, so what eventsourcing's transcoder accepts or refuses, this one does too."""
    transcoder, value = MsgspecTranscoder(), uuid4()
    for written in (value.hex, str(value), "{" + str(value).upper() + "}"):
        state = transcoder.decode(b'{"id":{"_type_":"uuid_hex","_data_":"%s"}}' % written.encode())
        assert state["id"] == value and str(state["id"]) == str(value)
    for malformed in ("-" + value.hex[1:], "_" + value.hex[1:], "zz" + value.hex[2:], value.hex[:-1]):
        with pytest.raises(ValueError):
            transcoder.decode(b'{"id":{"_type_":"uuid_hex","_data_":"%s"}}' % malformed.encode())
