"""Load tool: starts a real `chronicle serve` on a fresh data directory and posts messages
from many concurrent HTTP clients, then reports throughput, latency and read-model lag.

    python -m benchmarks.load --clients 50 --sessions 50 --seconds 10

Traffic goes only to 127.0.0.1; every loop is bounded by count and time. By default the
server is pinned to CPU 0 and this load generator to CPU 1, so the two do not steal
each other's core on a 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

from tests.e2e.server import Server


@dataclass
class PostingResult:
    clients: int
    sessions: int
    seconds: float
    messages: int
    errors: int
    messages_per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    read_model_catch_up_ms: float
    read_after_write_p50_ms: float
    read_after_write_p99_ms: float
    server_rss_mb: float


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def _setup(http: aiohttp.ClientSession, url: str, sessions: int) -> list[tuple[str, str]]:
    """One user per session: (token, session id)."""
    pairs = []
    for i in range(sessions):
        body = {"email": f"load{i}@example.org", "password": "load password", "display_name": f"L{i}"}
        async with http.post(f"{url}/api/auth/register", json=body) as r:
            assert r.status == 201, await r.text()
        async with http.post(f"{url}/api/auth/login", json={"email": body["email"], "password": body["password"]}) as r:
            token = (await r.json())["access_token"]
        async with http.post(f"{url}/api/sessions", json={"title": f"load {i}"}, headers={"authorization": f"Bearer {token}"}) as r:
            pairs.append((token, (await r.json())["id"]))
    return pairs


async def _post_load(url: str, clients: int, sessions: int, seconds: float, max_messages: int) -> dict:
    connector = aiohttp.TCPConnector(limit=clients + 10)
    async with aiohttp.ClientSession(connector=connector) as http:
        pairs = await _setup(http, url, sessions)
        latencies: list[float] = []
        positions: list[int] = []
        errors = 0
        sent = 0
        deadline = time.perf_counter() + seconds

        async def client(n: int) -> None:
            nonlocal errors, sent
            token, sid = pairs[n % len(pairs)]
            headers = {"authorization": f"Bearer {token}"}
            i = 0
            while time.perf_counter() < deadline and sent < max_messages:
                sent += 1
                started = time.perf_counter()
                async with http.post(f"{url}/api/sessions/{sid}/messages", json={"content": f"message {n}-{i} about the launch plan"}, headers=headers) as r:
                    body = await r.read()
                    if r.status != 201:
                        errors += 1
                        continue
                latencies.append(time.perf_counter() - started)
                positions.append(json.loads(body)["position"])
                i += 1

        started = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed = time.perf_counter() - started

        # Time until the read model shows the last acknowledged message.
        token, sid = pairs[0]
        t0 = time.perf_counter()
        async with http.get(f"{url}/api/sessions/{sid}/messages", params={"limit": 1, "after_position": max(positions)}, headers={"authorization": f"Bearer {token}"}) as r:
            assert r.status == 200
        catch_up = time.perf_counter() - t0

        # Read-your-writes latency at rest: post, then read with after_position.
        ryw: list[float] = []
        for k in range(100):
            token, sid = pairs[k % len(pairs)]
            headers = {"authorization": f"Bearer {token}"}
            async with http.post(f"{url}/api/sessions/{sid}/messages", json={"content": "probe"}, headers=headers) as r:
                position = (await r.json())["position"]
            t0 = time.perf_counter()
            async with http.get(f"{url}/api/sessions/{sid}/messages", params={"limit": 1, "after_position": position}, headers=headers) as r:
                assert r.status == 200
            ryw.append(time.perf_counter() - t0)
        return {"latencies": latencies, "errors": errors, "elapsed": elapsed, "catch_up": catch_up, "ryw": ryw}


def run(clients: int, sessions: int, seconds: float, max_messages: int, pin: bool, url: str | None = None) -> PostingResult:
    if url:
        raw = asyncio.run(_post_load(url, clients, sessions, seconds, max_messages))
        return _result(clients, sessions, raw, float("nan"))
    with tempfile.TemporaryDirectory(prefix="chronicle-load-") as tmp:
        server = Server(Path(tmp), env={"CHRONICLE_RATE_LIMIT_POSTS": "0", "CHRONICLE_RATE_LIMIT_LOGIN": "0"})
        server.start()
        try:
            if pin and os.cpu_count() and os.cpu_count() >= 2:
                os.sched_setaffinity(server.process.pid, {0})
                for task in Path(f"/proc/{server.process.pid}/task").iterdir():
                    os.sched_setaffinity(int(task.name), {0})
                os.sched_setaffinity(0, {1})
            raw = asyncio.run(_post_load(server.url, clients, sessions, seconds, max_messages))
            rss = rss_mb(server.process.pid)
        finally:
            server.stop()
    return _result(clients, sessions, raw, rss)


def _result(clients: int, sessions: int, raw: dict, rss: float) -> PostingResult:
    ms = [x * 1000 for x in raw["latencies"]]
    ryw = [x * 1000 for x in raw["ryw"]]
    return PostingResult(
        clients=clients, sessions=sessions, seconds=round(raw["elapsed"], 2), messages=len(ms), errors=raw["errors"],
        messages_per_second=round(len(ms) / raw["elapsed"], 1),
        p50_ms=round(percentile(ms, 0.50), 2), p95_ms=round(percentile(ms, 0.95), 2),
        p99_ms=round(percentile(ms, 0.99), 2), max_ms=round(max(ms, default=float("nan")), 2),
        read_model_catch_up_ms=round(raw["catch_up"] * 1000, 2),
        read_after_write_p50_ms=round(statistics.median(ryw), 2), read_after_write_p99_ms=round(percentile(ryw, 0.99), 2),
        server_rss_mb=round(rss, 1),
    )


def markdown(results: list[PostingResult]) -> str:
    head = "| clients | sessions | messages | errors | msg/s | p50 ms | p95 ms | p99 ms | read model catch-up ms | read-after-write p50/p99 ms | server RSS MB |"
    rows = [head, "|" + "---|" * 11]
    for r in results:
        rows.append(
            f"| {r.clients} | {r.sessions} | {r.messages} | {r.errors} | {r.messages_per_second:,.0f} | {r.p50_ms} | {r.p95_ms} | "
            f"{r.p99_ms} | {r.read_model_catch_up_ms} | {r.read_after_write_p50_ms} / {r.read_after_write_p99_ms} | {r.server_rss_mb} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[50])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-messages", type=int, default=1_000_000)
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and load generator to separate cores")
    parser.add_argument("--url", help="load this running server instead of starting one (fresh data directory expected)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    results = [run(c, args.sessions, args.seconds, args.max_messages, not args.no_pin, args.url) for c in args.clients]
    print(markdown(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    sys.exit(main())
