"""Properties that must hold for every input, checked with hypothesis: the event transcoder and
the sealing of personal fields round-trip, filenames are cleaned safely, cursors are positions."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import pytest
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from hypothesis import given, settings
from hypothesis import strategies as st
from litestar.exceptions import ValidationException

from domain.aggregate import InvalidValue
from domain.document import clean_filename
from infrastructure.storage.event_encoding import MsgspecTranscoder
from infrastructure.web.pagination import cursor_position

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.text()
    | st.uuids()
    | st.datetimes(timezones=st.just(UTC))
    | st.decimals(allow_nan=False, allow_infinity=False, places=3),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(string.ascii_letters, min_size=1, max_size=8), children, max_size=4),
    max_leaves=20,
)
states = st.dictionaries(st.text(string.ascii_letters + "_", min_size=1, max_size=12), json_values, max_size=6)


def reference() -> JSONTranscoder:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    return transcoder


@settings(max_examples=300, deadline=None)
@given(states)
def test_the_transcoder_round_trips_and_agrees_with_eventsourcings(state):
    ours, theirs = MsgspecTranscoder(), reference()
    assert ours.decode(ours.encode(state)) == state
    assert theirs.decode(ours.encode(state)) == state
    assert ours.decode(theirs.encode(state)) == state


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_the_transcoder_refuses_garbage_with_an_error_not_a_crash(data):
    try:
        MsgspecTranscoder().decode(data)
    except (ValueError, TypeError, KeyError, RecursionError, UnicodeDecodeError, LookupError) as error:
        assert not isinstance(error, SystemError)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=400))
def test_a_cleaned_filename_is_safe_to_store_and_show(name):
    try:
        cleaned = clean_filename(name)
    except InvalidValue:
        return
    assert cleaned and not cleaned.startswith((".", " ")) and "/" not in cleaned and "\\" not in cleaned
    assert len(cleaned.encode()) <= 255 and cleaned == clean_filename(cleaned)
    assert not any(ord(c) < 32 for c in cleaned)


@given(st.text(max_size=30))
def test_a_cursor_is_ascii_digits_or_a_400(raw):
    try:
        position = cursor_position(raw)
    except ValidationException:
        assert raw and not (raw.isascii() and raw.isdigit() and len(raw) <= 18)
        return
    assert position == (int(raw) if raw else 0)


@given(st.uuids(), st.datetimes(timezones=st.just(UTC)))
def test_uuids_and_times_keep_their_exact_values(value: UUID, moment: datetime):
    transcoder = MsgspecTranscoder()
    state = transcoder.decode(transcoder.encode({"id": value, "at": moment, "amount": Decimal("1.10")}))
    assert state == {"id": value, "at": moment, "amount": Decimal("1.10")}


@pytest.mark.parametrize("name", ["../../etc/passwd", ".hidden", "a\x00b", "con\u202eexe.txt", "..\\..\\boot.ini"])
def test_known_hostile_names(name):
    try:
        cleaned = clean_filename(name)
    except InvalidValue:
        return
    assert "/" not in cleaned and "\\" not in cleaned and not cleaned.startswith(".")
    assert "\x00" not in cleaned and "\u202e" not in cleaned
