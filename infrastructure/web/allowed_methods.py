"""`Allow` on an OPTIONS answer lists every method of the path. Litestar 2 builds a path's
automatic OPTIONS handler with the methods known when the path's first handler was registered
(litestar-org/litestar#4169, fixed in v3), so it names one method where there are three; this
wrapper corrects the header from the final route table. It wraps `send` for OPTIONS requests only
(a Litestar `before_send` hook would wrap every message of every connection, WebSocket frames
included)."""

from __future__ import annotations

from collections.abc import Awaitable

from litestar.datastructures import MutableScopeHeaders
from litestar.routes import HTTPRoute
from litestar.types import ASGIApp, Message, Receive, Scope, Send


class AllowedMethods:
    """ASGI middleware around the app's handler; the route table is read once, on the first
    OPTIONS answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._by_path: dict[str, str] | None = None

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """Hands anything but OPTIONS straight on: no frame of this middleware stays on the
        stack of a request or of an open stream."""
        if scope["type"] != "http" or scope["method"] != "OPTIONS":
            return self.app(scope, receive, send)

        async def send_with_allow(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._correct(message, scope)
            await send(message)

        return self.app(scope, receive, send_with_allow)

    def _correct(self, message: Message, scope: Scope) -> None:
        if self._by_path is None:
            routes = scope["litestar_app"].routes
            self._by_path = {r.path_format: ", ".join(sorted(r.methods)) for r in routes if isinstance(r, HTTPRoute)}
        allowed = self._by_path.get(scope.get("path_template", ""))
        headers = MutableScopeHeaders.from_message(message)  # type: ignore[arg-type]
        if allowed and "allow" in headers:
            headers["allow"] = allowed
