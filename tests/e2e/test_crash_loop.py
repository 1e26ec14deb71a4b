"""`kill -9` of the server at random moments under mixed load, twenty times on one data
directory: every acknowledged command is in the log exactly once, at most one reply outcome per
message, the read models equal a rebuild from the log, and the hash chain verifies."""

from __future__ import annotations

import json
import random
import sqlite3
import threading
import time
from collections import Counter
from contextlib import closing

import httpx
import pytest

from tests.backend import stored_events
from tests.e2e.server import Server, cli
from tests.e2e.test_durability import read_tables, wait_caught_up
from tests.waiting import wait_for

pytestmark = pytest.mark.e2e

ROUNDS = 20


def load(client, sid: str, acked: dict[str, list], stop: threading.Event, seed: int) -> None:
    """Posts, questions, edits of its own messages and uploads until the server dies."""
    rng = random.Random(seed)
    mine: list[str] = []
    n = 0
    while not stop.is_set():
        n += 1
        try:
            choice = rng.random()
            if choice < 0.5 or not mine:
                content = f"question {seed}-{n}?" if rng.random() < 0.3 else f"note {seed}-{n}"
                response = client.post(f"/api/sessions/{sid}/messages", {"content": content}, timeout=5)
                if response.status_code == 201:
                    mine.append(response.json()["id"])
                    acked["posts"].append(response.json()["id"])
            elif choice < 0.8:
                target = rng.choice(mine)
                response = client.patch(f"/api/sessions/{sid}/messages/{target}", {"content": f"edit {seed}-{n}"}, timeout=5)
                if response.status_code == 200:
                    acked["edits"].append((target, response.json()["version"]))
            else:
                files = {"file": (f"f{seed}-{n}.txt", f"file {seed}-{n}".encode(), "text/plain")}
                response = client.post("/api/documents", files=files, data={"session_id": sid}, timeout=5)
                if response.status_code == 201:
                    document = response.json()["id"]
                    acked["documents"].append(document)
                    client.post(f"/api/documents/{document}/conversions", {"target": "text"}, timeout=5)
        except httpx.TransportError:
            return


def owed(data_dir) -> int:
    """What the server's workers still owe, once its read models hold the whole log: conversions
    not finished, and questions without a reply outcome (test servers answer every message)."""
    with closing(sqlite3.connect(f"file:{data_dir / 'read.sqlite3'}?mode=ro", uri=True)) as db:
        conversions = db.execute("SELECT count(*) FROM conversions WHERE status IN ('pending', 'running')").fetchone()[0]
    events = stored_events(data_dir)
    questions = {r.originator_id for r in events if r.topic.endswith("MessagePosted") and json.loads(r.state)["role"] == "user"}
    answered = {
        json.loads(r.state)["message_id"]["_data_"].replace("-", "")
        for r in events
        if r.topic.endswith(("AssistantReplyCompleted", "AssistantReplyFailed"))
    }
    return conversions + len(questions - answered)


def settle(server, data_dir, timeout: float = 90) -> None:
    """Until the workers owe nothing and the read models hold the whole log: only then does
    nothing more append on its own (a conversion resumed after the last kill, completed after a
    first catch-up, made the tables differ from the rebuild)."""
    api = server.client()
    wait_for(lambda: wait_caught_up(api) and owed(data_dir) == 0, "the workers to owe nothing", timeout=timeout, poll=0.1)
    wait_caught_up(api)  # what was recorded while the log was read


@pytest.mark.timeout(360)  # 21 server starts of a few seconds each on a loaded 2-core host
def test_twenty_kill_9s_under_mixed_load_lose_and_double_nothing(tmp_path):
    rng = random.Random(20261202)
    acked: dict[str, list] = {"posts": [], "edits": [], "documents": []}
    people = []
    server = Server(tmp_path).start()
    for i in range(3):
        client, _ = server.client().signup(f"crash{i}@example.org")
        people.append((client.token, client.post("/api/sessions", {"title": f"crash {i}"}).json()["id"]))
    server.stop()
    for round_ in range(ROUNDS):
        server = Server(tmp_path).start()
        stop = threading.Event()
        threads = [
            threading.Thread(target=load, args=(server.client(token), sid, acked, stop, round_ * 10 + i))
            for i, (token, sid) in enumerate(people)
        ]
        for thread in threads:
            thread.start()
        time.sleep(rng.uniform(0.2, 1.2))  # not a wait for anything: the random moment of the kill
        server.kill()
        stop.set()
        for thread in threads:
            thread.join()
    assert len(acked["posts"]) > 100 and acked["edits"] and acked["documents"]

    server = Server(tmp_path).start()
    try:
        settle(server, tmp_path)
    finally:
        server.stop()
    events = stored_events(tmp_path)
    posted = Counter(r.originator_id for r in events if r.topic.endswith("MessagePosted"))
    versions = {(r.originator_id, r.originator_version) for r in events}
    uploaded = {r.originator_id for r in events if r.topic.endswith("DocumentUploaded")}
    outcomes = Counter(
        json.loads(r.state)["message_id"]["_data_"] for r in events if r.topic.endswith(("AssistantReplyCompleted", "AssistantReplyFailed"))
    )
    assert all(posted[m.replace("-", "")] == 1 for m in acked["posts"])
    assert all((m.replace("-", ""), v) in versions for m, v in acked["edits"])
    assert {d.replace("-", "") for d in acked["documents"]} <= uploaded
    assert outcomes and max(outcomes.values()) == 1  # no question answered twice
    before = read_tables(tmp_path)
    rebuilt = cli(tmp_path, "projections", "rebuild", "--all")
    assert rebuilt.returncode == 0, rebuilt.stderr
    after = read_tables(tmp_path)
    assert before == after
    verified = cli(tmp_path, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
