"""The wire shape of every stream frame, as msgspec types: a tagged union on `type`.

The projectors build frames as `Frame(position, type, session_id, data)`; these types say what
each `data` holds. `chronicle frame-schema` prints them as a JSON Schema (committed as
`web/frames.schema.json`, checked in the suite) so clients can be typed from it, and the
end-to-end tests decode the frames a real server sends with `decode_any_frame`, so the schema
cannot drift from what is sent."""

from __future__ import annotations

from typing import Any, Literal, Union

import msgspec


class _Data(msgspec.Struct, forbid_unknown_fields=True):
    pass


class SessionStartedData(_Data):
    title: str
    owner_id: str
    assistant: bool
    created_at: str


class TitleData(_Data):
    title: str


class AssistantData(_Data):
    assistant: bool


class MemberData(_Data):
    user_id: str


class EmptyData(_Data):
    pass


class ReadData(_Data):
    position: int


class MessagePostedData(_Data):
    id: str
    session_id: str
    author_id: str
    role: str
    content: str | None
    created_at: str
    position: int
    client_message_id: str | None
    version: int


class MessageEditedData(_Data):
    id: str
    content: str | None
    version: int
    edited_at: str


class IdData(_Data):
    id: str


class ReplyCompletedData(_Data):
    id: str
    reply_id: str
    session_id: str
    reply_to: str
    author_id: Literal["assistant"]
    role: Literal["assistant"]
    content: str | None
    status: Literal["completed", "cancelled"]
    provider: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: int
    sources: list[dict[str, Any]]
    """`{"kind": "message", "session_id", "message_id", …}`, `{"kind": "document", "document_id",
    "passage", …}`, or `{"kind": "context", …}` (whose words a model saw; not a citation)."""
    created_at: str
    position: int


class ReplyFailedData(_Data):
    reply_id: str
    reply_to: str
    reason: Literal["provider_error", "timeout", "invalid_response", "quota_exceeded"]
    detail: str | None


class DocumentByData(_Data):
    document_id: str
    by: str


class DocumentUploadedData(_Data):
    id: str
    filename: str
    media_type: str
    size: int
    sha256: str
    created_at: str


class ConversionData(_Data):
    id: str
    document_id: str
    target: str


class ConversionCompletedData(_Data):
    id: str
    document_id: str
    target: str
    size: int
    pages: int | None
    characters: int
    duration_ms: int


class ConversionFailedData(_Data):
    id: str
    document_id: str
    target: str
    reason: str
    detail: str | None


def _stored(tag: str, data: type[_Data]) -> type[msgspec.Struct]:
    """A stored (positioned, replayable) frame whose `type` is `tag`."""
    return msgspec.defstruct(
        "Frame_" + tag.replace(".", "_"),
        [("position", int), ("session_id", str | None), ("data", data)],
        tag=tag,
        tag_field="type",
        forbid_unknown_fields=True,
        kw_only=True,
        module=__name__,
    )


STORED: dict[str, type[_Data]] = {
    "session.started": SessionStartedData,
    "session.renamed": TitleData,
    "session.assistant_changed": AssistantData,
    "member.added": MemberData,
    "member.removed": MemberData,
    "session.archived": EmptyData,
    "session.read": ReadData,
    "message.posted": MessagePostedData,
    "message.edited": MessageEditedData,
    "message.deleted": IdData,
    "reply.completed": ReplyCompletedData,
    "reply.failed": ReplyFailedData,
    "document.attached": DocumentByData,
    "document.detached": DocumentByData,
    "document.uploaded": DocumentUploadedData,
    "document.deleted": IdData,
    "conversion.pending": ConversionData,
    "conversion.running": ConversionData,
    "conversion.completed": ConversionCompletedData,
    "conversion.failed": ConversionFailedData,
}
STORED_FRAMES = tuple(_stored(tag, data) for tag, data in STORED.items())


class ReplyStarted(msgspec.Struct, tag="reply.started", tag_field="type", forbid_unknown_fields=True):
    session_id: str
    reply_id: str
    reply_to: str


class ReplyDelta(msgspec.Struct, tag="reply.delta", tag_field="type", forbid_unknown_fields=True):
    session_id: str
    reply_id: str
    seq: int
    delta: str


class Typing(msgspec.Struct, tag="typing", tag_field="type", forbid_unknown_fields=True):
    session_id: str
    user_id: str
    display_name: str


class UserErased(msgspec.Struct, tag="user.erased", tag_field="type", forbid_unknown_fields=True):
    session_id: str
    user_id: str


class Pong(msgspec.Struct, tag="pong", tag_field="type", forbid_unknown_fields=True):
    pass


EPHEMERAL_FRAMES = (ReplyStarted, ReplyDelta, Typing, UserErased, Pong)


def _union() -> Any:
    """Every frame type as one tagged union (built from the tuples above)."""
    return Union[tuple(STORED_FRAMES + EPHEMERAL_FRAMES)]  # noqa: UP007 - a Union built at run time


_decoder = msgspec.json.Decoder(_union())


def decode_any_frame(body: bytes | str) -> Any:
    """Decodes a frame as the schema says it must be; raises `msgspec.ValidationError` otherwise."""
    return _decoder.decode(body)


def frame_schema() -> dict[str, Any]:
    """The JSON Schema of every frame a stream may send."""
    return msgspec.json.schema(_union())
