"""Two `chronicle serve` nodes on one PostgreSQL database (a fresh one, dropped after): what it
costs that a post reaches the *other* node, against the same figures on the node that took the
post, in one run.

- projection lag p50/p99: each node's `chronicle_projection_lag_seconds` histogram (on
  PostgreSQL both measure from the commit notification's database time to their own read model);
- delivery: from sending a POST to node A until its frame arrives on a WebSocket subscriber on A
  (same node) and on B (other node), p50/p99, frames lost and duplicated;
- read-your-writes: after A's 201 at position P, a `GET …/messages?after_position=P` on A and on B.

    python -m benchmarks.nodes --posts 500 --rate 50

Posts go one at a time at `--rate` (the figures are latencies, not throughput). The assistant
is off in the session. Loopback only; on a shared 2-core machine compare the two columns of one
run, not figures of different runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from benchmarks.load import lag_buckets, lag_percentiles, percentile
from benchmarks.report import save_json
from tests.e2e.server import SECRET, Server
from tests.postgres import fresh_database


@dataclass
class NodesResult:
    posts: int
    post_errors: int
    frames_lost: int
    frames_duplicated: int
    lag_same_p50_ms: float | None
    lag_same_p99_ms: float | None
    lag_other_p50_ms: float | None
    lag_other_p99_ms: float | None
    delivery_same_p50_ms: float
    delivery_same_p99_ms: float
    delivery_other_p50_ms: float
    delivery_other_p99_ms: float
    read_same_p50_ms: float
    read_same_p99_ms: float
    read_other_p50_ms: float
    read_other_p99_ms: float


def _ms(values: list[float], q: float) -> float:
    return round((statistics.median(values) if q == 0.5 else percentile(values, q)) * 1000, 2) if values else float("nan")


async def _run(a: str, b: str, posts: int, rate: float) -> dict:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        account = {"email": "nodes@example.org", "password": "nodes password", "display_name": "Nodes"}
        async with http.post(f"{a}/api/auth/register", json=account) as r:
            assert r.status == 201, await r.text()
        async with http.post(f"{a}/api/auth/login", json={"email": account["email"], "password": account["password"]}) as r:
            token = (await r.json())["access_token"]
        auth = {"authorization": f"Bearer {token}"}
        async with http.post(f"{a}/api/sessions", json={"title": "nodes", "assistant": False}, headers=auth) as r:
            session = await r.json()
        messages = f"/api/sessions/{session['id']}/messages"
        for url in (a, b):  # a node's projection process may still be starting after its HTTP server answers
            deadline = time.perf_counter() + 60
            while True:
                async with http.get(f"{url}/health") as r:
                    if all(p["position"] >= session["position"] for p in (await r.json())["projections"]):
                        break
                assert time.perf_counter() < deadline, f"{url} did not catch up"
                await asyncio.sleep(0.05)
        sent: dict[int, float] = {}
        received: dict[str, dict[int, float]] = {"same": {}, "other": {}}
        duplicates = 0
        connected = asyncio.Event()
        count = 0

        async def subscriber(name: str, url: str) -> None:
            nonlocal duplicates, count
            stream = f"{url.replace('http', 'ws')}{messages.replace('/messages', '/stream')}?after={session['position']}&token={token}"
            async with http.ws_connect(stream, max_msg_size=0) as ws:
                count += 1
                if count == 2:
                    connected.set()
                mine = received[name]
                async for message in ws:
                    now = time.perf_counter()
                    frame = json.loads(message.data)
                    if frame.get("type") != "message.posted":
                        continue
                    if frame["position"] in mine:
                        duplicates += 1
                    mine[frame["position"]] = now

        tasks = [asyncio.create_task(subscriber("same", a)), asyncio.create_task(subscriber("other", b))]
        await asyncio.wait_for(connected.wait(), 30)
        errors = 0
        reads: dict[str, list[float]] = {"same": [], "other": []}
        lag_before = lag_buckets(a), lag_buckets(b)
        next_at = time.perf_counter()
        for i in range(posts):
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            next_at += 1 / rate
            began = time.perf_counter()
            async with http.post(a + messages, json={"content": f"post {i}"}, headers=auth) as r:
                if r.status != 201:
                    errors += 1
                    continue
                position = (await r.json())["position"]
            sent[position] = began
            name, url = ("other", b) if i % 2 == 0 else ("same", a)  # alternate: both under the same load
            acknowledged = time.perf_counter()
            async with http.get(url + messages, params={"after_position": str(position), "limit": "1"}, headers=auth) as r:
                await r.read()
                if r.status == 200:
                    reads[name].append(time.perf_counter() - acknowledged)
                else:
                    errors += 1
        deadline = time.perf_counter() + 10
        while time.perf_counter() < deadline and any(len(mine) < len(sent) for mine in received.values()):
            await asyncio.sleep(0.05)  # the last frames' arrival, bounded
        lag_after = lag_buckets(a), lag_buckets(b)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    delays = {name: [mine[p] - t for p, t in sent.items() if p in mine] for name, mine in received.items()}
    return {
        "posts": len(sent),
        "errors": errors,
        "lost": sum(len(sent) - len([p for p in sent if p in mine]) for mine in received.values()),
        "duplicates": duplicates,
        "lag_same": lag_percentiles(lag_before[0], lag_after[0]),
        "lag_other": lag_percentiles(lag_before[1], lag_after[1]),
        "delays": delays,
        "reads": reads,
    }


def run(posts: int, rate: float) -> NodesResult:
    with tempfile.TemporaryDirectory(prefix="chronicle-nodes-") as tmp, fresh_database() as url:
        root = Path(tmp)
        (root / "secret.key").write_text(SECRET)
        env = {
            "CHRONICLE_DATABASE_URL": url,
            "CHRONICLE_SECRET_KEY": "",
            "CHRONICLE_SECRET_KEY_FILE": str(root / "secret.key"),
            "CHRONICLE_BLOB_DIR": str(root / "blobs"),
            "CHRONICLE_ASSISTANT_ANSWERS": "",
        }
        a = Server(root / "a", env=env, log_dir=root).start(timeout=90)
        try:
            b = Server(root / "b", env=env, log_dir=root).start(timeout=90)
            try:
                raw = asyncio.run(_run(a.url, b.url, posts, rate))
            finally:
                b.stop()
        finally:
            a.stop()
    delays, reads = raw["delays"], raw["reads"]
    return NodesResult(
        raw["posts"],
        raw["errors"],
        raw["lost"],
        raw["duplicates"],
        *raw["lag_same"],
        *raw["lag_other"],
        _ms(delays["same"], 0.5),
        _ms(delays["same"], 0.99),
        _ms(delays["other"], 0.5),
        _ms(delays["other"], 0.99),
        _ms(reads["same"], 0.5),
        _ms(reads["same"], 0.99),
        _ms(reads["other"], 0.5),
        _ms(reads["other"], 0.99),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=500)
    parser.add_argument("--rate", type=float, default=50.0, help="posts per second, one at a time")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args.posts, args.rate)
    r = result
    print(f"{r.posts} posts through node A, {r.post_errors} errors, {r.frames_lost} frames lost, {r.frames_duplicated} duplicated")
    print("| figure (ms) | same node (A) p50 / p99 | other node (B) p50 / p99 |")
    print("|---|---|---|")
    print(f"| projection lag (≤ bucket) | {r.lag_same_p50_ms} / {r.lag_same_p99_ms} | {r.lag_other_p50_ms} / {r.lag_other_p99_ms} |")
    print(
        f"| POST sent → frame received | {result.delivery_same_p50_ms} / {result.delivery_same_p99_ms} | "
        f"{result.delivery_other_p50_ms} / {result.delivery_other_p99_ms} |"
    )
    print(
        f"| 201 → read with after_position answered | {result.read_same_p50_ms} / {result.read_same_p99_ms} | "
        f"{result.read_other_p50_ms} / {result.read_other_p99_ms} |"
    )
    save_json(args.json, asdict(result))


if __name__ == "__main__":
    main()
