"""Documents: a file a user uploaded, known by its metadata (the bytes live in the blob store,
addressed by their SHA-256), shared by attaching it to sessions, deleted as a fact."""

from __future__ import annotations

import re
import unicodedata
from uuid import UUID

from eventsourcing.domain import event

from domain.aggregate import ChronicleAggregate, Conflict, Forbidden, InvalidValue, NotFound
from domain.chat_session import ChatSession

FILENAME_MAX_BYTES = 255
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SPACES = re.compile(r"\s+")


class DocumentNotFound(NotFound):
    def __init__(self) -> None:
        super().__init__("no such document")


class DocumentIsDeleted(Conflict):
    def __init__(self) -> None:
        super().__init__("the document was deleted")


def clean_filename(name: str) -> str:
    """The last path component of what the client called the file, without control or
    format characters, separators or leading dots, at most 255 UTF-8 bytes; a name made
    only of such characters becomes "document"."""
    name = unicodedata.normalize("NFC", name or "")
    name = re.split(r"[/\\]", name)[-1]
    name = "".join(" " if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in name)
    name = _SPACES.sub(" ", name)
    while name != (name := name.strip(" ").lstrip(".")):
        pass
    while len(name.encode()) > FILENAME_MAX_BYTES:
        stem, dot, ext = name.rpartition(".")
        name = (stem[:-1] + dot + ext) if dot and len(ext) < 16 and stem else name[:-1]
    return name or "document"


class Document(ChronicleAggregate):
    class DocumentUploaded(ChronicleAggregate.Created):
        owner_id: UUID
        filename: str
        media_type: str
        size: int
        sha256: str

    @event(DocumentUploaded)
    def __init__(self, owner_id: UUID, filename: str, media_type: str, size: int, sha256: str) -> None:
        self.owner_id = owner_id
        self.filename = filename
        self.media_type = media_type
        self.size = size
        self.sha256 = sha256
        self.sessions: set[UUID] = set()
        self.deleted = False

    @classmethod
    def upload(cls, owner_id: UUID, filename: str, media_type: str, size: int, sha256: str) -> Document:
        if not isinstance(size, int) or size <= 0:
            raise InvalidValue("file", "the file is empty")
        if not _SHA256.fullmatch(sha256):
            raise InvalidValue("sha256", "sha256 must be 64 lowercase hexadecimal digits")
        return cls(owner_id=owner_id, filename=clean_filename(filename), media_type=media_type, size=size, sha256=sha256)

    def can_read(self, user_id: UUID, sessions: list[ChatSession]) -> bool:
        """The owner, and members of the sessions it is attached to (given as `sessions`)."""
        if self.deleted:
            return False
        return user_id == self.owner_id or any(s.id in self.sessions and s.is_member(user_id) for s in sessions)

    def require_owner(self, user_id: UUID, action: str) -> None:
        if user_id != self.owner_id:
            raise Forbidden(f"only the document's owner may {action}")

    def attach(self, by: UUID, session: ChatSession) -> None:
        """The owner shares the document with a session they are a member of."""
        session.require_member(by)
        self.require_owner(by, "attach it")
        self._require_present()
        if session.archived:
            raise Conflict("the session is archived")
        if session.id not in self.sessions:
            self._attached(session_id=session.id)

    class DocumentAttached(ChronicleAggregate.Event):
        session_id: UUID

    @event(DocumentAttached)
    def _attached(self, session_id: UUID) -> None:
        self.sessions.add(session_id)

    def detach(self, by: UUID, session: ChatSession) -> None:
        """The document's owner (member of the session or not) or the session's owner takes
        it out of the session."""
        if by != self.owner_id:
            session.require_member(by)
            if by != session.owner_id:
                raise Forbidden("only the document's owner or the session's owner may detach it")
        if session.id not in self.sessions:
            raise NotFound("the document is not attached to this session")
        self._detached(session_id=session.id)

    class DocumentDetached(ChronicleAggregate.Event):
        session_id: UUID

    @event(DocumentDetached)
    def _detached(self, session_id: UUID) -> None:
        self.sessions.discard(session_id)

    def delete(self, by: UUID) -> None:
        self.require_owner(by, "delete it")
        self._require_present()
        self._deleted(sha256=self.sha256, session_ids=sorted(self.sessions, key=str))

    class DocumentDeleted(ChronicleAggregate.Event):
        sha256: str
        session_ids: list[UUID]

    @event(DocumentDeleted)
    def _deleted(self, sha256: str, session_ids: list[UUID]) -> None:
        self.deleted = True
        self.sessions = set()

    def _require_present(self) -> None:
        if self.deleted:
            raise DocumentIsDeleted()
