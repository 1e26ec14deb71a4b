"""uvicorn's httptools protocol with bounds on how long a client may take to send a request.

uvicorn arms no timer until its first response: a client that trickles its headers a byte a
second, or stops in the middle of a body, holds a connection (and its memory) for as long as it
likes. Here a request's line and headers must arrive within `header_seconds` of the connection
(or of the previous response), and a body may pause at most `body_idle_seconds` between chunks;
otherwise the connection is closed and the fact logged at INFO. WebSocket upgrades are left alone."""

from __future__ import annotations

import asyncio
import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    _deadline: asyncio.TimerHandle | None = None
    header_seconds = 10.0
    body_idle_seconds = 15.0

    @classmethod
    def bounded(cls, header_seconds: float, body_idle_seconds: float) -> type[BoundedHttpToolsProtocol]:
        return type(cls.__name__, (cls,), {"header_seconds": header_seconds, "body_idle_seconds": body_idle_seconds})

    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._too_slow, what)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self, what: str) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info("closed a connection from %s: %s", self.client[0] if self.client else "?", what)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_seconds, f"no complete request headers within {self.header_seconds:g} s")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._deadline is None:
            self._arm(self.header_seconds, f"no complete request headers within {self.header_seconds:g} s")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        if self.parser.should_upgrade():
            self._disarm()  # a WebSocket: its own pings keep it honest
        else:
            self._arm(self.body_idle_seconds, f"the request body paused for more than {self.body_idle_seconds:g} s")

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm(self.body_idle_seconds, f"the request body paused for more than {self.body_idle_seconds:g} s")

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()
