"""What the posting route costs the event loop beyond the trivial POST: both apps driven in this
process straight through ASGI (no server, no sockets, so uvicorn's share, the same for both, is
left out), `--concurrency` requests in flight, and the CPU time of the event loop's thread per
request measured around them — Litestar's cycle and our middleware, plus what each post makes
the app's own tasks on that loop do (the bus's answer, the frame relay, the watchers); for
posting also the command bus's thread (its CPU per post, and how many posts each group commit
saved).

The posting app is Chronicle's own (`create_app` with its lifespan: the real command bus,
SQLite log, projection process and workers) on a fresh data directory, rate limits off, as in
`benchmarks.load`; the trivial one is `benchmarks.ceiling`.

    python -m benchmarks.request_cycle --requests 30000 --json benchmarks/results/request-cycle.json
    python -m benchmarks.request_cycle --profile cycle.prof   # cProfile of the loop's thread while posting
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import dataclasses
import os
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import msgspec
import uvloop

from benchmarks.report import save_json

BODY = msgspec.json.encode({"content": "a message of ordinary length about the launch plan"})
WARM_UP = 20
TIME_LIMIT = 600.0
"""Seconds the warm-up, and then the measurement, may take."""


async def _call(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP request through the ASGI app, as uvicorn would hand it over."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"localhost"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    delivered = False
    disconnected = asyncio.Event()
    answer: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await disconnected.wait()  # the client stays connected until the answer is sent
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    disconnected.set()
    return answer["status"], answer["body"]


class _Lifespan:
    """The app's startup and shutdown through the ASGI lifespan protocol."""

    def __init__(self, app: Any) -> None:
        self._app = app
        self._inbox: asyncio.Queue[dict[str, str]] = asyncio.Queue()
        self._outcome: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def __aenter__(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
        self._task = asyncio.create_task(self._app(scope, self._inbox.get, self._outcome.put))
        await self._inbox.put({"type": "lifespan.startup"})
        started = await self._outcome.get()
        if started["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the app did not start: {started.get('message')}")

    async def __aexit__(self, *_: object) -> None:
        await self._inbox.put({"type": "lifespan.shutdown"})
        await self._task


def _thread_cpu(native_id: int) -> float:
    """User + system CPU seconds of one of this process's threads."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


Target = tuple[str, list[tuple[bytes, bytes]]]
"""A session's messages path and its owner's headers."""


async def _measure(app: Any, targets: list[Target], requests: int, concurrency: int, profile: Path | None) -> dict[str, Any]:
    statuses: dict[int, int] = {}

    async def client(k: int, count: int) -> None:
        path, headers = targets[k % len(targets)]
        for _ in range(count):
            status, _ = await _call(app, "POST", path, headers, BODY)
            statuses[status] = statuses.get(status, 0) + 1

    async with asyncio.timeout(TIME_LIMIT):
        await asyncio.gather(*(client(k, WARM_UP) for k in range(concurrency)))
    statuses.clear()
    bus_thread = next((t.native_id for t in threading.enumerate() if t.name == "command-bus"), None)
    bus = app.state.get("write").bus if "write" in app.state else None
    groups_before, commands_before = (bus.batches, bus.commands) if bus else (0, 0)
    bus_before = _thread_cpu(bus_thread) if bus_thread else 0.0
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    loop_before, wall_before = time.thread_time(), time.perf_counter()
    async with asyncio.timeout(TIME_LIMIT):  # a stuck command bus fails the run instead of hanging it
        await asyncio.gather(*(client(k, requests // concurrency) for k in range(concurrency)))
    loop_cpu, wall = time.thread_time() - loop_before, time.perf_counter() - wall_before
    bus_cpu = _thread_cpu(bus_thread) - bus_before if bus_thread else 0.0
    if profiler:
        profiler.disable()
        profiler.dump_stats(str(profile))
    done = sum(statuses.values())
    result: dict[str, Any] = {
        "requests": done,
        "statuses": {str(status): count for status, count in statuses.items()},
        "loop_us_per_request": round(loop_cpu / done * 1e6, 1),
        "wall_us_per_request": round(wall / done * 1e6, 1),
    }
    if bus:
        result["bus_us_per_post"] = round(bus_cpu / done * 1e6, 1) if bus_thread else None
        result["posts_per_group_commit"] = round((bus.commands - commands_before) / max(1, bus.batches - groups_before), 1)
    return result


async def _trivial(requests: int, concurrency: int) -> dict[str, Any]:
    from benchmarks.ceiling import app

    async with _Lifespan(app):
        return await _measure(app, [(f"/api/sessions/s{n}/messages", []) for n in range(50)], requests, concurrency, None)


async def _posting(requests: int, concurrency: int, sessions: int, profile: Path | None) -> dict[str, Any]:
    from infrastructure.settings import RateLimitSettings, Settings
    from infrastructure.web.app import create_app

    with tempfile.TemporaryDirectory(prefix="chronicle-cycle-") as data_dir:
        settings = Settings.from_env(Path(data_dir))
        settings = dataclasses.replace(settings, rate_limits=RateLimitSettings(0, 0, 0, 0, 0, 0, 0))
        app = create_app(settings)
        async with _Lifespan(app):
            targets = [await _signed_in_session(app, n) for n in range(sessions)]
            return await _measure(app, targets, requests, concurrency, profile)


async def _signed_in_session(app: Any, n: int) -> Target:
    """A user of their own, signed in, and a session of theirs without the assistant."""
    account = {"email": f"cycle{n}@example.org", "password": "correct horse battery"}
    status, body = await _call(app, "POST", "/api/auth/register", [], msgspec.json.encode({**account, "display_name": f"Cycle {n}"}))
    _expect(201, status, body)
    await app.state.progress.wait(("users",), msgspec.json.decode(body)["position"])
    status, body = await _call(app, "POST", "/api/auth/login", [], msgspec.json.encode(account))
    _expect(200, status, body)
    headers = [(b"authorization", f"Bearer {msgspec.json.decode(body)['access_token']}".encode())]
    status, body = await _call(app, "POST", "/api/sessions", headers, msgspec.json.encode({"title": f"Cycle {n}", "assistant": False}))
    _expect(201, status, body)
    return f"/api/sessions/{msgspec.json.decode(body)['id']}/messages", headers


def _expect(wanted: int, status: int, body: bytes) -> None:
    if status != wanted:
        raise RuntimeError(f"setting up: {status} {body[:300]!r}")


def run(requests: int = 30_000, concurrency: int = 50, sessions: int = 50, profile: Path | None = None) -> dict[str, Any]:
    """Trivial POST, then posting, each in a fresh event loop (uvloop, as the server runs);
    `requests` is rounded down to a multiple of `concurrency`."""
    if requests < concurrency or concurrency < 1 or sessions < 1:
        raise ValueError("need at least one request per concurrent client, and a session")
    trivial = uvloop.run(_trivial(requests, concurrency))
    posting = uvloop.run(_posting(requests, concurrency, sessions, profile))
    return {
        "concurrency": concurrency,
        "trivial": trivial,
        "posting": posting,
        "posting_loop_to_trivial": round(posting["loop_us_per_request"] / trivial["loop_us_per_request"], 2),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--profile", type=Path, help="cProfile of the event loop's thread during the posting measurement")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    from infrastructure.structured_logs import configure_logging

    configure_logging("json", "warning")
    result = run(args.requests, args.concurrency, args.sessions, args.profile)
    trivial, posting = result["trivial"], result["posting"]
    print("| route | requests | event loop's thread, µs CPU per request | command bus's thread, µs CPU per post | posts per group commit |")
    print("|---|---|---|---|---|")
    print(f"| trivial POST | {trivial['requests']:,} | {trivial['loop_us_per_request']} | — | — |")
    print(
        f"| posting a message | {posting['requests']:,} | {posting['loop_us_per_request']} ({result['posting_loop_to_trivial']}×) "
        f"| {posting['bus_us_per_post']} | {posting['posts_per_group_commit']} |"
    )
    save_json(args.json, result)


if __name__ == "__main__":
    main()
