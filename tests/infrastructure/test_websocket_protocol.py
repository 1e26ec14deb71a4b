"""The server's WebSocket protocol (`LeanWebSocketProtocol`) on a real uvicorn and a real
socket: a connection's handshake is let go once the 101 has been sent, and the connection goes
on as before (the app still sees the request's headers in its scope, messages flow both ways)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest
import uvicorn
from websockets.asyncio.client import connect

from infrastructure.web.websocket_protocol import LeanWebSocketProtocol
from tests.waiting import until

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts, then answers each text message with it and the request's `x-probe` header."""
    if scope["type"] != "websocket":
        return
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    probe = dict(scope["headers"]).get(b"x-probe", b"").decode()
    while (message := await receive())["type"] == "websocket.receive":
        await send({"type": "websocket.send", "text": f"{message['text']} {probe}"})


async def test_a_connection_lets_its_handshake_go_after_the_101_and_keeps_working():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(echo, ws=LeanWebSocketProtocol, log_level="warning", lifespan="off"))
    serving = asyncio.get_running_loop().create_task(server.serve(sockets=[listener]))
    try:
        await until(lambda: server.started, "uvicorn to listen", timeout=10)
        async with connect(f"ws://127.0.0.1:{port}/", additional_headers={"x-probe": "seen"}) as client:
            await client.send("first")
            assert await client.recv() == "first seen"
            (protocol,) = server.server_state.connections
            assert isinstance(protocol, LeanWebSocketProtocol)
            assert protocol.request is None and protocol.response is None
            await client.send("second")
            assert await client.recv() == "second seen"
    finally:
        server.should_exit = True
        await serving
        listener.close()
