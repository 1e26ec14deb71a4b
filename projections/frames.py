"""Live-stream frames: what WebSocket subscribers receive, one per stored event that changes
a session. Frames are kept in read tables (for replay from a position) and published on
channels after the transaction that stored them commits (for live delivery)."""

from __future__ import annotations

from typing import Any

import msgspec


class Frame(msgspec.Struct):
    """Encoded with `position` first, so a subscriber reads it without decoding the frame.
    `session_id` is null for frames about a user's documents."""

    position: int
    type: str
    session_id: str | None
    data: dict[str, Any]


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Frame).decode


def encode_frame(frame: Frame) -> bytes:
    return _encode(frame)


def decode_frame(body: bytes) -> Frame:
    return _decode(body)


POSITIONED = b'{"position":'
_POSITION_AT = len(POSITIONED)


def frame_position(body: bytes) -> int:
    return int(body[_POSITION_AT : body.index(b",", _POSITION_AT)])


def session_channel(session_id: str) -> str:
    return f"session:{session_id}"


def user_channel(user_id: str) -> str:
    return f"user:{user_id}"
