"""What keeps an idle stream open, and what closes a dead one, against a real server: protocol
pings at `CHRONICLE_WS_PING_INTERVAL`, a peer that stops answering closed after
`CHRONICLE_WS_PING_TIMEOUT`, and permessage-deflate only when `CHRONICLE_WS_COMPRESSION` is on."""

import json
import socket
import time

import pytest
from websockets.sync.client import connect

from tests.e2e.server import Server
from tests.e2e.test_streams import raw_frames, ws_url

pytestmark = pytest.mark.e2e

PING, CLOSE = 0x9, 0x8


def upgrade_without_answering(server: Server, path: str) -> socket.socket:
    """A raw client that completes the WebSocket handshake and then never writes again: it
    answers no ping, as a peer that vanished without closing (a laptop lid shut, a lost route)."""
    peer = socket.create_connection(("127.0.0.1", server.port))
    peer.sendall(
        f"GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    return peer


def read_until_closed(peer: socket.socket, timeout: float) -> bytes:
    """Everything the server sends until it closes the connection (or `timeout` passes)."""
    peer.settimeout(timeout)
    data = b""
    while chunk := peer.recv(1 << 16):
        data += chunk
    return data


@pytest.fixture(scope="module")
def brisk(tmp_path_factory: pytest.TempPathFactory):
    """A server that pings every second, waits a second for the answer, and compresses."""
    env = {"CHRONICLE_WS_PING_INTERVAL": "1", "CHRONICLE_WS_PING_TIMEOUT": "1", "CHRONICLE_WS_COMPRESSION": "on"}
    running = Server(tmp_path_factory.mktemp("brisk"), env=env).start()
    yield running
    running.stop()


def test_a_peer_that_stops_answering_pings_is_closed_and_one_that_answers_stays(brisk):
    ann, _ = brisk.client().signup("ann@example.org")
    sid = ann.post("/api/sessions", {"title": "Quiet", "assistant": False}).json()["id"]
    start = ann.head()
    with connect(ws_url(brisk, f"/api/sessions/{sid}/stream", ann.token, start)) as answering:  # answers pings itself
        silent = upgrade_without_answering(brisk, f"/api/sessions/{sid}/stream?token={ann.token}&after={start}")
        opened = time.monotonic()
        data = read_until_closed(silent, timeout=30)
        closed_after = time.monotonic() - opened
        silent.close()
        seen = raw_frames(data)
        assert PING in [opcode for opcode, _ in seen]
        opcode, payload = seen[-1]
        assert opcode == CLOSE and int.from_bytes(payload[:2], "big") == 1011  # keepalive ping timeout
        assert closed_after < 10  # pinged after 1 s, closed 1 s later: a generous liveness bound

        # The client that answered was pinged as often and is still served.
        position = ann.post(f"/api/sessions/{sid}/messages", {"content": "still there?"}).json()["position"]
        frame = json.loads(answering.recv(timeout=10))
        assert (frame["position"], frame["type"]) == (position, "message.posted")
    assert "Traceback" not in brisk.log_path.read_text()


def test_with_compression_on_a_client_that_offers_it_gets_it_and_frames_arrive_whole(brisk):
    ann, _ = brisk.client().signup("bea@example.org")
    sid = ann.post("/api/sessions", {"title": "Squeezed", "assistant": False}).json()["id"]
    with connect(ws_url(brisk, f"/api/sessions/{sid}/stream", ann.token, ann.head())) as ws:  # offers permessage-deflate
        assert "permessage-deflate" in ws.response.headers.get("Sec-WebSocket-Extensions", "")
        content = "compressible " * 500
        position = ann.post(f"/api/sessions/{sid}/messages", {"content": content}).json()["position"]
        frame = json.loads(ws.recv(timeout=10))
    assert (frame["position"], frame["data"]["content"]) == (position, content)


def test_by_default_streams_are_not_compressed_even_when_the_client_offers_it(server, new_user):
    ann, _ = new_user("ann")
    sid = ann.post("/api/sessions", {"title": "Plain", "assistant": False}).json()["id"]
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", ann.token, ann.head())) as ws:  # offers permessage-deflate
        assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
        position = ann.post(f"/api/sessions/{sid}/messages", {"content": "plain text"}).json()["position"]
        frame = json.loads(ws.recv(timeout=10))
    assert (frame["position"], frame["data"]["content"]) == (position, "plain text")
