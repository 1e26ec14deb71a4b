"""Use cases of chat sessions and their messages."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from application.accounts import UserNotFound
from application.quotas import consume_quota
from application.unit_of_work import RetryAfterSave, UnitOfWork
from domain.chat_session import ChatSession, MessageNotFound, SessionNotFound
from domain.message import Message, message_id_for
from domain.user import User


@dataclass(frozen=True)
class StartSession:
    owner_id: UUID
    title: str
    assistant: bool = True
    retention_days: int | None = None


@dataclass(frozen=True)
class UpdateSession:
    session_id: UUID
    by: UUID
    title: str | None = None
    assistant: bool | None = None


@dataclass(frozen=True)
class SetRetention:
    session_id: UUID
    by: UUID
    retention_days: int | None


@dataclass(frozen=True)
class ExpireContent:
    session_id: UUID
    before: str


@dataclass(frozen=True)
class ArchiveSession:
    session_id: UUID
    by: UUID


@dataclass(frozen=True)
class AddMember:
    session_id: UUID
    by: UUID
    user_id: UUID


@dataclass(frozen=True)
class RemoveMember:
    session_id: UUID
    by: UUID
    user_id: UUID


@dataclass(frozen=True)
class MarkRead:
    session_id: UUID
    user_id: UUID
    position: int


@dataclass(frozen=True)
class PostMessage:
    session_id: UUID
    author_id: UUID
    content: str
    client_message_id: str | None = None
    role: str = "user"


@dataclass(frozen=True)
class EditMessage:
    session_id: UUID
    message_id: UUID
    by: UUID
    content: str


@dataclass(frozen=True)
class DeleteMessage:
    session_id: UUID
    message_id: UUID
    by: UUID


@dataclass(frozen=True)
class PostedMessage:
    """`first_position` is set when the post repeated an earlier one (same client message
    id): the answer is the first message, and nothing was appended."""

    message: Message
    first_position: int | None = None


def _session(uow: UnitOfWork, session_id: UUID) -> ChatSession:
    return uow.get(ChatSession, session_id, SessionNotFound())


def start_session(uow: UnitOfWork, cmd: StartSession) -> ChatSession:
    session = ChatSession.start(cmd.owner_id, cmd.title, cmd.assistant, cmd.retention_days)
    uow.add(session)
    return session


def update_session(uow: UnitOfWork, cmd: UpdateSession) -> ChatSession:
    session = _session(uow, cmd.session_id)
    session.require_member(cmd.by)
    if cmd.title is not None:
        session.rename(cmd.by, cmd.title)
    if cmd.assistant is not None:
        session.set_assistant(cmd.by, cmd.assistant)
    return session


def set_retention(uow: UnitOfWork, cmd: SetRetention) -> ChatSession:
    session = _session(uow, cmd.session_id)
    session.set_retention(cmd.by, cmd.retention_days)
    return session


def expire_content(uow: UnitOfWork, cmd: ExpireContent) -> ChatSession:
    session = _session(uow, cmd.session_id)
    session.expire_content(cmd.before)
    return session


def archive_session(uow: UnitOfWork, cmd: ArchiveSession) -> ChatSession:
    session = _session(uow, cmd.session_id)
    session.archive(cmd.by)
    return session


def add_member(uow: UnitOfWork, cmd: AddMember) -> ChatSession:
    session = _session(uow, cmd.session_id)
    session.require_member(cmd.by)
    if uow.find(User, cmd.user_id) is None:
        raise UserNotFound()
    session.add_member(cmd.by, cmd.user_id)
    return session


def remove_member(uow: UnitOfWork, cmd: RemoveMember) -> ChatSession:
    session = _session(uow, cmd.session_id)
    session.remove_member(cmd.by, cmd.user_id)
    return session


def mark_read(uow: UnitOfWork, cmd: MarkRead) -> bool:
    return _session(uow, cmd.session_id).mark_read(cmd.user_id, cmd.position)


def post_message(uow: UnitOfWork, cmd: PostMessage) -> PostedMessage:
    session = _session(uow, cmd.session_id)
    if cmd.client_message_id is not None:
        session.require_member(cmd.author_id)
        earlier = uow.find(Message, message_id_for(session.id, cmd.author_id, cmd.client_message_id))
        if earlier is not None:
            if earlier.pending_events:
                raise RetryAfterSave()
            return PostedMessage(earlier, uow.event_log.position_of(earlier.id, 1))
    message = session.post_message(cmd.author_id, cmd.content, cmd.role, cmd.client_message_id)
    consume_quota(uow, cmd.author_id, "messages_per_day")
    uow.add(message)
    return PostedMessage(message)


def _message(uow: UnitOfWork, session: ChatSession, by: UUID, message_id: UUID) -> Message:
    session.require_member(by)
    message = uow.get(Message, message_id, MessageNotFound())
    if message.session_id != session.id:
        raise MessageNotFound()
    return message


def edit_message(uow: UnitOfWork, cmd: EditMessage) -> Message:
    session = _session(uow, cmd.session_id)
    message = _message(uow, session, cmd.by, cmd.message_id)
    session.edit_message(message, cmd.by, cmd.content)
    return message


def delete_message(uow: UnitOfWork, cmd: DeleteMessage) -> Message:
    session = _session(uow, cmd.session_id)
    message = _message(uow, session, cmd.by, cmd.message_id)
    session.delete_message(message, cmd.by)
    return message


HANDLERS = {
    StartSession: start_session,
    UpdateSession: update_session,
    ArchiveSession: archive_session,
    SetRetention: set_retention,
    ExpireContent: expire_content,
    AddMember: add_member,
    RemoveMember: remove_member,
    MarkRead: mark_read,
    PostMessage: post_message,
    EditMessage: edit_message,
    DeleteMessage: delete_message,
}
