"""A session as its events made it, up to a chosen moment: title, members, messages (with every
edit and deletion), attached documents and their conversions, and each step that led there —
who did it, when, under which correlation id, at which position. Built from events only, so an
auditor sees what happened, not what a read model says.

Records (a message, a document, a conversion, a step) are never changed once stored: a change
stores a new record. So `fork` copies only the containers, which is what makes a snapshot of
the fold cheap to keep and to start from."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.aggregate import ChronicleAggregate
from domain.assistant_reply import AssistantReply, AssistantReplyFailure
from domain.chat_session import ChatSession
from domain.conversion import Conversion
from domain.document import Document
from domain.message import Message

_ENVELOPE = {"originator_id", "originator_version", "timestamp", "actor_id", "correlation_id", "originator_topic"}


def event_data(event: Any) -> dict[str, Any]:
    """An event's own fields (the envelope left out), secrets redacted. Values keep the types they
    were decoded with (an id as a `UUID` or, in a replay, its text; a time as a `datetime`): the
    wire encoder (msgspec) writes either as the same string."""
    data: dict[str, Any] = vars(event).copy()
    for key in _ENVELOPE:
        data.pop(key, None)
    if "password_hash" in data:
        data["password_hash"] = "[redacted]"
    return data


def event_type(event: Any) -> str:
    return type(event).__name__


@dataclass(slots=True)
class Step:
    position: int
    at: datetime
    actor_id: str
    correlation_id: str
    type: str
    subject_id: str
    data: dict[str, Any]


@dataclass
class SessionTimeline:
    session_id: UUID
    title: str | None = None
    owner_id: str | None = None
    assistant: bool | None = None
    archived: bool = False
    members: dict[str, datetime] = field(default_factory=dict)
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    conversions: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)
    _uploads: dict[str, dict[str, Any]] = field(default_factory=dict)

    def apply(self, event: Any, position: int) -> None:
        at = event.timestamp
        subject = str(event.originator_id)
        kind = type(event)
        if kind is Document.DocumentUploaded:
            self._uploads[subject] = {
                "id": subject,
                "filename": event.filename,
                "media_type": event.media_type,
                "size": event.size,
                "sha256": event.sha256,
                "owner_id": str(event.owner_id),
            }
            return  # a fact about the document, not the session, until it is attached
        if kind in (Document.DocumentAttached, Document.DocumentDetached) and str(event.session_id) != str(self.session_id):
            return  # the same document in another session
        if (
            isinstance(event, Conversion.Event)
            and str(event.originator_id) not in self.conversions
            and kind is not Conversion.ConversionRequested
        ):
            return
        handler = _HANDLERS.get(kind)
        if handler is not None:
            handler(self, event, position, at)
        self.steps.append(Step(position, at, event.actor_id, event.correlation_id, event_type(event), subject, event_data(event)))

    def view(self) -> dict[str, Any]:
        """The session's state; its records are shared with cached snapshots: read, never change them."""
        return {
            "session_id": str(self.session_id),
            "title": self.title,
            "owner_id": self.owner_id,
            "assistant": self.assistant,
            "archived": self.archived,
            "members": [{"user_id": u, "since": since} for u, since in self.members.items()],
            "messages": sorted(self.messages.values(), key=lambda m: m["position"]),
            "documents": list(self.documents.values()),
            "conversions": list(self.conversions.values()),
        }

    def fork(self) -> SessionTimeline:
        """An independent copy that shares the (never changed) records with this one."""
        return SessionTimeline(
            self.session_id,
            self.title,
            self.owner_id,
            self.assistant,
            self.archived,
            dict(self.members),
            dict(self.messages),
            dict(self.documents),
            dict(self.conversions),
            list(self.steps),
            dict(self._uploads),
        )

    def _started(self, e: ChatSession.SessionStarted, position: int, at: datetime) -> None:
        self.title, self.owner_id, self.assistant = e.title, str(e.owner_id), e.assistant
        self.members[str(e.owner_id)] = at

    def _renamed(self, e: ChatSession.SessionRenamed, position: int, at: datetime) -> None:
        self.title = e.title

    def _assistant(self, e: ChatSession.AssistantSettingChanged, position: int, at: datetime) -> None:
        self.assistant = e.assistant

    def _member_added(self, e: ChatSession.MemberAdded, position: int, at: datetime) -> None:
        self.members.setdefault(str(e.user_id), at)

    def _member_removed(self, e: ChatSession.MemberRemoved, position: int, at: datetime) -> None:
        self.members.pop(str(e.user_id), None)

    def _archived(self, e: ChatSession.SessionArchived, position: int, at: datetime) -> None:
        self.archived = True

    def _posted(self, e: Message.MessagePosted, position: int, at: datetime) -> None:
        message_id = str(e.originator_id)
        self.messages[message_id] = {
            "id": message_id,
            "author_id": str(e.author_id),
            "role": e.role,
            "content": e.content,
            "posted_at": at,
            "position": position,
            "version": 1,
            "edited_at": None,
            "deleted": False,
        }

    def _edited(self, e: Message.MessageEdited, position: int, at: datetime) -> None:
        message = self.messages.get(str(e.originator_id))
        if message is not None:
            self.messages[message["id"]] = {**message, "content": e.content, "version": e.originator_version, "edited_at": at}

    def _deleted(self, e: Message.MessageDeleted, position: int, at: datetime) -> None:
        message = self.messages.get(str(e.originator_id))
        if message is not None:
            self.messages[message["id"]] = {**message, "content": None, "deleted": True}

    def _replied(self, e: AssistantReply.AssistantReplyCompleted, position: int, at: datetime) -> None:
        self.messages[str(e.originator_id)] = {
            "id": str(e.originator_id),
            "author_id": "assistant",
            "role": "assistant",
            "content": e.content,
            "posted_at": at,
            "position": position,
            "version": 1,
            "edited_at": None,
            "deleted": False,
            "reply_to": str(e.message_id),
            "status": e.status,
        }

    def _attached(self, e: Document.DocumentAttached, position: int, at: datetime) -> None:
        document_id = str(e.originator_id)
        self.documents[document_id] = {**self._uploads.get(document_id, {"id": document_id}), "attached_at": at}

    def _detached(self, e: Document.DocumentDetached, position: int, at: datetime) -> None:
        self.documents.pop(str(e.originator_id), None)

    def _document_deleted(self, e: Document.DocumentDeleted, position: int, at: datetime) -> None:
        document_id = str(e.originator_id)
        self.documents.pop(document_id, None)
        for conversion_id, conversion in list(self.conversions.items()):
            if conversion["document_id"] == document_id:
                self.conversions[conversion_id] = {**conversion, "document_deleted": True}

    def _conversion_requested(self, e: Conversion.ConversionRequested, position: int, at: datetime) -> None:
        self.conversions[str(e.originator_id)] = {
            "id": str(e.originator_id),
            "document_id": str(e.document_id),
            "target": e.target,
            "status": "pending",
            "requested_at": at,
        }

    def _conversion_changed(self, e: Conversion.Event, position: int, at: datetime) -> None:
        conversion_id = str(e.originator_id)
        conversion = self.conversions[conversion_id]
        if type(e) is Conversion.ConversionRetried:
            conversion = {**conversion, "status": "pending", "reason": None}
        elif type(e) is Conversion.ConversionStarted:
            conversion = {**conversion, "status": "running"}
        elif type(e) is Conversion.ConversionCompleted:
            completed = {"status": "completed", "completed_at": at, "output_sha256": e.output_sha256, "characters": e.characters}
            conversion = {**conversion, **completed}
        elif type(e) is Conversion.ConversionFailed:
            conversion = {**conversion, "status": "failed", "completed_at": at, "reason": e.reason}
        self.conversions[conversion_id] = conversion


TimelineHandler = Callable[[SessionTimeline, Any, int, datetime], None]
"""Applies one kind of event to a timeline: (timeline, event, position, time of the event)."""

_HANDLERS: dict[type[ChronicleAggregate.Event], TimelineHandler] = {
    ChatSession.SessionStarted: SessionTimeline._started,
    ChatSession.SessionRenamed: SessionTimeline._renamed,
    ChatSession.AssistantSettingChanged: SessionTimeline._assistant,
    ChatSession.MemberAdded: SessionTimeline._member_added,
    ChatSession.MemberRemoved: SessionTimeline._member_removed,
    ChatSession.SessionArchived: SessionTimeline._archived,
    Message.MessagePosted: SessionTimeline._posted,
    Message.MessageEdited: SessionTimeline._edited,
    Message.MessageDeleted: SessionTimeline._deleted,
    AssistantReply.AssistantReplyCompleted: SessionTimeline._replied,
    AssistantReplyFailure.AssistantReplyFailed: lambda self, e, position, at: None,
    Document.DocumentAttached: SessionTimeline._attached,
    Document.DocumentDetached: SessionTimeline._detached,
    Document.DocumentDeleted: SessionTimeline._document_deleted,
    Conversion.ConversionRequested: SessionTimeline._conversion_requested,
    Conversion.ConversionRetried: SessionTimeline._conversion_changed,
    Conversion.ConversionStarted: SessionTimeline._conversion_changed,
    Conversion.ConversionCompleted: SessionTimeline._conversion_changed,
    Conversion.ConversionFailed: SessionTimeline._conversion_changed,
}
