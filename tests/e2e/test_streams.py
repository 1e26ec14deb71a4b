"""Live session and user streams over real WebSockets against a real server."""

import json
import socket
import threading
import time

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from projections.frame_types import decode_any_frame
from tests.e2e.conftest import assert_problem
from tests.e2e.server import Server
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e


def ws_url(server, path: str, token: str | None, after: int | None = None) -> str:
    query = [f"token={token}"] if token else []
    if after is not None:
        query.append(f"after={after}")
    return f"ws://127.0.0.1:{server.port}{path}" + ("?" + "&".join(query) if query else "")


def frames(ws, count: int, timeout: float = 10) -> list[dict]:
    """The next `count` frames, each checked against the published frame schema."""
    received = [ws.recv(timeout=timeout) for _ in range(count)]
    for raw in received:
        decode_any_frame(raw)
    return [json.loads(raw) for raw in received]


def close_code(ws, timeout: float = 20) -> int:
    """Reads until the server closes; returns its close code."""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ws.recv(timeout=timeout)
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else -1
    raise AssertionError("the server did not close the stream")


@pytest.fixture
def room(new_user):
    """Ann's session, with Bob as a member."""
    ann, _ = new_user("ann")
    bob, bob_user = new_user("bob")
    sid = ann.post("/api/sessions", {"title": "Room", "assistant": False}).json()["id"]
    ann.post(f"/api/sessions/{sid}/members", {"user_id": bob_user["id"]})
    return ann, bob, bob_user, sid


def test_replay_then_live_with_the_stored_frames_in_order(server, room):
    ann, bob, _, sid = room
    first = ann.post(f"/api/sessions/{sid}/messages", {"content": "before connecting"}).json()
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", bob.token, 0)) as ws:
        replayed = frames(ws, 3)
        assert [f["type"] for f in replayed] == ["session.started", "member.added", "message.posted"]
        assert replayed[2]["data"]["content"] == "before connecting" and replayed[2]["position"] == first["position"]
        live = ann.post(f"/api/sessions/{sid}/messages", {"content": "live"}).json()
        frame = frames(ws, 1)[0]
        assert (frame["type"], frame["position"], frame["data"]["content"]) == ("message.posted", live["position"], "live")
        ws.send('{"type":"ping"}')
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}


def test_two_members_see_each_others_messages_live_and_strangers_are_refused(server, room, new_user):
    ann, bob, _, sid = room
    eve, _ = new_user("eve")
    head = ann.head()
    with (
        connect(ws_url(server, f"/api/sessions/{sid}/stream", ann.token, head)) as a,
        connect(ws_url(server, f"/api/sessions/{sid}/stream", bob.token, head)) as b,
    ):
        ann.post(f"/api/sessions/{sid}/messages", {"content": "from ann"})
        bob.post(f"/api/sessions/{sid}/messages", {"content": "from bob"})
        for ws in (a, b):
            assert [f["data"]["content"] for f in frames(ws, 2)] == ["from ann", "from bob"]
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", eve.token)) as ws:
        assert close_code(ws) == 4403
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", None)) as ws:
        assert close_code(ws) == 4401
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", "forged.token.value")) as ws:
        assert close_code(ws) == 4401
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", ann.token) + "&after=soon") as ws:
        assert close_code(ws) == 4400
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", ann.token) + "&after=%C2%B2") as ws:  # "²" is a digit, not a number
        assert close_code(ws) == 4400


def test_reconnecting_with_the_last_position_gives_exactly_what_was_missed(server, room):
    ann, bob, _, sid = room
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", bob.token, 0)) as ws:
        last = frames(ws, 2)[-1]["position"]
    sent = [ann.post(f"/api/sessions/{sid}/messages", {"content": f"missed {i}"}).json() for i in range(100)]
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", bob.token, last)) as ws:
        got = frames(ws, 100)
        assert [f["position"] for f in got] == [m["position"] for m in sent]
        assert [f["data"]["content"] for f in got] == [f"missed {i}" for i in range(100)]
        with pytest.raises(TimeoutError):
            ws.recv(timeout=0.5)


def test_no_gap_and_no_duplicate_while_posts_continue_during_connect(server, room):
    ann, bob, _, sid = room
    start = ann.head()
    acked: list[int] = []

    def keep_posting() -> None:
        for i in range(300):
            acked.append(ann.post(f"/api/sessions/{sid}/messages", {"content": f"c{i}"}).json()["position"])

    poster = threading.Thread(target=keep_posting)
    poster.start()
    while not acked and poster.is_alive():  # connect while posting is under way
        time.sleep(0.01)  # polling interval of an explicit wait
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", bob.token, start)) as ws:
        seen: list[int] = []
        poster.join()
        while not set(acked) <= set(seen):
            seen.append(json.loads(ws.recv(timeout=10))["position"])
    assert seen == sorted(set(seen)), "frames out of order or repeated"
    assert seen[: len(acked)] == acked


def test_a_deleted_message_loses_its_content_in_the_replay_too(server, room):
    ann, bob, _, sid = room
    message = ann.post(f"/api/sessions/{sid}/messages", {"content": "regrettable"}).json()
    deleted = ann.delete(f"/api/sessions/{sid}/messages/{message['id']}").json()
    ann.get(f"/api/sessions/{sid}/messages", params={"after_position": deleted["position"]})  # projected
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", bob.token, message["position"] - 1)) as ws:
        posted, gone = frames(ws, 2)
    assert posted["data"]["content"] is None
    assert (gone["type"], gone["position"], gone["data"]["id"]) == ("message.deleted", deleted["position"], message["id"])


def test_a_replay_shows_a_member_only_an_edited_messages_current_text(server, room):
    """Earlier versions are for the author and the owner (`…/history` answers others 403)."""
    ann, bob, _, sid = room
    message = ann.post(f"/api/sessions/{sid}/messages", {"content": "the first draft"}).json()
    edited = ann.patch(f"/api/sessions/{sid}/messages/{message['id']}", {"content": "the final text"}).json()
    ann.get(f"/api/sessions/{sid}/messages", params={"after_position": edited["position"]})  # projected
    assert_problem(bob.get(f"/api/sessions/{sid}/messages/{message['id']}/history"), 403)
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", bob.token, 0)) as ws:
        replayed = frames(ws, 4)
    assert [f["type"] for f in replayed] == ["session.started", "member.added", "message.posted", "message.edited"]
    assert [f["data"]["content"] for f in replayed[2:]] == ["the final text", "the final text"]
    assert "the first draft" not in json.dumps(replayed)


def test_a_removed_member_is_closed_with_4403(server, room):
    ann, bob, bob_user, sid = room
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", bob.token, ann.head())) as ws:
        ann.delete(f"/api/sessions/{sid}/members/{bob_user['id']}")
        assert frames(ws, 1)[0]["type"] == "member.removed"
        assert close_code(ws) == 4403


def received_until_closed(ws, timeout: float = 20) -> tuple[list[dict], int]:
    """Every frame until the server closes, and its close code."""
    got: list[dict] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            got.append(json.loads(ws.recv(timeout=timeout)))
    except ConnectionClosed as closed:
        return got, closed.rcvd.code if closed.rcvd else -1
    raise AssertionError("the server did not close the stream")


def test_a_removed_member_gets_nothing_sent_to_the_others_after_removal(server, room, new_user):
    """Frames go out to many subscribers from one encoding; each is still authorized for each
    subscriber: the removed member's stream ends at its removal while the others get the posts."""
    ann, bob, bob_user, sid = room
    carol, carol_user = new_user("carol")
    ann.post(f"/api/sessions/{sid}/members", {"user_id": carol_user["id"]})
    head = ann.head()
    with (
        connect(ws_url(server, f"/api/sessions/{sid}/stream", bob.token, head)) as bobs,
        connect(ws_url(server, f"/api/sessions/{sid}/stream", carol.token, head)) as carols,
    ):
        before = ann.post(f"/api/sessions/{sid}/messages", {"content": "before"}).json()
        assert frames(bobs, 1)[0]["position"] == before["position"]
        ann.delete(f"/api/sessions/{sid}/members/{bob_user['id']}")
        after = [ann.post(f"/api/sessions/{sid}/messages", {"content": f"after {n}"}).json() for n in range(5)]
        seen_by_carol = frames(carols, 7)
        seen_by_bob, code = received_until_closed(bobs)
    assert [f["type"] for f in seen_by_carol] == ["message.posted", "member.removed", *["message.posted"] * 5]
    assert [f["position"] for f in seen_by_carol[2:]] == [a["position"] for a in after]
    assert [f["type"] for f in seen_by_bob] == ["member.removed"]
    assert code == 4403


def test_the_user_stream_shows_new_sessions_and_invitations(server, new_user):
    ann, _ = new_user("ann")
    bob, bob_user = new_user("bob")
    with connect(ws_url(server, "/api/stream", bob.token, 0)) as ws:
        own = bob.post("/api/sessions", {"title": "Mine"}).json()
        theirs = ann.post("/api/sessions", {"title": "Ann's"}).json()
        ann.post(f"/api/sessions/{theirs['id']}/members", {"user_id": bob_user["id"]})
        ann.patch(f"/api/sessions/{theirs['id']}", {"title": "Renamed"})
        got = frames(ws, 3)
    assert [(f["type"], f["session_id"]) for f in got] == [
        ("session.started", own["id"]),
        ("member.added", theirs["id"]),
        ("session.renamed", theirs["id"]),
    ]


def raw_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Parses the server's side of a WebSocket connection (after the HTTP upgrade response)
    into (opcode, payload) pairs: the complete frames only (server frames are never masked)."""
    data = data[data.index(b"\r\n\r\n") + 4 :] if b"\r\n\r\n" in data else b""
    out, i = [], 0
    while i + 2 <= len(data):
        opcode, length, start = data[i] & 0x0F, data[i + 1] & 0x7F, i + 2
        if length == 126:
            length, start = int.from_bytes(data[start : start + 2], "big"), start + 2
        elif length == 127:
            length, start = int.from_bytes(data[start : start + 8], "big"), start + 8
        if start + length > len(data):
            break
        out.append((opcode, data[start : start + length]))
        i = start + length
    return out


def test_a_client_that_never_reads_is_closed_and_others_keep_receiving(tmp_path):
    """The slow client is a raw socket that upgrades and then reads nothing until the end."""
    server = Server(tmp_path, env={"CHRONICLE_WS_QUEUE": "8"}).start()
    try:
        ann, _ = server.client().signup("ann@example.org")
        sid = ann.post("/api/sessions", {"title": "Busy", "assistant": False}).json()["id"]
        start = ann.head()
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", server.port))
        slow.sendall(
            f"GET /api/sessions/{sid}/stream?token={ann.token}&after={start} HTTP/1.1\r\nHost: localhost\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        with connect(ws_url(server, f"/api/sessions/{sid}/stream", ann.token, start)) as fast:
            got: list[int] = []
            # The fast client reads while the posts are made (frames are not compressed: 300 of
            # 30 kB do not fit in its buffers, as they would if it read only at the end).
            reader = threading.Thread(target=lambda: got.extend(json.loads(fast.recv(timeout=30))["position"] for _ in range(300)))
            reader.start()
            big = "x" * 30_000
            sent = [ann.post(f"/api/sessions/{sid}/messages", {"content": f"{i} {big}"}).json()["position"] for i in range(300)]
            reader.join(timeout=60)
        assert got == sent
        # Read what the server sent until its close frame (the closing handshake's end, which
        # this client never answers, is up to the server's timeout and not waited for).
        # It reads only once the server has given up on it (as /metrics tells an operator): a
        # client that started reading earlier would be draining its backlog, not too slow.
        closes = "chronicle_websocket_slow_consumer_closes_total 1.0"
        wait_for(lambda: closes in httpx.get(f"{server.url}/metrics").text, "the 4429 close", 30, 0.2)
        slow.settimeout(30)
        data = bytearray()
        closed = False
        while not closed:
            chunk = slow.recv(1 << 20)
            assert chunk, "the connection ended without a close frame"
            data += chunk
            # 0x88 starts a close frame (JSON text frames never hold that byte): parse only then.
            closed = b"\x88" in data[-len(chunk) - 16 :] and any(op == 0x8 for op, _ in raw_frames(data))
        frames_seen = raw_frames(data)
        opcode, payload = frames_seen[-1]
        assert opcode == 0x8 and int.from_bytes(payload[:2], "big") == 4429
        resume = int(payload[2:].decode().rsplit("after=", 1)[1])
        delivered = [json.loads(p)["position"] for op, p in frames_seen if op == 0x1]
        assert delivered == sent[: len(delivered)] and len(delivered) < 300
        assert resume == delivered[-1]
    finally:
        server.stop()


def test_a_stream_ends_with_4401_when_its_token_expires(tmp_path):
    server = Server(tmp_path, env={"CHRONICLE_TOKEN_TTL": "3"}).start()
    try:
        ann, _ = server.client().signup("ann@example.org")
        with connect(ws_url(server, "/api/stream", ann.token, 0)) as ws:
            started = time.monotonic()
            assert close_code(ws, timeout=15) == 4401
            assert time.monotonic() - started < 10
    finally:
        server.stop()


def test_whatever_a_client_sends_on_a_stream_is_ignored_unless_it_is_a_ping_or_typing(server, room):
    ann, bob, _, sid = room
    with connect(ws_url(server, f"/api/sessions/{sid}/stream", bob.token, ann.head())) as ws:
        for junk in (
            "[" * 5000 + "]" * 5000,
            "\udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace"),
            "{}",
            "42",
            '{"type": 7}',
        ):
            ws.send(junk)
        ws.send('{ "type" : "ping" }')
        assert json.loads(ws.recv(timeout=5)) == {"type": "pong"}
    assert "Traceback" not in (server.data_dir / f"server-{server.port}.log").read_text()
