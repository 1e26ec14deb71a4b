"""Chat sessions: who is in them, what they are called, whether they still take messages."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.aggregate import (
    ChronicleAggregate,
    Conflict,
    Forbidden,
    InvalidValue,
    NotFound,
    require_name,
    require_text,
)
from domain.message import Message

TITLE_MAX = 200
CONTENT_MAX = 32_000


class SessionNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("no such session")


class MessageNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("no such message")


class SessionIsArchived(Conflict):
    def __init__(self) -> None:
        super().__init__("the session is archived")


class OwnerOnly(Forbidden):
    def __init__(self, action: str) -> None:
        super().__init__(f"only the session owner may {action}")


class ChatSession(ChronicleAggregate):
    class SessionStarted(ChronicleAggregate.Created):
        """Version 2 added `retention_days` (a session may be started with its retention
        policy); version 1 events read as sessions without one."""

        class_version = 2
        owner_id: UUID
        title: str
        assistant: bool
        retention_days: int | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["retention_days"] = None

    @event(SessionStarted)
    def __init__(self, owner_id: UUID, title: str, assistant: bool, retention_days: int | None) -> None:
        self.owner_id = owner_id
        self.title = title
        self.assistant = assistant
        self.retention_days = retention_days
        self.members: set[UUID] = {owner_id}
        self.archived = False

    @classmethod
    def start(cls, owner_id: UUID, title: str, assistant: bool = True, retention_days: int | None = None) -> ChatSession:
        return cls(owner_id=owner_id, title=_title(title), assistant=bool(assistant), retention_days=_retention(retention_days))

    def is_member(self, user_id: UUID) -> bool:
        return user_id in self.members

    def require_member(self, user_id: UUID) -> None:
        """Non-members are told the session does not exist: its existence is not leaked."""
        if user_id not in self.members:
            raise SessionNotFound()

    def _require_owner(self, user_id: UUID, action: str) -> None:
        self.require_member(user_id)
        if user_id != self.owner_id:
            raise OwnerOnly(action)

    def _require_open(self) -> None:
        if self.archived:
            raise SessionIsArchived()

    def rename(self, by: UUID, title: str) -> None:
        self._require_owner(by, "rename it")
        self._require_open()
        title = _title(title)
        if title != self.title:
            self._renamed(title=title)

    class SessionRenamed(ChronicleAggregate.Event):
        title: str

    @event(SessionRenamed)
    def _renamed(self, title: str) -> None:
        self.title = title

    def set_assistant(self, by: UUID, assistant: bool) -> None:
        self._require_owner(by, "change the assistant setting")
        self._require_open()
        if bool(assistant) != self.assistant:
            self._assistant_changed(assistant=bool(assistant))

    class AssistantSettingChanged(ChronicleAggregate.Event):
        assistant: bool

    @event(AssistantSettingChanged)
    def _assistant_changed(self, assistant: bool) -> None:
        self.assistant = assistant

    def add_member(self, by: UUID, user_id: UUID) -> None:
        self._require_owner(by, "add members")
        self._require_open()
        if user_id not in self.members:
            self._member_added(user_id=user_id)

    class MemberAdded(ChronicleAggregate.Event):
        user_id: UUID

    @event(MemberAdded)
    def _member_added(self, user_id: UUID) -> None:
        self.members.add(user_id)

    def remove_member(self, by: UUID, user_id: UUID) -> None:
        """The owner removes anyone but themself; a member may leave."""
        self.require_member(by)
        if by != user_id and by != self.owner_id:
            raise OwnerOnly("remove other members")
        if user_id == self.owner_id:
            raise Conflict("the owner cannot leave their own session; archive it instead")
        if user_id not in self.members:
            raise NotFound("no such member")
        self._member_removed(user_id=user_id)

    class MemberRemoved(ChronicleAggregate.Event):
        user_id: UUID

    @event(MemberRemoved)
    def _member_removed(self, user_id: UUID) -> None:
        self.members.discard(user_id)

    @property
    def read_markers(self) -> dict[UUID, int]:
        """How far each member has read: the position of the newest message they have seen."""
        return getattr(self, "_read_markers", {})

    def mark_read(self, user_id: UUID, position: int) -> bool:
        """Records that a member has read up to `position`. Only a marker that moves forward is
        recorded (a client sends one every few seconds at most, not one per message), so
        scrolling back or repeating a marker appends nothing. True when it was recorded."""
        self.require_member(user_id)
        if not isinstance(position, int) or isinstance(position, bool) or position < 0:
            raise InvalidValue("position", "position must be a whole number of at least 0")
        if position <= self.read_markers.get(user_id, 0):
            return False
        self._messages_read(user_id=user_id, position=position)
        return True

    class MessagesRead(ChronicleAggregate.Event):
        user_id: UUID
        position: int

    @event(MessagesRead)
    def _messages_read(self, user_id: UUID, position: int) -> None:
        self._read_markers = {**self.read_markers, user_id: position}

    def set_retention(self, by: UUID, days: int | None) -> None:
        """How many days messages keep their content (None: the global default)."""
        self._require_owner(by, "change how long messages are kept")
        days = _retention(days)
        if days != self.retention_days:
            self._retention_changed(retention_days=days)

    class RetentionChanged(ChronicleAggregate.Event):
        retention_days: int | None

    @event(RetentionChanged)
    def _retention_changed(self, retention_days: int | None) -> None:
        self.retention_days = retention_days

    def expire_content(self, before: str) -> None:
        """Records that content of messages from days before `before` (YYYY-MM-DD) was erased
        by the retention policy; the messages themselves, their authors and times stay."""
        self._content_expired(before=before)

    class ContentExpired(ChronicleAggregate.Event):
        before: str

    @event(ContentExpired)
    def _content_expired(self, before: str) -> None:
        self.expired_before = before

    def archive(self, by: UUID) -> None:
        self._require_owner(by, "archive it")
        if not self.archived:
            self._archived()

    class SessionArchived(ChronicleAggregate.Event):
        pass

    @event(SessionArchived)
    def _archived(self) -> None:
        self.archived = True

    def post_message(self, by: UUID, content: str, role: str = "user", client_message_id: str | None = None) -> Message:
        """A new message in this session. The session itself does not change, so posts
        to one session never contend with each other."""
        self.require_member(by)
        self._require_open()
        return Message.post(
            session_id=self.id,
            author_id=by,
            role=role,
            content=require_text("content", content, max_length=CONTENT_MAX),
            client_message_id=client_message_id,
        )

    def edit_message(self, message: Message, by: UUID, content: str) -> None:
        self._require_message(message, by)
        self._require_open()
        message.edit(by, require_text("content", content, max_length=CONTENT_MAX))

    def delete_message(self, message: Message, by: UUID) -> None:
        self._require_message(message, by)
        message.delete(by, by_session_owner=by == self.owner_id)

    def _require_message(self, message: Message, by: UUID) -> None:
        self.require_member(by)
        if message.session_id != self.id:
            raise MessageNotFound()


def _retention(days: int | None) -> int | None:
    if days is not None and (not isinstance(days, int) or isinstance(days, bool) or days < 1):
        raise InvalidValue("retention_days", "retention_days must be a whole number of days, at least 1, or null")
    return days


def _title(title: str) -> str:
    return require_name("title", title, max_length=TITLE_MAX)
