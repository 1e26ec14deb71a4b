"""Documents: upload (streamed to the blob store), list, read, download, delete, share with a
session, and convert."""

from __future__ import annotations

import logging
from typing import Annotated, Any
from uuid import UUID
from weakref import WeakValueDictionary

import anyio
import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.background_tasks import BackgroundTask
from litestar.exceptions import ClientException, HTTPException, NotFoundException
from litestar.params import Parameter

from application.command_bus import CommandBus
from application.documents import AttachDocument, DeleteDocument, DetachDocument, RequestConversion, UploadDocument
from domain.conversion import TARGETS, Conversion, conversion_id_for
from domain.document import Document
from domain.usage import QuotaExceeded
from infrastructure.web.auth import Principal
from infrastructure.web.commands import execute
from infrastructure.web.downloads import blob_response, content_disposition
from infrastructure.web.edge_types import UUID_TEXT, AfterPosition, Cursor
from infrastructure.web.entity_tags import REVALIDATED, not_modified, tagged, view_tag
from infrastructure.web.openapi_document import binary_file, uuid_text
from infrastructure.web.pagination import MAX_LIMIT, Page, cursor_position, page
from infrastructure.web.problems import ReadModelBehind
from infrastructure.web.quotas import require_storage_quota
from infrastructure.web.read_your_writes import ProjectionProgress
from infrastructure.web.uploads import receive_upload, refuse_announced_size
from infrastructure.write_side import WriteSide
from projections.change_positions import read_generation
from projections.documents import (
    conversion_of,
    conversions_of,
    documents_of_owner,
    documents_of_session,
    readable_document,
)
from projections.sessions import session_for_member
from projections.storage import ReadConnection

log = logging.getLogger(__name__)

READ_MODELS = ("documents", "session_members")
OUTPUT_TYPES = {
    "markdown": ("text/markdown", ".md"),
    "text": ("text/plain", ".txt"),
    "html": ("text/html", ".html"),
}


class DocumentView(msgspec.Struct):
    """`position` is where the upload stands in the global log."""

    id: str
    filename: str
    media_type: str
    size: int
    sha256: str
    created_at: str
    position: int


class ConversionView(msgspec.Struct, omit_defaults=True):
    """`position` is that of the latest change of the conversion this view reflects (given
    when it comes from a command)."""

    id: str
    document_id: str
    target: str
    status: str
    created_at: str
    reason: str | None = None
    detail: str | None = None
    completed_at: str | None = None
    size: int | None = None
    pages: int | None = None
    characters: int | None = None
    duration_ms: int | None = None
    position: int | None = None


class NewConversion(msgspec.Struct, forbid_unknown_fields=True):
    target: Annotated[str, msgspec.Meta(pattern=f"^({'|'.join(TARGETS)})$")]


class Attachment(msgspec.Struct, forbid_unknown_fields=True):
    document_id: UUID


class AttachmentChange(msgspec.Struct):
    session_id: str
    document_id: str
    position: int


class DeletedDocument(msgspec.Struct):
    id: str
    deleted: bool
    position: int


def _view(row: dict[str, Any]) -> DocumentView:
    return DocumentView(
        id=row["id"],
        filename=row["filename"],
        media_type=row["media_type"],
        size=row["size"],
        sha256=row["sha256"],
        created_at=row["created_at"],
        position=row["position"],
    )


def _from_document(document: Document, position: int) -> DocumentView:
    return DocumentView(
        id=str(document.id),
        filename=document.filename,
        media_type=document.media_type,
        size=document.size,
        sha256=document.sha256,
        created_at=document.created_on.isoformat(),
        position=position,
    )


def _conversion_view(row: dict[str, Any]) -> ConversionView:
    return ConversionView(
        id=row["id"],
        document_id=row["document_id"],
        target=row["target"],
        status=row["status"],
        created_at=row["created_at"],
        reason=row["reason"],
        detail=row["detail"],
        completed_at=row["completed_at"],
        size=row["output_size"],
        pages=row["pages"],
        characters=row["characters"],
        duration_ms=row["duration_ms"],
    )


def _from_conversion(conversion: Conversion, position: int) -> ConversionView:
    return ConversionView(
        id=str(conversion.id),
        document_id=str(conversion.document_id),
        target=conversion.target,
        status=conversion.status,
        created_at=conversion.created_on.isoformat(),
        position=position,
    )


async def _readable(
    db: ReadConnection, progress: ProjectionProgress, document_id: UUID, user_id: UUID, after_position: int | None
) -> dict[str, Any]:
    await progress.wait(READ_MODELS, after_position)
    row = await readable_document(db, str(document_id), str(user_id))
    if row is None:
        raise NotFoundException("no such document")
    return row


UPLOAD_FIELDS = (("file", binary_file(), True), ("session_id", uuid_text(), False))
"""The multipart body of an upload, for the OpenAPI document (the handler streams it itself)."""


def _uploads_of(request: Request[Principal, Any, Any]) -> anyio.Lock:
    """One upload of a user at a time from the storage quota's check until the read model counts
    it, so concurrent uploads cannot each pass the check against the same total. Per process:
    nodes of a cluster can still race, by at most one upload each."""
    locks: WeakValueDictionary[str, anyio.Lock] = request.app.state.setdefault("upload_locks", WeakValueDictionary())
    user_id = str(request.user.id)
    lock = locks.get(user_id)
    if lock is None:
        lock = locks[user_id] = anyio.Lock()
    return lock


class DocumentsController(Controller):
    path = "/api/documents"
    tags = ["documents"]

    @post("/", status_code=201, request_max_body_size=None, problems=(404, 415, 429), multipart=UPLOAD_FIELDS)
    async def upload(
        self, request: Request[Principal, Any, Any], bus: CommandBus, write: WriteSide, progress: ProjectionProgress
    ) -> DocumentView:
        """multipart/form-data with the file in `file` and optionally `session_id` to attach it."""
        content_type, options = request.content_type
        if content_type != "multipart/form-data":
            raise HTTPException(status_code=415, detail="send the file as multipart/form-data in a field named 'file'")
        if not options.get("boundary"):
            raise ClientException("the multipart boundary is missing from Content-Type")
        limit = write.settings.upload_max_bytes
        refuse_announced_size(request.content_length, limit)
        user_id = str(request.user.id)
        await require_storage_quota(request.app.state.db, user_id, 1)  # full already: refuse before reading
        upload = await receive_upload(request.stream(), options["boundary"].encode(), write.blobs, limit)
        incoming = upload.incoming
        try:
            if incoming.size == 0:
                raise ClientException("the file is empty", extra=[{"key": "file", "message": "the file is empty"}])
            session_id = _session_id(upload.fields.get("session_id"))
            await anyio.to_thread.run_sync(incoming.finish)
            media_type = await anyio.to_thread.run_sync(request.app.state.sniffer.sniff, incoming.path)
            command = UploadDocument(request.user.id, upload.filename, media_type, incoming.size, incoming.sha256, session_id)
            async with _uploads_of(request):
                await require_storage_quota(request.app.state.db, user_id, incoming.size)
                async with write.blobs.locked():
                    created = await anyio.to_thread.run_sync(write.blobs.place, incoming)
                    try:
                        outcome = await execute(bus, request, command)
                    except Exception:
                        if created:  # refused: nothing references it (a cancelled request may still commit, so not then)
                            write.blobs.remove(command.sha256)
                        raise
                try:
                    await progress.wait(("documents",), outcome.position)  # the next upload's check counts this one
                except ReadModelBehind:  # saved all the same: answer so, or a retry would store it twice
                    log.warning("the documents read model is behind upload %s at position %s", outcome.value.id, outcome.position)
        finally:
            await anyio.to_thread.run_sync(incoming.discard)
        return _from_document(outcome.value, outcome.position)

    @get("/")
    async def mine(
        self,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        cursor: Cursor = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 50,
        after_position: AfterPosition = None,
    ) -> Page[DocumentView]:
        """The documents you uploaded, oldest first."""
        await progress.wait(READ_MODELS, after_position)
        rows = await documents_of_owner(db, str(request.user.id), cursor_position(cursor), limit + 1)
        return page(rows, limit, _view)

    @get("/{document_id:uuid}", opt=REVALIDATED)
    async def one(
        self,
        document_id: UUID,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        after_position: AfterPosition = None,
    ) -> Response[DocumentView]:
        """A document's metadata never changes after its upload: its ETag is its upload's
        position (and the read store's generation); deleted or no longer shared, it is a 404."""
        generation = await read_generation(db)  # before the row: a rebuild in between only costs a 200
        row = await _readable(db, progress, document_id, request.user.id, after_position)
        tag = view_tag({"generation": generation, "changed": row["position"], "in_step": True}, request, DocumentView)
        return not_modified(request, tag) or tagged(_view(row), tag)

    @get("/{document_id:uuid}/content", problems=(416,))
    async def content(
        self,
        document_id: UUID,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        write: WriteSide,
        after_position: AfterPosition = None,
    ) -> Any:
        """The bytes as uploaded, as an attachment (never rendered inline: they are not sanitized)."""
        row = await _readable(db, progress, document_id, request.user.id, after_position)
        return blob_response(
            request,
            write.blobs.path(row["sha256"]),
            row["media_type"],
            content_disposition("attachment", row["filename"]),
            row["sha256"],
            sandbox=True,
        )

    @delete("/{document_id:uuid}", status_code=200)
    async def remove(
        self,
        document_id: UUID,
        request: Request[Principal, Any, Any],
        bus: CommandBus,
        db: ReadConnection,
        progress: ProjectionProgress,
    ) -> Response[DeletedDocument]:
        """Records the deletion; the content and conversion outputs are removed from disk once
        no other document references the same bytes."""
        outputs = [r["output_sha256"] for r in await conversions_of(db, str(document_id)) if r["output_sha256"]]
        outcome = await execute(bus, request, DeleteDocument(document_id, request.user.id))
        candidates = [outcome.value.sha256, *outputs]
        collector = request.app.state.blob_collector
        return Response(
            DeletedDocument(str(document_id), True, outcome.position),
            background=BackgroundTask(collector.collect_from_loop, candidates),
        )

    @post("/{document_id:uuid}/conversions", status_code=202, problems=(429,))
    async def convert(
        self, document_id: UUID, data: NewConversion, request: Request[Principal, Any, Any], bus: CommandBus, db: ReadConnection
    ) -> ConversionView:
        """Asks for a conversion; a repeated request answers the existing one. A new one's output
        counts against the document owner's storage quota: refused (429) once that quota is used
        up (an output's size is known only when it is done, so conversions already requested
        may pass it)."""
        document = await readable_document(db, str(document_id), str(request.user.id))
        if document is not None and not await conversion_of(db, str(document_id), str(conversion_id_for(document_id, data.target))):
            try:
                await require_storage_quota(db, document["owner_id"], 1)
            except QuotaExceeded:
                if document["owner_id"] == str(request.user.id):
                    raise  # your own quota: its figures are yours to see
                raise HTTPException(status_code=429, detail="the document's owner has no storage left for new conversions") from None
        outcome = await execute(bus, request, RequestConversion(document_id, request.user.id, data.target))
        return _from_conversion(outcome.value, outcome.position)

    @get("/{document_id:uuid}/conversions")
    async def conversions(
        self,
        document_id: UUID,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        after_position: AfterPosition = None,
    ) -> list[ConversionView]:
        await _readable(db, progress, document_id, request.user.id, after_position)
        return [_conversion_view(r) for r in await conversions_of(db, str(document_id))]

    @get("/{document_id:uuid}/conversions/{conversion_id:uuid}")
    async def conversion(
        self,
        document_id: UUID,
        conversion_id: UUID,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        after_position: AfterPosition = None,
    ) -> ConversionView:
        await _readable(db, progress, document_id, request.user.id, after_position)
        row = await conversion_of(db, str(document_id), str(conversion_id))
        if row is None:
            raise NotFoundException("no such conversion")
        return _conversion_view(row)

    @get("/{document_id:uuid}/conversions/{conversion_id:uuid}/content", problems=(409, 416))
    async def conversion_content(
        self,
        document_id: UUID,
        conversion_id: UUID,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        write: WriteSide,
        after_position: AfterPosition = None,
    ) -> Any:
        document = await _readable(db, progress, document_id, request.user.id, after_position)
        row = await conversion_of(db, str(document_id), str(conversion_id))
        if row is None:
            raise NotFoundException("no such conversion")
        if row["status"] != "completed":
            raise HTTPException(
                status_code=409,
                detail=f"the conversion is {row['status']}; it has no content yet"
                if row["status"] in ("pending", "running")
                else "the conversion failed; it has no content",
            )
        media_type, extension = OUTPUT_TYPES[row["target"]]
        filename = document["filename"].rsplit(".", 1)[0] + extension
        return blob_response(
            request,
            write.blobs.path(row["output_sha256"]),
            media_type,
            content_disposition("inline", filename),
            row["output_sha256"],
            sandbox=True,
        )


def _session_id(value: str | None) -> UUID | None:
    if value is None:
        return None
    if not UUID_TEXT.fullmatch(value):  # `UUID()` also takes braces, `urn:uuid:` and bare hex
        raise ClientException("session_id is not a UUID", extra=[{"key": "session_id", "message": "not a UUID"}])
    return UUID(value)


class SessionDocumentsController(Controller):
    path = "/api/sessions/{session_id:uuid}/documents"
    tags = ["documents"]

    @post("/", status_code=201)
    async def attach(self, session_id: UUID, data: Attachment, request: Request[Principal, Any, Any], bus: CommandBus) -> AttachmentChange:
        """Shares one of your documents with a session you are a member of."""
        outcome = await execute(bus, request, AttachDocument(data.document_id, session_id, request.user.id))
        return AttachmentChange(str(session_id), str(data.document_id), outcome.position)

    @get("/")
    async def attached(
        self,
        session_id: UUID,
        request: Request[Principal, Any, Any],
        db: ReadConnection,
        progress: ProjectionProgress,
        cursor: Cursor = None,
        limit: Annotated[int, Parameter(ge=1, le=MAX_LIMIT)] = 50,
        after_position: AfterPosition = None,
    ) -> Page[DocumentView]:
        """The documents shared with a session you are a member of, in the order they were attached."""
        await progress.wait(READ_MODELS + ("sessions",), after_position)
        if await session_for_member(db, str(session_id), str(request.user.id)) is None:
            raise NotFoundException("no such session")
        rows = await documents_of_session(db, str(session_id), cursor_position(cursor), limit + 1)
        return page(rows, limit, _view, key="attached_position")

    @delete("/{document_id:uuid}", status_code=200)
    async def detach(self, session_id: UUID, document_id: UUID, request: Request[Principal, Any, Any], bus: CommandBus) -> AttachmentChange:
        outcome = await execute(bus, request, DetachDocument(document_id, session_id, request.user.id))
        return AttachmentChange(str(session_id), str(document_id), outcome.position)
