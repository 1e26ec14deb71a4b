"""Cross-site request forgery protection for the browser, from Litestar's CSRF middleware.

Only a request that a browser authenticates on its own needs the double-submit token: one
carrying the sign-in cookie (and no bearer header), or the cookie sign-in itself. API clients
that send `Authorization: Bearer` cannot be forged cross-site (a page cannot set that header
on another origin without CORS), so they need no CSRF token, as before. Every safe request
(e.g. loading the client) gets the `csrftoken` cookie the client echoes in `x-csrftoken`."""

from __future__ import annotations

from collections.abc import Awaitable

from litestar.config.csrf import CSRFConfig
from litestar.datastructures import Headers
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.types import Receive, Scope, Send

from infrastructure.web.auth import AUTH_COOKIE

COOKIE_SIGN_IN = "/api/auth/session"


class BrowserCSRFMiddleware(CSRFMiddleware):
    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:  # type: ignore[override]
        """What needs no check is handed straight on (a WebSocket checks its origin itself):
        no frame of this middleware stays on the stack of an open stream."""
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        headers = Headers.from_scope(scope)
        if "authorization" in headers or (
            scope["method"] not in self.config.safe_methods
            and f"{AUTH_COOKIE}=" not in headers.get("cookie", "")
            and scope["path"] != COOKIE_SIGN_IN
        ):
            return self.app(scope, receive, send)
        return super().__call__(scope, receive, send)


def csrf_middleware(secret: str) -> DefineMiddleware:
    """The `csrftoken` cookie is handed out with any successful safe request (the client's
    page, `/health`); an error raised by authentication does not carry it."""
    return DefineMiddleware(BrowserCSRFMiddleware, config=CSRFConfig(secret=secret, cookie_samesite="strict"))
