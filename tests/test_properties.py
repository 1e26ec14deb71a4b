"""Properties that must hold for every input, checked with hypothesis: the event transcoder and
the sealing of personal fields round-trip, filenames are cleaned safely, cursors are positions."""

from __future__ import annotations

import string
from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

import anyio
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


# The multipart path of uploads: whatever bytes arrive, in whatever chunks, the parser either
# yields the file and fields it was sent or refuses with a 4xx; it never fails otherwise and
# never leaves a file behind in `incoming/`.

BOUNDARY = b"fuzzboundary"


def _form(parts: list[tuple[bytes, bytes | None, bytes]]) -> bytes:
    body = b""
    for name, filename, value in parts:
        disposition = b'form-data; name="' + name + b'"' + (b'; filename="' + filename + b'"' if filename is not None else b"")
        body += b"--" + BOUNDARY + b"\r\nContent-Disposition: " + disposition + b"\r\n\r\n" + value + b"\r\n"
    return body + b"--" + BOUNDARY + b"--\r\n"


field_names = st.sampled_from([b"file", b"session_id", b"other", b""])
forms = st.lists(st.tuples(field_names, st.none() | st.binary(max_size=20), st.binary(max_size=300)), max_size=4).map(_form)
mangled = st.one_of(forms, st.binary(max_size=600), forms.flatmap(lambda f: st.integers(0, len(f)).map(lambda cut: f[:cut])))


def _chunks(data: bytes, sizes: list[int]) -> list[bytes]:
    chunks, start = [], 0
    for size in sizes:
        chunks.append(data[start : start + size])
        start += size
    return [*chunks, data[start:]]


@settings(max_examples=300, deadline=None)
@given(mangled, st.lists(st.integers(1, 64), max_size=8), st.integers(0, 400))
def test_an_upload_body_yields_its_parts_or_a_client_error(tmp_path_factory, body, sizes, limit):
    from litestar.exceptions import HTTPException

    from infrastructure.storage.blob_store import BlobStore
    from infrastructure.web.uploads import receive_upload

    blobs = BlobStore(tmp_path_factory.mktemp("blobs"))

    async def stream():
        for chunk in _chunks(body, sizes):
            yield chunk

    async def receive():
        return await receive_upload(stream(), BOUNDARY, blobs, limit)

    try:
        upload = anyio.run(receive)
    except HTTPException as refused:
        assert 400 <= refused.status_code < 500
        assert list((blobs.root / "incoming").iterdir()) == []
        return
    assert upload.incoming.size <= limit
    assert set(upload.fields) <= {"session_id"}
    upload.incoming.discard()


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=2000), st.text(max_size=40), st.lists(st.integers(1, 97), max_size=12))
def test_a_well_formed_upload_arrives_whole_however_it_is_chunked(tmp_path_factory, content, session_id, sizes):
    import hashlib

    from infrastructure.storage.blob_store import BlobStore
    from infrastructure.web.uploads import receive_upload

    blobs = BlobStore(tmp_path_factory.mktemp("blobs"))
    value = session_id.replace("\r", "").replace("\n", "").encode()
    body = _form([(b"session_id", None, value), (b"file", b"a.txt", content)])
    if BOUNDARY in content:
        return

    async def stream():
        for chunk in _chunks(body, sizes):
            yield chunk

    async def receive():
        return await receive_upload(stream(), BOUNDARY, blobs, len(content))

    upload = anyio.run(receive)
    assert (upload.filename, upload.incoming.size, upload.incoming.sha256) == ("a.txt", len(content), hashlib.sha256(content).hexdigest())
    assert upload.fields == {"session_id": value.decode("utf-8", errors="replace").strip()}
    upload.incoming.discard()
