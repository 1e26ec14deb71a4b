"""Receives a multipart/form-data upload straight into the blob store's incoming directory:
parsed as it streams (the `multipart` push parser Litestar itself uses), hashed while written,
the size limit enforced on the bytes received, so a file is never held whole in memory and an
oversized one is refused as soon as it passes the limit. Any failure leaves no file behind."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import anyio
from litestar.exceptions import ClientException, HTTPException
from multipart import MultipartSegment, ParserError, ParserLimitReached, PushMultipartParser

from infrastructure.storage.blob_store import BlobStore, Incoming

FLUSH_BYTES = 1024 * 1024
FIELD_MAX_BYTES = 1000
FORM_OVERHEAD_BYTES = 64 * 1024
FIELDS = ("file", "session_id")


class PayloadTooLarge(HTTPException):
    status_code = 413


@dataclass
class Upload:
    incoming: Incoming
    filename: str
    fields: dict[str, str] = field(default_factory=dict)


def refuse_announced_size(content_length: int | None, limit: int) -> None:
    if content_length is not None and content_length > limit + FORM_OVERHEAD_BYTES:
        raise PayloadTooLarge(detail=_too_large(limit))


def _too_large(limit: int) -> str:
    return f"the file is larger than the limit of {limit:,} bytes"


async def receive_upload(chunks: AsyncIterator[bytes], boundary: bytes, blobs: BlobStore, limit: int) -> Upload:
    incoming = await anyio.to_thread.run_sync(blobs.incoming)
    try:
        return await _receive(chunks, boundary, incoming, limit)
    except BaseException:
        await anyio.to_thread.run_sync(incoming.discard)
        raise


async def _receive(chunks: AsyncIterator[bytes], boundary: bytes, incoming: Incoming, limit: int) -> Upload:
    fields: dict[str, str] = {}
    filename: str | None = None
    buffer = bytearray()
    current: MultipartSegment | None = None
    value = bytearray()
    received = 0
    try:
        with PushMultipartParser(boundary, max_segment_count=len(FIELDS) + 1) as parser:
            async for chunk in chunks:
                received += len(chunk)
                if received > limit + FORM_OVERHEAD_BYTES:  # what the parser skips (a preamble) counts too
                    raise PayloadTooLarge(detail=_too_large(limit))
                for part in parser.parse(chunk):
                    if isinstance(part, MultipartSegment):
                        current = part
                        if part.name not in FIELDS or part.name in fields or (part.name == "file" and filename is not None):
                            raise ClientException(f"unexpected form field {part.name!r}; send {' and '.join(FIELDS)}")
                        if part.name == "file":
                            filename = part.filename or ""
                    elif part:
                        if current is not None and current.name == "file":
                            if incoming.size + len(buffer) + len(part) > limit:
                                raise PayloadTooLarge(detail=_too_large(limit))
                            buffer += part
                            if len(buffer) >= FLUSH_BYTES:
                                await anyio.to_thread.run_sync(incoming.write, bytes(buffer))
                                buffer.clear()
                        else:
                            value += part
                            if len(value) > FIELD_MAX_BYTES:
                                raise ClientException(f"the form field {current.name if current else ''!r} is too long")
                    elif current is not None:
                        if current.name != "file":
                            fields[str(current.name)] = value.decode("utf-8", errors="replace").strip()
                        value.clear()
                        current = None
                if parser.closed:
                    break
            parser.close(check_complete=True)
    except (ParserError, ParserLimitReached) as error:
        raise ClientException(f"invalid multipart/form-data: {error}") from None
    if filename is None:
        raise ClientException("no file: send it in a form field named 'file'")
    if buffer:
        await anyio.to_thread.run_sync(incoming.write, bytes(buffer))
    return Upload(incoming, filename, fields)
