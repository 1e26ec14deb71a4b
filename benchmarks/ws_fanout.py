"""WebSocket fan-out benchmark: a real `chronicle serve`, S subscribers spread over N sessions,
HTTP posters posting at a fixed rate; reports, for every subscriber, the delay from the POST's
201 to the frame's receipt (p50/p99), frames delivered per second, frames lost or duplicated,
and the server's memory.

    python -m benchmarks.ws_fanout --subscribers 500 --sessions 50 --rate 1000 --seconds 30
    python -m benchmarks.ws_fanout --nodes 1 2 --rate 400     # PostgreSQL: one node, then two

`--nodes` runs on a fresh PostgreSQL database (127.0.0.1:5432, dropped after) with that many
`chronicle serve` nodes, once per count given: subscribers and posters are spread over the nodes
(subscriber k and poster n on node k mod N, n mod N), so with two nodes half of every session's
frames cross from the other node.

The assistant follows its default rule (it answers questions; the posts are not questions), so
every frame counted is a post's. `--profile FILE.prof` runs the server under cProfile and writes
each run's statistics to FILE-N.prof (N counts the runs from 0) when the server stops (the profiler slows the server: use it for where the
time goes, not for rates). Loopback only; the posting loop is bounded by count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import msgspec

from benchmarks.load import _proc_stat, _users_and_sessions, lag_buckets, lag_percentiles, percentile
from benchmarks.report import save_json
from tests.e2e.server import Server
from tests.postgres import fresh_database


class _Positioned(msgspec.Struct):
    position: int = -1


_position = msgspec.json.Decoder(_Positioned).decode


@dataclass
class FanoutResult:
    subscribers: int
    sessions: int
    target_rate: float
    posted: int
    post_errors: int
    posts_per_second: float
    frames_expected: int
    frames_delivered: int
    frames_lost: int
    frames_duplicated: int
    frames_per_second: float
    delivery_p50_ms: float
    delivery_p99_ms: float
    delivery_max_ms: float
    projection_lag_p50_ms: float | None
    projection_lag_p99_ms: float | None
    server_rss_mb: float
    server_cpu_seconds: float
    server_cpu_us_per_frame: float
    """Server CPU (all its processes) during posting, per frame delivered: posts included."""
    client_cpu_us_per_frame: float
    """This benchmark's own CPU (its subscribers and posters, one process) per frame delivered:
    with the server's, what the machine's cores must hold for a rate (both share them here)."""


async def _run(
    urls: list[str], subscribers: int, sessions: int, rate: float, seconds: float, cpu: Callable[[], float] = lambda: 0.0
) -> dict:
    """`cpu()` reads the servers' CPU seconds; it and the projection lag (of the first node) are
    sampled around the posting phase only (setting up users hashes passwords, which is not what
    is measured). Subscriber k and poster n use node k mod N and n mod N."""
    url = urls[0]
    targets = await _users_and_sessions(url, sessions)
    acked: dict[int, float] = {}  # position -> time its 201 arrived
    session_of: dict[int, int] = {}  # position -> session index
    received: list[dict[int, float]] = [dict() for _ in range(subscribers)]
    duplicates = 0
    ready = asyncio.Event()
    connected = 0

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async with http.get(f"{url}/health") as r:
            start = (await r.json())["head"]

        async def subscriber(k: int) -> None:
            nonlocal duplicates, connected
            path, auth = targets[k % sessions]
            stream = path.replace("/messages", "/stream")
            token = auth.split(" ", 1)[1]
            node = urls[k % len(urls)]
            async with http.ws_connect(f"{node.replace('http', 'ws')}{stream}?after={start}&token={token}", max_msg_size=0) as ws:
                connected += 1
                if connected == subscribers:
                    ready.set()
                mine = received[k]
                async for message in ws:  # cancelled at the end; no per-frame timer
                    now = time.perf_counter()
                    position = _position(message.data).position
                    if position < 0:
                        continue  # a frame without a position (none is expected here)
                    if position in mine:
                        duplicates += 1
                    else:
                        mine[position] = now

        async def poster(n: int, posters: int) -> None:
            path, auth = targets[n % sessions]
            node = urls[n % len(urls)]
            interval = posters / rate
            next_at = time.perf_counter()
            deadline = next_at + seconds
            while next_at < deadline:
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
                next_at += interval
                async with http.post(node + path, json={"content": "a message for every subscriber"}, headers={"authorization": auth}) as r:
                    body = await r.read()
                    if r.status == 201:
                        position = json.loads(body)["position"]
                        acked[position] = time.perf_counter()
                        session_of[position] = n % sessions
                    else:
                        errors.append(r.status)

        errors: list[int] = []
        tasks = [asyncio.create_task(subscriber(k)) for k in range(subscribers)]
        await asyncio.wait_for(ready.wait(), 60)
        posters = max(sessions, 1)
        began, cpu_began, lag_began, client_began = time.perf_counter(), cpu(), lag_buckets(url), time.process_time()
        await asyncio.gather(*(poster(n, posters) for n in range(posters)))
        posting, cpu_used, client_used = time.perf_counter() - began, cpu() - cpu_began, time.process_time() - client_began
        await asyncio.sleep(2.0)  # let the last frames arrive
        lag = lag_percentiles(lag_began, lag_buckets(url))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    delays, expected, delivered, lost = [], 0, 0, 0
    for k in range(subscribers):
        mine, session = received[k], k % sessions
        for position, at in acked.items():
            if session_of[position] != session:
                continue
            expected += 1
            if position in mine:
                delivered += 1
                delays.append(max(0.0, mine[position] - at) * 1000)
            else:
                lost += 1
    return {
        "posted": len(acked),
        "errors": len(errors),
        "posting": posting,
        "expected": expected,
        "delivered": delivered,
        "lost": lost,
        "duplicates": duplicates,
        "delays": delays,
        "cpu": cpu_used,
        "client_cpu": client_used,
        "lag": lag,
    }


def run(
    subscribers: int,
    sessions: int,
    rate: float,
    seconds: float,
    profile: Path | None = None,
    nodes: int = 0,
    server_path: Path | None = None,
) -> FanoutResult:
    """One SQLite server (`nodes` 0), or `nodes` servers on one fresh PostgreSQL database; from
    another checkout with `server_path` (old against new, same benchmark code)."""
    launcher = (sys.executable, "-m", "cProfile", "-o", str(profile.resolve())) if profile else ()
    env = {
        "CHRONICLE_RATE_LIMIT_POSTS": "0",
        "CHRONICLE_RATE_LIMIT_LOGIN": "0",
        "CHRONICLE_RATE_LIMIT_PASSWORDS": "0",
        "CHRONICLE_RATE_LIMIT_WRITES": "0",
        "CHRONICLE_ASSISTANT_ANSWERS": "",
    }
    if server_path is not None:
        env["PYTHONPATH"] = str(server_path.resolve())
    with tempfile.TemporaryDirectory(prefix="chronicle-ws-") as tmp, ExitStack() as stack:
        if nodes:
            env["CHRONICLE_DATABASE_URL"] = stack.enter_context(fresh_database())
        servers = [Server(Path(tmp) / f"node-{n}", env=env, launcher=launcher, log_dir=Path(tmp)) for n in range(max(nodes, 1))]
        try:
            for server in servers:
                server.start()
            pids = [server.process.pid for server in servers if server.process is not None]
            raw = asyncio.run(
                _run([s.url for s in servers], subscribers, sessions, rate, seconds, lambda: sum(_proc_stat(pid)[1] for pid in pids))
            )
            rss = sum(_proc_stat(pid)[0] for pid in pids)
        finally:
            for server in servers:
                if profile and server.process is not None:
                    # uvicorn re-raises the signal it stopped on: SIGTERM would kill the profiler
                    # before it writes, SIGINT unwinds through it.
                    server.process.send_signal(signal.SIGINT)
                    server.process.wait(60)
                server.stop()
    delays = raw["delays"]
    return FanoutResult(
        subscribers,
        sessions,
        rate,
        raw["posted"],
        raw["errors"],
        round(raw["posted"] / raw["posting"], 1),
        raw["expected"],
        raw["delivered"],
        raw["lost"],
        raw["duplicates"],
        round(raw["delivered"] / raw["posting"], 1),
        round(statistics.median(delays), 2) if delays else float("nan"),
        round(percentile(delays, 0.99), 2),
        round(max(delays, default=float("nan")), 2),
        *raw["lag"],
        round(rss, 1),
        round(raw["cpu"], 2),
        round(raw["cpu"] / raw["delivered"] * 1e6, 1) if raw["delivered"] else float("nan"),
        round(raw["client_cpu"] / raw["delivered"] * 1e6, 1) if raw["delivered"] else float("nan"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--rate", type=float, nargs="+", default=[1000.0], help="posts per second, all sessions together; one run each")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--profile", type=Path, help="run the server under cProfile; each run's statistics go to this name with -N before its suffix"
    )
    parser.add_argument("--nodes", type=int, nargs="+", default=[0], help="PostgreSQL nodes per run (0: one SQLite server)")
    parser.add_argument(
        "--server-path", type=Path, action="append", help="run the servers from this checkout; repeat for back-to-back runs"
    )
    args = parser.parse_args()
    print(
        "| server | nodes | subscribers | sessions | posts/s (target) | frames delivered/s | lost | duplicated | delivery p50 ms | p99 ms | max ms | projection lag p50 / p99 ms (≤ bucket) | server RSS MB | server CPU s | server CPU µs per frame | client CPU µs per frame |"  # noqa: E501 - one Markdown table header
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    results = []
    for nodes in args.nodes:
        for rate in args.rate:
            for path in args.server_path or [None]:
                profile = args.profile and args.profile.with_name(f"{args.profile.stem}-{len(results)}{args.profile.suffix}")
                result = run(args.subscribers, args.sessions, rate, args.seconds, profile, nodes, path)
                results.append({"server": str(path or "."), "nodes": nodes, **asdict(result)})
                _print_row(path, nodes, result)
    save_json(args.json, results if len(results) > 1 else results[0])


def _print_row(path: Path | None, nodes: int, result: FanoutResult) -> None:
    print(
        f"| {path or '.'} | {nodes or 'SQLite'} | {result.subscribers} | {result.sessions} | "
        f"{result.posts_per_second:,.0f} ({result.target_rate:,.0f}) | "
        f"{result.frames_per_second:,.0f} | {result.frames_lost} | {result.frames_duplicated} | {result.delivery_p50_ms} | "
        f"{result.delivery_p99_ms} | {result.delivery_max_ms} | {result.projection_lag_p50_ms} / {result.projection_lag_p99_ms} | "
        f"{result.server_rss_mb} | {result.server_cpu_seconds} | {result.server_cpu_us_per_frame} | {result.client_cpu_us_per_frame} |"
    )


if __name__ == "__main__":
    main()
