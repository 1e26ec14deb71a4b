"""Crash safety and rebuilds, with real server processes."""

import random
import sqlite3
import threading
import time

import httpx
import pytest

from tests.backend import stored_events
from tests.e2e.server import Server, cli

pytestmark = pytest.mark.e2e


def wait_caught_up(api, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = api.get("/health").json()
        if all(p["lag"] == 0 for p in health["projections"]):
            return health["head"]
        time.sleep(0.05)
    raise AssertionError("projections did not catch up")


FTS_SHADOWS = ("_data", "_idx", "_docsize", "_config", "_content")


def read_tables(data_dir) -> dict[str, list[tuple]]:
    """Every read table's rows; a full-text index by its indexed rows, not its internal b-trees.
    The store's own record of how it was built (positions, the rebuild generation that ETags
    carry, the key generation it was built at) differs between a store built live and one
    rebuilt, and shows nobody anything."""
    db = sqlite3.connect(f"file:{data_dir / 'read.sqlite3'}?mode=ro", uri=True)
    try:
        tables = [
            r[0]
            for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            if r[0] not in ("projection_positions", "read_generation", "replica_key_generation")
            and not (r[0].startswith(("message_search_", "document_passages_")) and r[0].endswith(FTS_SHADOWS))
        ]
        return {t: sorted(db.execute(f"SELECT rowid, * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        db.close()


def test_every_acknowledged_message_survives_kill_9_exactly_once(tmp_path):
    server = Server(tmp_path).start()
    anon = server.client()
    clients = []
    for i in range(4):
        client, _ = anon.signup(f"writer{i}@example.org")
        client.sid = client.post("/api/sessions", {"title": f"s{i}"}).json()["id"]
        clients.append(client)
    acked: list[tuple[str, str, int]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def burst(client) -> None:
        n = 0
        while not stop.is_set():
            try:
                response = client.post(f"/api/sessions/{client.sid}/messages", {"content": f"m{n}"}, timeout=5)
            except httpx.TransportError:
                return
            if response.status_code == 201:
                with lock:
                    acked.append((client.sid, response.json()["id"], response.json()["position"]))
            n += 1

    threads = [threading.Thread(target=burst, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(acked) < 200 and time.monotonic() < deadline:  # kill it in the middle of a load, not before one
        time.sleep(0.05)  # polling interval of an explicit wait
    server.kill()
    stop.set()
    for t in threads:
        t.join()
    assert len(acked) > 50

    restarted = Server(tmp_path).start()
    try:
        stored = {row.originator_id for row in stored_events(tmp_path, "MessagePosted")}
        assert {mid.replace("-", "") for _, mid, _ in acked} <= stored
        last = max(p for _, _, p in acked)
        for client in clients:
            fresh = restarted.client(client.token)
            seen, cursor = [], None
            while True:
                params = {"limit": 500, "after_position": last, **({"cursor": cursor} if cursor else {})}
                page = fresh.get(f"/api/sessions/{client.sid}/messages", params=params).json()
                seen += [m["id"] for m in page["items"]]
                if not (cursor := page["next_cursor"]):
                    break
            assert len(seen) == len(set(seen))
            assert {mid for sid, mid, _ in acked if sid == client.sid} <= set(seen)
    finally:
        restarted.stop()


def test_rebuild_all_while_serving_gives_identical_read_tables(tmp_path):
    server = Server(tmp_path).start()
    try:
        anon = server.client()
        rng = random.Random(20261126)
        people = [anon.signup(f"p{i}@example.org") for i in range(4)]
        sessions: list[tuple[object, str]] = []
        messages: list[tuple[object, str, str]] = []
        for _ in range(300):
            client, user = rng.choice(people)
            roll = rng.random()
            if roll < 0.1 or not sessions:
                sid = client.post("/api/sessions", {"title": f"t{rng.randrange(1000)}", "assistant": False}).json()["id"]
                sessions.append((client, sid))
            elif roll < 0.6:
                owner, sid = rng.choice(sessions)
                r = owner.post(f"/api/sessions/{sid}/messages", {"content": f"c{rng.randrange(10**6)}"})
                if r.status_code == 201:
                    messages.append((owner, sid, r.json()["id"]))
            elif roll < 0.7 and messages:
                owner, sid, mid = rng.choice(messages)
                owner.patch(f"/api/sessions/{sid}/messages/{mid}", {"content": f"e{rng.randrange(10**6)}"})
            elif roll < 0.75 and messages:
                owner, sid, mid = rng.choice(messages)
                owner.delete(f"/api/sessions/{sid}/messages/{mid}")
            elif roll < 0.85:
                owner, sid = rng.choice(sessions)
                owner.post(f"/api/sessions/{sid}/members", {"user_id": rng.choice(people)[1]["id"]})
            elif roll < 0.9:
                owner, sid = rng.choice(sessions)
                owner.patch(f"/api/sessions/{sid}", {"title": f"r{rng.randrange(1000)}"})
            elif roll < 0.95:
                owner, sid = rng.choice(sessions)
                member = rng.choice(people)[1]["id"]
                owner.delete(f"/api/sessions/{sid}/members/{member}")
            else:
                owner, sid = rng.choice(sessions)
                owner.delete(f"/api/sessions/{sid}")
        head = wait_caught_up(anon)
        before = read_tables(tmp_path)
        assert sum(len(rows) for rows in before.values()) > 100

        rebuilt = cli(tmp_path, "projections", "rebuild", "--all")
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert f"{head} events" in rebuilt.stderr
        assert wait_caught_up(anon) == head
        assert read_tables(tmp_path) == before
    finally:
        server.stop()


def test_projections_status_and_cli_errors(tmp_path):
    made = cli(tmp_path, "users", "create", "admin@example.org", "--role", "admin", "--password-stdin", input="long password\n")
    assert made.returncode == 0 and made.stdout.strip()
    again = cli(tmp_path, "users", "create", "ADMIN@example.org", "--password-stdin", input="long password\n")
    assert again.returncode == 1 and "already registered" in again.stderr
    short = cli(tmp_path, "users", "create", "x@example.org", "--password-stdin", input="short\n")
    assert short.returncode == 2
    status = cli(tmp_path, "projections", "status")
    assert status.returncode == 0 and "users" in status.stdout and "messages" in status.stdout
    unknown = cli(tmp_path, "projections", "rebuild", "nonsense")
    assert unknown.returncode == 2 and "no projection" in unknown.stderr
    rebuilt = cli(tmp_path, "projections", "rebuild", "users")
    assert rebuilt.returncode == 0 and "2 events" in rebuilt.stderr
