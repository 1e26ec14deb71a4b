"""Serves the built web client (`infrastructure/web/client/`, built from `web/` by Vite).

Hashed assets (`/assets/…`) are immutable and cached for a year; every other path that is not
an API route is a client route and gets `index.html`, never cached, so a new release is picked
up on the next navigation. Files are read once and kept in memory with a gzip copy: the bundle
is small, and the API's own responses pay nothing for compression they do not need. Every page
carries a strict Content-Security-Policy: no inline script, nothing from another origin."""

from __future__ import annotations

import gzip
import mimetypes
from pathlib import Path
from typing import Any

from litestar import Request, Response, get
from litestar.exceptions import NotFoundException

CLIENT_DIR = Path(__file__).parent / "client"
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
}
SERVER_PATHS = ("/api/", "/health", "/metrics", "/schema")
ASSET_PATHS = ("/assets/", "/api-docs/")
"""Built files live here; anything else that is not a file is a client route (even with a dot,
like `/invite/<id>.<secret>`)."""
"""Paths that belong to the server: an unknown one is a 404 problem, not the client's page."""


class ClientFile:
    def __init__(self, path: Path) -> None:
        self.body = path.read_bytes()
        self.gzipped = gzip.compress(self.body, 9, mtime=0) if len(self.body) > 1024 else None
        self.media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if self.media_type.startswith("text/") or self.media_type in ("application/javascript", "text/javascript"):
            self.media_type += "; charset=utf-8"


class ClientBundle:
    """The built files, loaded once when the app is made (none: the API alone is served)."""

    def __init__(self, directory: Path = CLIENT_DIR) -> None:
        self.files: dict[str, ClientFile] = {}
        if (directory / "index.html").is_file():
            for path in directory.rglob("*"):
                if path.is_file():
                    self.files["/" + path.relative_to(directory).as_posix()] = ClientFile(path)

    def response(self, path: str, accepts_gzip: bool) -> Response[bytes]:
        if path.startswith(SERVER_PATHS) or path in ("/api", "/schema"):
            raise NotFoundException(f"no route for {path}")
        file = self.files.get(path)
        immutable = file is not None and path.startswith("/assets/")
        if file is None or path == "/index.html":
            if path.startswith(ASSET_PATHS):
                raise NotFoundException("no such file")  # a missing asset is not a client route
            file = self.files.get("/index.html")
            if file is None:
                raise NotFoundException("the web client is not built into this installation")
        headers = dict(SECURITY_HEADERS)
        headers["cache-control"] = "public, max-age=31536000, immutable" if immutable else "no-cache"
        headers["vary"] = "accept-encoding"
        body = file.body
        if accepts_gzip and file.gzipped is not None:
            body = file.gzipped
            headers["content-encoding"] = "gzip"
        return Response(body, media_type=file.media_type, headers=headers)


@get(["/", "/{path:path}"], exclude_from_auth=True, include_in_schema=False, sync_to_thread=False)
def client_file(request: Request[Any, Any, Any], path: str = "/") -> Response[bytes]:
    """The web client's files, and `index.html` for every client route."""
    bundle: ClientBundle = request.app.state.client_bundle
    return bundle.response(path if path.startswith("/") else "/" + path, "gzip" in request.headers.get("accept-encoding", ""))
