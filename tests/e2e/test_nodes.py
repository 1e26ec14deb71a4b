"""Several `chronicle serve` nodes on one PostgreSQL database (its own, dropped after): each with
its own data directory (its read replica), all sharing the signing key (a file) and a blob
directory. Any node takes any request: live delivery, resuming, read-your-writes and uploads
across nodes, concurrent posting through every node, and ephemeral frames carried between
nodes (ADR-042)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from websockets.sync.client import ClientConnection, connect

from projections.frame_types import decode_any_frame
from tests.e2e.server import CHRONICLE, SECRET, Api, Server, free_port
from tests.postgres import fresh_database

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]
START_SECONDS = 90
"""Two servers and their projection processes start one after the other on a shared 2-core host."""


@dataclass
class Cluster:
    a: Server
    b: Server
    database_url: str
    blob_dir: Path
    secret_file: Path

    @property
    def nodes(self) -> list[Server]:
        return [self.a, self.b]


def node_env(database_url: str, secret_file: Path, blob_dir: Path, **extra: str) -> dict[str, str]:
    """A node's configuration: the shared database, key file and blob directory (no key in the environment)."""
    return {
        "CHRONICLE_DATABASE_URL": database_url,
        "CHRONICLE_SECRET_KEY": "",
        "CHRONICLE_SECRET_KEY_FILE": str(secret_file),
        "CHRONICLE_BLOB_DIR": str(blob_dir),
        **extra,
    }


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two nodes. Both run the chat engine: node A answers every message (`all`, paced so that a
    reply streams for a while), node B only questions, so a plain statement is answered by A alone."""
    root = tmp_path_factory.mktemp("nodes")
    secret_file = root / "secret.key"
    secret_file.write_text(SECRET + "\n")
    blob_dir = root / "shared-blobs"
    with fresh_database() as url:
        a = Server(root / "a", env=node_env(url, secret_file, blob_dir, CHRONICLE_ASSISTANT_PACE="0.05"), log_dir=root)
        b = Server(root / "b", env=node_env(url, secret_file, blob_dir, CHRONICLE_ASSISTANT_ANSWERS="questions"), log_dir=root)
        a.start(timeout=START_SECONDS)
        try:
            b.start(timeout=START_SECONDS)
            try:
                probe, _ = a.client().signup("probe@example.org", name="Probe")
                for node in (a, b):
                    caught_up(node, probe.head())
                yield Cluster(a, b, url, blob_dir, secret_file)
            finally:
                b.stop()
        finally:
            a.stop()


def caught_up(node: Server, position: int, timeout: float = 60) -> None:
    """Waits until every read model of `node` has reached `position` (its projection process,
    started after the HTTP server answers, may still be importing on a loaded host)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = node.client().get("/health").json()
        if all(p["position"] >= position for p in health["projections"]):
            return
        time.sleep(0.05)
    raise AssertionError(f"{node.url} did not reach position {position} within {timeout:g} s")


_emails = iter(range(1_000_000))


def on(node: Server, api: Api) -> Api:
    """The same signed-in user, talking to another node (every node accepts every node's tokens)."""
    return Api(node.url, api.token)


@pytest.fixture
def room(cluster: Cluster) -> tuple[Api, Api, str]:
    """Ann (signed up on A) and Bob (signed up on B) in Ann's session, assistant off."""
    ann, _ = cluster.a.client().signup(f"ann{next(_emails)}@example.org", name="Ann")
    bob, bob_user = cluster.b.client().signup(f"bob{next(_emails)}@example.org", name="Bob")
    sid = ann.post("/api/sessions", {"title": "Across nodes", "assistant": False}).json()["id"]
    added = ann.post(f"/api/sessions/{sid}/members", {"user_id": bob_user["id"]})
    assert added.status_code in (200, 201), added.text
    return ann, bob, sid


def stream(node: Server, api: Api, sid: str, after: int) -> ClientConnection:
    return connect(f"ws://127.0.0.1:{node.port}/api/sessions/{sid}/stream?token={api.token}&after={after}")


def next_frame(ws: ClientConnection, timeout: float = 10) -> dict:
    raw = ws.recv(timeout=timeout)
    decode_any_frame(raw)
    return json.loads(raw)


def posted(ws: ClientConnection, count: int) -> list[dict]:
    """The next `count` stored `message.posted` frames (other frames in between are skipped)."""
    seen: list[dict] = []
    while len(seen) < count:
        frame = next_frame(ws)
        if frame.get("type") == "message.posted":
            seen.append(frame)
    return seen


def test_a_subscriber_on_one_node_receives_what_is_posted_through_the_other_in_order_exactly_once(cluster: Cluster, room):
    ann, bob, sid = room
    with stream(cluster.b, on(cluster.b, bob), sid, bob.head()) as ws:
        sent = [ann.post(f"/api/sessions/{sid}/messages", {"content": f"through A #{i}"}).json() for i in range(20)]
        frames = posted(ws, 20)
        assert [(f["position"], f["data"]["content"]) for f in frames] == [(m["position"], m["content"]) for m in sent]
        # Nothing repeated: the very next stored frame is the one posted after them, through B.
        last = bob.post(f"/api/sessions/{sid}/messages", {"content": "through B"}).json()
        frame = next_frame(ws)
        assert (frame["type"], frame["position"], frame["data"]["content"]) == ("message.posted", last["position"], "through B")


def test_resuming_on_the_other_node_misses_nothing(cluster: Cluster, room):
    ann, bob, sid = room
    start = ann.head()
    first = [ann.post(f"/api/sessions/{sid}/messages", {"content": f"first {i}"}).json() for i in range(5)]
    with stream(cluster.a, ann, sid, start) as ws:
        seen = posted(ws, 3)
    resume_after = seen[-1]["position"]
    later = [ann.post(f"/api/sessions/{sid}/messages", {"content": f"later {i}"}).json() for i in range(5)]
    with stream(cluster.b, on(cluster.b, bob), sid, resume_after) as ws:
        rest = posted(ws, 7)
        assert [f["data"]["content"] for f in seen + rest] == [m["content"] for m in first + later]
        assert [f["position"] for f in rest] == [m["position"] for m in first[3:] + later]


def test_concurrent_posting_through_every_node_is_in_the_log_once_and_every_node_streams_one_order(cluster: Cluster, room):
    ann, bob, sid = room
    start = ann.head()
    per_client = 15
    writers = [ann, on(cluster.b, ann), bob, on(cluster.a, bob)]
    with ExitStack() as streams:
        subscribers = [streams.enter_context(stream(node, on(node, ann), sid, start)) for node in cluster.nodes]

        def post_all(writer: Api, k: int) -> list[dict]:
            answers = [writer.post(f"/api/sessions/{sid}/messages", {"content": f"writer {k} post {i}"}) for i in range(per_client)]
            assert all(r.status_code == 201 for r in answers), [r.text for r in answers if r.status_code != 201]
            return [r.json() for r in answers]

        with ThreadPoolExecutor(len(writers)) as pool:
            acknowledged = [m for batch in pool.map(post_all, writers, range(len(writers))) for m in batch]
        orders = [[(f["position"], f["data"]["id"]) for f in posted(ws, len(acknowledged))] for ws in subscribers]
    expected = sorted((m["position"], m["id"]) for m in acknowledged)
    assert len({m["id"] for m in acknowledged}) == len({m["position"] for m in acknowledged}) == len(acknowledged)
    assert orders[0] == orders[1] == expected
    # The log holds each acknowledged post once, as both nodes' read models say.
    head = max(m["position"] for m in acknowledged)
    for node in cluster.nodes:
        listed = on(node, ann).get(f"/api/sessions/{sid}/messages", params={"after_position": head, "limit": 200}).json()["items"]
        ids = [item["id"] for item in listed]
        assert len(ids) == len(set(ids)) and {m["id"] for m in acknowledged} <= set(ids)


def test_a_write_acknowledged_by_one_node_is_read_on_the_other_with_after_position(cluster: Cluster, room):
    ann, bob, sid = room
    for i in range(10):
        writer, reader = (ann, on(cluster.b, ann)) if i % 2 == 0 else (on(cluster.b, bob), on(cluster.a, bob))
        message = writer.post(f"/api/sessions/{sid}/messages", {"content": f"read me {i}"}).json()
        page = reader.get(f"/api/sessions/{sid}/messages", params={"after_position": message["position"], "limit": 200})
        assert page.status_code == 200, page.text
        assert message["id"] in [item["id"] for item in page.json()["items"]]


def test_an_assistant_reply_streams_its_ephemeral_frames_to_a_subscriber_on_the_other_node(cluster: Cluster):
    ann, _ = cluster.a.client().signup(f"ann{next(_emails)}@example.org", name="Ann")
    sid = ann.post("/api/sessions", {"title": "Assistant across nodes", "assistant": True}).json()["id"]
    with stream(cluster.b, on(cluster.b, ann), sid, ann.head()) as ws:
        # A statement: node A answers it (`all`), node B does not (`questions`); the pieces
        # reach B's subscriber only through the relay, the outcome through B's own projection.
        question = ann.post(f"/api/sessions/{sid}/messages", {"content": "The launch moves to Friday, said the release manager."})
        seen: list[dict] = []
        while not (seen and seen[-1]["type"] == "reply.completed"):
            seen.append(next_frame(ws))
    completed = seen[-1]["data"]
    assert completed["reply_to"] == question.json()["id"]
    deltas = [f for f in seen if f["type"] == "reply.delta" and f["reply_id"] == completed["reply_id"]]
    assert [f["type"] for f in seen if f.get("reply_id") == completed["reply_id"]][0] == "reply.started"
    assert deltas and [d["seq"] for d in deltas] == list(range(1, len(deltas) + 1))
    assert "".join(d["delta"] for d in deltas) == completed["content"]


def test_typing_on_one_node_reaches_a_member_on_the_other_and_not_a_stranger(cluster: Cluster, room):
    ann, bob, sid = room
    eve, _ = cluster.b.client().signup(f"eve{next(_emails)}@example.org", name="Eve")
    eve_sid = eve.post("/api/sessions", {"title": "Eve's own", "assistant": False}).json()["id"]
    with (
        stream(cluster.b, on(cluster.b, bob), sid, bob.head()) as bob_ws,
        stream(cluster.b, eve, eve_sid, eve.head()) as eve_ws,
        stream(cluster.a, ann, sid, ann.head()) as ann_ws,
    ):
        ann_ws.send('{"type":"typing"}')
        frame = next_frame(bob_ws)
        assert (frame["type"], frame["display_name"], frame["session_id"]) == ("typing", "Ann", sid)
        mine = eve.post(f"/api/sessions/{eve_sid}/messages", {"content": "only mine"}).json()
        assert next_frame(eve_ws)["position"] == mine["position"]  # no typing frame of another session came first


def test_an_upload_through_one_node_downloads_from_the_other_and_the_same_bytes_through_both_are_one_file(cluster: Cluster):
    ann, _ = cluster.a.client().signup(f"ann{next(_emails)}@example.org", name="Ann")
    data = os.urandom(200_000)
    first = ann.post("/api/documents", files={"file": ("one.bin", data, "application/octet-stream")})
    assert first.status_code == 201, first.text
    document = first.json()
    ann_b = on(cluster.b, ann)
    assert ann_b.get(f"/api/documents/{document['id']}", params={"after_position": document["position"]}).status_code == 200
    download = ann_b.get(f"/api/documents/{document['id']}/content")
    assert download.status_code == 200 and download.content == data
    second = ann_b.post("/api/documents", files={"file": ("two.bin", data, "application/octet-stream")})
    assert second.status_code == 201, second.text
    assert second.json()["sha256"] == document["sha256"]
    stored = [p for p in cluster.blob_dir.glob("??/??/*") if p.name == document["sha256"]]
    assert len(stored) == 1 and stored[0].read_bytes() == data
    for node in cluster.nodes:
        assert not (node.data_dir / "blobs").exists() or not any((node.data_dir / "blobs").glob("??/??/*"))


def test_a_node_on_postgresql_without_the_shared_signing_key_refuses_to_start(tmp_path: Path):
    env = {
        **os.environ,
        "CHRONICLE_DATABASE_URL": "postgresql://127.0.0.1:5432/never-opened",
        "CHRONICLE_SECRET_KEY": "",
        "CHRONICLE_SECRET_KEY_FILE": "",
    }
    started = subprocess.run(
        [CHRONICLE, "serve", "--data-dir", str(tmp_path / "c"), "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert started.returncode == 2, started.stderr
    assert "CHRONICLE_SECRET_KEY_FILE" in started.stderr and "Traceback" not in started.stderr
    assert not (tmp_path / "c" / "secret.key").exists()
    missing = subprocess.run(
        [CHRONICLE, "serve", "--data-dir", str(tmp_path / "c"), "--port", str(free_port())],
        env={**env, "CHRONICLE_SECRET_KEY_FILE": str(tmp_path / "no-such-key")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "no-such-key" in missing.stderr and "Traceback" not in missing.stderr


def listeners(database_url: str) -> dict[str, set[int]]:
    """The nodes' notification connections by `application_name`: backend pids (this test's
    database only: other tests' nodes share the server)."""
    with psycopg.connect(database_url, autocommit=True) as db:
        rows = db.execute(
            "SELECT application_name, pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'chronicle % l%'"
        ).fetchall()
    found: dict[str, set[int]] = {}
    for name, pid in rows:
        found.setdefault(name, set()).add(pid)
    return found


def test_the_nodes_listen_again_by_themselves_after_postgresql_drops_their_connections(cluster: Cluster, room):
    ann, bob, sid = room
    before = listeners(cluster.database_url)
    assert {name: len(pids) for name, pids in before.items()} == {"chronicle log listener": 2, "chronicle frame relay listener": 2}
    with psycopg.connect(cluster.database_url, autocommit=True) as db:
        db.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name LIKE 'chronicle %' AND pid <> pg_backend_pid()"
        )
    deadline = time.monotonic() + 30
    while True:
        now = listeners(cluster.database_url)
        fresh = {name: pids - before.get(name, set()) for name, pids in now.items()}
        if all(len(fresh.get(name, ())) == 2 for name in before):
            break
        assert time.monotonic() < deadline, f"the nodes did not listen again within 30 s: {now}"
        time.sleep(0.1)
    with stream(cluster.b, on(cluster.b, bob), sid, bob.head()) as ws:
        message = ann.post(f"/api/sessions/{sid}/messages", {"content": "after the drop"}).json()
        frame = next_frame(ws)
        assert (frame["position"], frame["data"]["content"]) == (message["position"], "after the drop")
        # The relay's sender finds its connection dropped when it next sends (that frame is
        # lost, as ephemeral frames may be) and reconnects: a later typing notice crosses.
        for _attempt in range(10):
            with stream(cluster.a, ann, sid, ann.head()) as ann_ws:
                ann_ws.send('{"type":"typing"}')
                try:
                    typing = next_frame(ws, timeout=3)
                    break
                except TimeoutError:
                    continue
        else:
            raise AssertionError("no typing notice crossed from A to B after the relay's connections were dropped")
        assert (typing["type"], typing["display_name"]) == ("typing", "Ann")
