"""Use cases of documents and their conversions. The bytes are already in the blob store when
these run: a command records only what is known about them."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from application.unit_of_work import UnitOfWork
from domain.aggregate import NotFound
from domain.chat_session import ChatSession, SessionNotFound
from domain.conversion import Conversion, conversion_id_for
from domain.document import Document, DocumentNotFound
from domain.user import User


@dataclass(frozen=True)
class UploadDocument:
    owner_id: UUID
    filename: str
    media_type: str
    size: int
    sha256: str
    session_id: UUID | None = None


@dataclass(frozen=True)
class AttachDocument:
    document_id: UUID
    session_id: UUID
    by: UUID


@dataclass(frozen=True)
class DetachDocument:
    document_id: UUID
    session_id: UUID
    by: UUID


@dataclass(frozen=True)
class DeleteDocument:
    document_id: UUID
    by: UUID


@dataclass(frozen=True)
class RequestConversion:
    document_id: UUID
    by: UUID
    target: str


@dataclass(frozen=True)
class RetryConversion:
    conversion_id: UUID


@dataclass(frozen=True)
class StartConversion:
    conversion_id: UUID


@dataclass(frozen=True)
class CompleteConversion:
    conversion_id: UUID
    output_sha256: str
    output_size: int
    pages: int | None
    characters: int
    duration_ms: int


@dataclass(frozen=True)
class FailConversion:
    conversion_id: UUID
    reason: str
    detail: str
    duration_ms: int


def _session(uow: UnitOfWork, session_id: UUID) -> ChatSession:
    return uow.get(ChatSession, session_id, SessionNotFound())


def readable_document(uow: UnitOfWork, document_id: UUID, by: UUID) -> Document:
    """The document if `by` may read it; otherwise it does not exist for them."""
    document = uow.get(Document, document_id, DocumentNotFound())
    sessions = [s for s in (uow.find(ChatSession, sid) for sid in document.sessions) if s is not None]
    if not document.can_read(by, sessions):
        raise DocumentNotFound()
    return document


def upload_document(uow: UnitOfWork, cmd: UploadDocument) -> Document:
    document = Document.upload(cmd.owner_id, cmd.filename, cmd.media_type, cmd.size, cmd.sha256)
    if cmd.session_id is not None:
        document.attach(cmd.owner_id, _session(uow, cmd.session_id))
    uow.add(document)
    return document


def attach_document(uow: UnitOfWork, cmd: AttachDocument) -> Document:
    document = readable_document(uow, cmd.document_id, cmd.by)
    document.attach(cmd.by, _session(uow, cmd.session_id))
    return document


def detach_document(uow: UnitOfWork, cmd: DetachDocument) -> Document:
    """The document's owner may always take it back, even from a session that removed them;
    otherwise only a member who can see it there (the session's owner) may."""
    document = uow.get(Document, cmd.document_id, DocumentNotFound())
    session = _session(uow, cmd.session_id)
    if document.deleted or (cmd.by != document.owner_id and not document.can_read(cmd.by, [session])):
        raise DocumentNotFound()
    document.detach(cmd.by, session)
    return document


def delete_document(uow: UnitOfWork, cmd: DeleteDocument) -> Document:
    document = readable_document(uow, cmd.document_id, cmd.by)
    document.delete(cmd.by)
    return document


def request_conversion(uow: UnitOfWork, cmd: RequestConversion) -> Conversion:
    """Anyone who may read the document may ask; a repeated request answers the existing
    conversion of that document into that target, whatever its status."""
    document = readable_document(uow, cmd.document_id, cmd.by)
    existing = uow.find(Conversion, conversion_id_for(document.id, cmd.target))
    if existing is not None:
        return existing
    conversion = Conversion.request(document.id, document.owner_id, cmd.target)
    uow.add(conversion)
    return conversion


def _conversion(uow: UnitOfWork, conversion_id: UUID) -> Conversion:
    return uow.get(Conversion, conversion_id, NotFound("no such conversion"))


def retry_conversion(uow: UnitOfWork, cmd: RetryConversion) -> Conversion:
    conversion = _conversion(uow, cmd.conversion_id)
    conversion.retry()
    return conversion


def start_conversion(uow: UnitOfWork, cmd: StartConversion) -> Conversion:
    conversion = _conversion(uow, cmd.conversion_id)
    conversion.start()
    return conversion


def complete_conversion(uow: UnitOfWork, cmd: CompleteConversion) -> Conversion:
    """A conversion that finishes after its document was deleted, or its owner erased, is
    recorded as failed: its output must not become a reference to content the owner deleted
    (an erasure marks no document deleted, but drops the owner's documents from the read models)."""
    conversion = _conversion(uow, cmd.conversion_id)
    document = uow.find(Document, conversion.document_id)
    owner = uow.find(User, document.owner_id) if document is not None else None
    if document is None or document.deleted:
        conversion.fail("document_deleted", "the document was deleted during the conversion", cmd.duration_ms)
    elif getattr(owner, "erased", False):  # set by `UserErased` only
        conversion.fail("document_deleted", "the document's owner was erased during the conversion", cmd.duration_ms)
    else:
        conversion.complete(cmd.output_sha256, cmd.output_size, cmd.pages, cmd.characters, cmd.duration_ms)
    return conversion


def fail_conversion(uow: UnitOfWork, cmd: FailConversion) -> Conversion:
    conversion = _conversion(uow, cmd.conversion_id)
    conversion.fail(cmd.reason, cmd.detail, cmd.duration_ms)
    return conversion


HANDLERS = {
    UploadDocument: upload_document,
    AttachDocument: attach_document,
    DetachDocument: detach_document,
    DeleteDocument: delete_document,
    RequestConversion: request_conversion,
    RetryConversion: retry_conversion,
    StartConversion: start_conversion,
    CompleteConversion: complete_conversion,
    FailConversion: fail_conversion,
}
