"""Serves a stored blob: its SHA-256 as a strong ETag (If-None-Match answers 304), single byte
ranges (206, or 416 when unsatisfiable; If-Range honoured), and a Content-Disposition that
carries the UTF-8 filename safely. Litestar's File response has no Range support."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
from litestar import Request
from litestar.exceptions import NotFoundException
from litestar.response import Response, Stream

from infrastructure.web.problems import problem

CHUNK_BYTES = 256 * 1024
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")
_UNSAFE_ASCII = re.compile(r'[^\x20-\x7e]|["\\%;]')
SANDBOX = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


def content_disposition(kind: str, filename: str) -> str:
    fallback = _UNSAFE_ASCII.sub("_", filename) or "download"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def _offset(digits: str) -> int:
    """A range bound; one longer than any file can be stays beyond every file without `int()`
    of thousands of digits (which Python refuses: a 500 instead of the 416 or 206 it is)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else 10**18


def _requested_range(request: Request, etag: str, size: int) -> tuple[int, int] | None | str:
    """(first, last) of a satisfiable single range, None for the whole file, "unsatisfiable"."""
    header = request.headers.get("range")
    if not header or size == 0:
        return None
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range != etag:
        return None
    match = _RANGE.fullmatch(header.strip())
    if match is None or not any(match.groups()):
        return None  # several ranges or another unit: the whole file (RFC 9110 allows ignoring Range)
    first, last = match.groups()
    if not first:
        length = _offset(last)
        if length == 0:
            return "unsatisfiable"
        return max(size - length, 0), size - 1
    start = _offset(first)
    if start >= size:
        return "unsatisfiable"
    end = min(_offset(last), size - 1) if last else size - 1
    return (start, end) if end >= start else None


async def _read(path: Path, start: int, length: int) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as f:
        await f.seek(start)
        while length > 0:
            chunk = await f.read(min(CHUNK_BYTES, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk


class _BlobStream(Stream):
    """A Stream whose own media type wins over the handler's (Litestar prefers the handler's)."""

    def to_asgi_response(self, *args: Any, media_type: Any = None, **kwargs: Any) -> Any:
        return super().to_asgi_response(*args, media_type=self.media_type, **kwargs)


def blob_response(
    request: Request, path: Path, media_type: str, disposition: str, sha256: str, *, sandbox: bool = False
) -> Response | Stream:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise NotFoundException("the content is no longer stored") from None
    etag = f'"{sha256}"'
    headers = {
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Content-Disposition": disposition,
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=0, must-revalidate",
    }
    if sandbox:
        headers["Content-Security-Policy"] = SANDBOX
    if request.headers.get("if-none-match") in (etag, "*"):
        return Response(b"", status_code=304, headers=headers, media_type=media_type)
    wanted = _requested_range(request, etag, size)
    if wanted == "unsatisfiable":
        return problem(416, f"the range is outside the {size} bytes of the content", {"Content-Range": f"bytes */{size}"})
    first, last = wanted if isinstance(wanted, tuple) else (0, size - 1)
    length = last - first + 1 if size else 0
    headers["Content-Length"] = str(length)
    if isinstance(wanted, tuple):
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return _BlobStream(
        _read(path, first, length), status_code=206 if isinstance(wanted, tuple) else 200, headers=headers, media_type=media_type
    )
