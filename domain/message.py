"""Messages: posted once, edited by their author (every version kept), deleted as a fact."""

from __future__ import annotations

from uuid import UUID, uuid5

from eventsourcing.domain import event

from domain.aggregate import ChronicleAggregate, Conflict, Forbidden, InvalidValue
from domain.identity import new_id

MESSAGE_ROLES = ("user", "assistant", "system")
CLIENT_MESSAGE_ID_MAX = 200


class MessageAlreadyDeleted(Conflict):
    def __init__(self) -> None:
        super().__init__("the message was deleted")


def message_id_for(session_id: UUID, author_id: UUID, client_message_id: str | None) -> UUID:
    """A client's retry of the same post maps to the same message id, which makes posting
    idempotent: the event store refuses a second message with that id."""
    if client_message_id is None:
        return new_id()
    return uuid5(session_id, f"{author_id}:{client_message_id}")


class Message(ChronicleAggregate):
    @staticmethod
    def create_id(session_id: UUID, author_id: UUID, client_message_id: str | None) -> UUID:
        return message_id_for(session_id, author_id, client_message_id)

    class MessagePosted(ChronicleAggregate.Created):
        session_id: UUID
        author_id: UUID
        role: str
        content: str
        client_message_id: str | None

    @event(MessagePosted)
    def __init__(
        self,
        session_id: UUID,
        author_id: UUID,
        role: str,
        content: str,
        client_message_id: str | None,
    ) -> None:
        self.session_id = session_id
        self.author_id = author_id
        self.role = role
        self.content = content
        self.client_message_id = client_message_id
        self.deleted = False

    @classmethod
    def post(
        cls,
        session_id: UUID,
        author_id: UUID,
        role: str,
        content: str,
        client_message_id: str | None,
    ) -> Message:
        if role not in MESSAGE_ROLES:
            raise InvalidValue("role", f"role must be one of {', '.join(MESSAGE_ROLES)}")
        if client_message_id is not None and not 1 <= len(client_message_id) <= CLIENT_MESSAGE_ID_MAX:
            raise InvalidValue("client_message_id", f"client_message_id must be 1 to {CLIENT_MESSAGE_ID_MAX} characters")
        return cls(
            session_id=session_id,
            author_id=author_id,
            role=role,
            content=content,
            client_message_id=client_message_id,
        )

    def edit(self, by: UUID, content: str) -> None:
        if by != self.author_id:
            raise Forbidden("only the author may edit a message")
        if self.deleted:
            raise MessageAlreadyDeleted()
        if content != self.content:
            self._edited(session_id=self.session_id, content=content)

    class MessageEdited(ChronicleAggregate.Event):
        session_id: UUID
        content: str

    @event(MessageEdited)
    def _edited(self, session_id: UUID, content: str) -> None:
        self.content = content

    def delete(self, by: UUID, *, by_session_owner: bool) -> None:
        if by != self.author_id and not by_session_owner:
            raise Forbidden("only the author or the session owner may delete a message")
        if not self.deleted:
            self._deleted(session_id=self.session_id)

    class MessageDeleted(ChronicleAggregate.Event):
        session_id: UUID

    @event(MessageDeleted)
    def _deleted(self, session_id: UUID) -> None:
        self.deleted = True
