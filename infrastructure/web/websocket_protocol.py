"""uvicorn's sans-I/O WebSocket protocol without the handshake kept for the connection's life.

uvicorn keeps the parsed upgrade request and the 101 response it built, with their header maps,
as long as the connection is open, though it reads neither once the answer has gone out (the
ASGI scope holds its own copy of the request headers); websockets' parser, suspended for the
connection's life in the generator that parsed the request, holds the request too. A chat user
keeps a stream open all day: at 10,000 streams these ≈ 5 KB a connection are ≈ 50 MB of the
server's memory (issue 17's idle-stream aim). Once the 101 is sent, both headers are emptied and
uvicorn's references dropped."""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    def start_keepalive(self) -> None:
        """Called by uvicorn right after the 101 answer has been written."""
        self.request.headers.clear()
        self.response.headers.clear()
        self.request = None  # type: ignore[assignment]
        self.response = None  # type: ignore[assignment]
        super().start_keepalive()
