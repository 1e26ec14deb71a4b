"""`Allow` on an OPTIONS answer lists every method of the path. Litestar 2 builds a path's
automatic OPTIONS handler with the methods known when the path's first handler was registered
(litestar-org/litestar#4169, fixed in v3), so it names one method where there are three; this
hook corrects the header from the final route table."""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.routes import HTTPRoute
from litestar.types import Message, Scope


class AllowedMethods:
    """A `before_send` hook; the route table is read once, on the first OPTIONS answer."""

    def __init__(self) -> None:
        self._by_path: dict[str, str] | None = None

    async def __call__(self, message: Message, scope: Scope) -> None:
        if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
            return
        if self._by_path is None:
            routes = scope["litestar_app"].routes
            self._by_path = {r.path_format: ", ".join(sorted(r.methods)) for r in routes if isinstance(r, HTTPRoute)}
        allowed = self._by_path.get(scope.get("path_template", ""))
        headers = MutableScopeHeaders.from_message(message)
        if allowed and "allow" in headers:
            headers["allow"] = allowed
