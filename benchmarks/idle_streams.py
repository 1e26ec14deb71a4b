"""Idle WebSocket benchmark: what one open, idle stream costs a real `chronicle serve`, and
whether one node holds many of them while messages flow.

    python -m benchmarks.idle_streams --sockets 10000 --sessions 1000 --idle-seconds 60 --rate 100 --post-seconds 30

Opens `--sockets` session streams spread over `--sessions` sessions (ten sessions per user, each
socket on its session's owner's token: a user with several tabs), from this process (aiohttp on
uvloop; the server is another process). Then, with every socket open and nothing posted:

- memory per connection: the server process's RSS after opening them, minus before, divided by
  their number (`/proc/PID/status` VmRSS; the projection process is not counted here, it holds
  no socket, but it is in the total);
- wake-ups per second of the server's event-loop thread (`/proc/PID/task/PID/status` context
  switches: each is the loop going to sleep and being woken) and its CPU share while idle;
- keepalive traffic: protocol pings each socket received per minute (the client answers them),
  and the bytes the server process read and wrote per connection and minute (`/proc/PID/io`).

Then `--rate` posts per second, each to the next session in turn, open loop (a post is sent on
time whether or not the previous one was answered): for every socket of the post's session, the
delay from the 201 to the frame (p50 / p99), and the frames lost (never received). Sockets the
server closed are counted.

`--server-path DIR` runs the server from another checkout (its `PYTHONPATH`), for old-against-new
runs of the same benchmark code; `--compress` offers permessage-deflate as browsers do. The
open-file limit is raised for this process and, through `prlimit`, for the server it launches;
the server's own defaults are unchanged. Loopback only; every loop is bounded by count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp
import httpx
import msgspec

from benchmarks.load import _proc_stat, percentile
from benchmarks.report import save_json
from tests.e2e.server import Server

SESSIONS_PER_USER = 10
CONNECTING_AT_ONCE = 100


class _Positioned(msgspec.Struct):
    position: int = -1


_position = msgspec.json.Decoder(_Positioned).decode


@dataclass
class IdleResult:
    server: str
    sockets: int
    sessions: int
    compress: bool
    connect_seconds: float
    opened: int
    rss_before_mb: float
    rss_open_mb: float
    """The server process (not its children) with every socket open and idle."""
    rss_total_open_mb: float
    """The server and its children (projection process, conversion forkserver)."""
    kb_per_connection: float
    """(RSS with every socket open − RSS before) ÷ sockets."""
    kb_per_connection_second_half: float
    """The same over the second half of the sockets only: without one-time costs (threads, caches)."""
    connects_per_second: float
    idle_seconds: float
    idle_cpu_percent: float
    """Server CPU (all its processes) while idle, in percent of one core."""
    loop_wakeups_per_second: float
    """Context switches of the server's event-loop thread while idle."""
    all_threads_switches_per_second: float
    pings_per_connection_minute: float
    server_bytes_per_connection_minute: float
    """Bytes the server process read and wrote (socket and file I/O) per connection and minute, idle."""
    target_rate: float
    posted: int
    post_errors: int
    posts_per_second: float
    frames_expected: int
    frames_delivered: int
    frames_lost: int
    frames_duplicated: int
    delivery_p50_ms: float
    delivery_p99_ms: float
    delivery_max_ms: float
    closed_by_server: int
    rss_after_posting_mb: float
    rss_total_after_posting_mb: float
    posting_cpu_percent: float


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return next(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:"))


def _switches(pid: int, tid: int | None = None) -> int:
    """Voluntary and involuntary context switches of one thread, or of every thread of `pid`."""
    tids = [tid] if tid is not None else [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    total = 0
    for t in tids:
        try:
            status = Path(f"/proc/{pid}/task/{t}/status").read_text()
        except OSError:
            continue
        counts = [line for line in status.splitlines() if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches"))]
        total += sum(int(line.split()[1]) for line in counts)
    return total


def _io_bytes(pid: int) -> int:
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["rchar"]) + int(fields["wchar"])


def _raise_open_files(wanted: int) -> int:
    """This process's soft limit up to `wanted` (at most the hard limit); returns the limit set."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return max(soft, target)


async def _owners(http: aiohttp.ClientSession, url: str, sessions: int) -> list[tuple[str, str]]:
    """`sessions` sessions, ten per user; returns (session id, token) per session."""
    users = max(1, -(-sessions // SESSIONS_PER_USER))

    async def one(u: int) -> list[tuple[str, str]]:
        body = {"email": f"idle{u}@example.org", "password": "idle password", "display_name": f"I{u}"}
        async with http.post(f"{url}/api/auth/register", json=body) as r:
            assert r.status == 201, await r.text()
        for _ in range(10):  # 503 while the read model catches up with the registration (a loaded host)
            async with http.post(f"{url}/api/auth/login", json={"email": body["email"], "password": body["password"]}) as r:
                if r.status != 503:
                    assert r.status == 200, await r.text()
                    token = (await r.json())["access_token"]
                    break
        else:
            raise AssertionError("the read model did not catch up with the registrations")
        made = []
        for s in range(min(SESSIONS_PER_USER, sessions - u * SESSIONS_PER_USER)):
            session = {"title": f"idle {u}.{s}", "assistant": False}
            async with http.post(f"{url}/api/sessions", json=session, headers={"authorization": f"Bearer {token}"}) as r:
                assert r.status == 201, await r.text()
                made.append(((await r.json())["id"], token))
        return made

    per_user = await asyncio.gather(*(one(u) for u in range(users)))
    return [pair for made in per_user for pair in made]


async def _run(  # noqa: PLR0915 - one measured sequence, in order
    url: str, pid: int, sockets: int, sessions: int, idle_seconds: float, rate: float, post_seconds: float, compress: bool
) -> dict:
    tree = lambda: _proc_stat(pid)  # noqa: E731 - (RSS MB, CPU s) of the server and its children
    ws_url = url.replace("http", "ws")
    received: list[dict[int, float]] = [{} for _ in range(sockets)]
    pings = [0] * sockets
    closed_by_server = 0
    duplicates = 0
    opened = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=None)) as http:
        owners = await _owners(http, url, sessions)
        async with http.get(f"{url}/health") as r:
            start = (await r.json())["head"]

        async def connect(k: int) -> aiohttp.ClientWebSocketResponse:
            sid, token = owners[k % sessions]
            return await http.ws_connect(
                f"{ws_url}/api/sessions/{sid}/stream?after={start}&token={token}",
                autoping=False,  # pings are answered (and counted) below
                compress=15 if compress else 0,
                max_msg_size=0,
                heartbeat=None,
            )

        async def read(k: int, ws: aiohttp.ClientWebSocketResponse) -> None:
            nonlocal closed_by_server, duplicates
            mine = received[k]
            async for message in ws:
                if message.type is aiohttp.WSMsgType.PING:
                    pings[k] += 1
                    await ws.pong(message.data)
                elif message.type is aiohttp.WSMsgType.TEXT:
                    now = time.perf_counter()
                    position = _position(message.data).position
                    if position in mine:
                        duplicates += 1
                    elif position >= 0:
                        mine[position] = now
            closed_by_server += 1

        # Warm-up: the first streams import and cache what every later one shares.
        for ws in [await connect(k) for k in range(min(20, sockets))]:
            await ws.close()
        await asyncio.sleep(1.0)
        rss_before = _rss_mb(pid)

        gate = asyncio.Semaphore(CONNECTING_AT_ONCE)
        readers: list[asyncio.Task[None]] = []

        rss_half = rss_before

        async def open_one(k: int) -> None:
            nonlocal opened, rss_half
            async with gate:
                ws = await connect(k)
            opened += 1
            if opened == sockets // 2:
                rss_half = _rss_mb(pid)
            readers.append(asyncio.create_task(read(k, ws)))

        began = time.perf_counter()
        await asyncio.gather(*(open_one(k) for k in range(sockets)))
        connect_seconds = time.perf_counter() - began
        await asyncio.sleep(5.0)  # the connects' own work (replays, first pings) settles

        tid = pid
        rss_open, (rss_total_open, cpu0) = _rss_mb(pid), tree()
        loop0, all0, io0, pings0, t0 = _switches(pid, tid), _switches(pid), _io_bytes(pid), sum(pings), time.perf_counter()
        await asyncio.sleep(idle_seconds)
        (_, cpu1), t1 = tree(), time.perf_counter()
        loop1, all1, io1, pings1 = _switches(pid, tid), _switches(pid), _io_bytes(pid), sum(pings)
        idle = t1 - t0

        acked: dict[int, float] = {}
        session_of: dict[int, int] = {}
        errors: list[int] = []

        async def post(n: int) -> None:
            sid, token = owners[n % sessions]
            body = {"content": "a message for everyone in the room"}
            async with http.post(f"{url}/api/sessions/{sid}/messages", json=body, headers={"authorization": f"Bearer {token}"}) as r:
                answer = await r.read()
                if r.status == 201:
                    position = json.loads(answer)["position"]
                    acked[position] = time.perf_counter()
                    session_of[position] = n % sessions
                else:
                    errors.append(r.status)

        posts: list[asyncio.Task[None]] = []
        began, cpu_began = time.perf_counter(), tree()[1]
        for n in range(int(rate * post_seconds)):
            await asyncio.sleep(max(0.0, began + n / rate - time.perf_counter()))
            posts.append(asyncio.create_task(post(n)))
        await asyncio.gather(*posts)
        posting = time.perf_counter() - began
        cpu_posting = tree()[1] - cpu_began

        by_session: dict[int, list[int]] = {}
        for position, s in session_of.items():
            by_session.setdefault(s, []).append(position)

        def delivered_count() -> int:
            return sum(position in received[k] for k in range(sockets) for position in by_session.get(k % sessions, ()))

        expected = sum(len(by_session.get(k % sessions, ())) for k in range(sockets))
        deadline = time.monotonic() + 10
        while delivered_count() < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.2)  # waiting for the last frames, bounded
        rss_after, rss_total_after = _rss_mb(pid), tree()[0]
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    delays = []
    delivered = 0
    for k in range(sockets):
        for position in by_session.get(k % sessions, ()):
            at = received[k].get(position)
            if at is not None:
                delivered += 1
                delays.append(max(0.0, at - acked[position]) * 1000)
    return {
        "connect_seconds": connect_seconds,
        "opened": opened,
        "rss_before": rss_before,
        "rss_half": rss_half,
        "rss_open": rss_open,
        "rss_total_open": rss_total_open,
        "idle": idle,
        "idle_cpu": (cpu1 - cpu0) / idle,
        "loop_wakeups": (loop1 - loop0) / idle,
        "all_switches": (all1 - all0) / idle,
        "pings_per_minute": (pings1 - pings0) / sockets / idle * 60,
        "bytes_per_minute": (io1 - io0) / sockets / idle * 60,
        "posted": len(acked),
        "errors": len(errors),
        "posting": posting,
        "posting_cpu": cpu_posting / posting,
        "expected": expected,
        "delivered": delivered,
        "duplicates": duplicates,
        "delays": delays,
        "closed_by_server": closed_by_server,
        "rss_after": rss_after,
        "rss_total_after": rss_total_after,
    }


def run(
    sockets: int,
    sessions: int,
    idle_seconds: float,
    rate: float,
    post_seconds: float,
    compress: bool = False,
    server_path: Path | None = None,
    env: dict[str, str] | None = None,
) -> IdleResult:
    files = _raise_open_files(sockets + 1024)
    server_env = {"CHRONICLE_ASSISTANT_ANSWERS": "", "CHRONICLE_TOKEN_TTL": "86400", "CHRONICLE_READ_WAIT": "60", **(env or {})}
    if server_path is not None:
        server_env["PYTHONPATH"] = str(server_path.resolve())
    with tempfile.TemporaryDirectory(prefix="chronicle-idle-") as tmp:
        server = _started(Server(Path(tmp), env=server_env, launcher=("prlimit", f"--nofile={files}:{files}", "--")))
        try:
            with asyncio.Runner(loop_factory=_client_loop()) as runner:
                raw = runner.run(_run(server.url, server.process.pid, sockets, sessions, idle_seconds, rate, post_seconds, compress))  # type: ignore[union-attr]
        finally:
            server.stop()
    delays = raw["delays"]
    opened_mb = raw["rss_open"] - raw["rss_before"]
    return IdleResult(
        server=str(server_path or "this checkout"),
        sockets=sockets,
        sessions=sessions,
        compress=compress,
        connect_seconds=round(raw["connect_seconds"], 1),
        opened=raw["opened"],
        rss_before_mb=round(raw["rss_before"], 1),
        rss_open_mb=round(raw["rss_open"], 1),
        rss_total_open_mb=round(raw["rss_total_open"], 1),
        kb_per_connection=round(opened_mb * 1024 / sockets, 1),
        kb_per_connection_second_half=round((raw["rss_open"] - raw["rss_half"]) * 1024 / (sockets - sockets // 2), 1),
        connects_per_second=round(sockets / raw["connect_seconds"], 1),
        idle_seconds=round(raw["idle"], 1),
        idle_cpu_percent=round(raw["idle_cpu"] * 100, 1),
        loop_wakeups_per_second=round(raw["loop_wakeups"], 1),
        all_threads_switches_per_second=round(raw["all_switches"], 1),
        pings_per_connection_minute=round(raw["pings_per_minute"], 2),
        server_bytes_per_connection_minute=round(raw["bytes_per_minute"], 1),
        target_rate=rate,
        posted=raw["posted"],
        post_errors=raw["errors"],
        posts_per_second=round(raw["posted"] / raw["posting"], 1) if raw["posting"] else 0.0,
        frames_expected=raw["expected"],
        frames_delivered=raw["delivered"],
        frames_lost=raw["expected"] - raw["delivered"],
        frames_duplicated=raw["duplicates"],
        delivery_p50_ms=round(statistics.median(delays), 1) if delays else float("nan"),
        delivery_p99_ms=round(percentile(delays, 0.99), 1),
        delivery_max_ms=round(max(delays, default=float("nan")), 1),
        closed_by_server=raw["closed_by_server"],
        rss_after_posting_mb=round(raw["rss_after"], 1),
        rss_total_after_posting_mb=round(raw["rss_total_after"], 1),
        posting_cpu_percent=round(raw["posting_cpu"] * 100, 1),
    )


def _started(server: Server, seconds: float = 300) -> Server:
    """`Server.start`, given longer to become healthy: on this shared host a start can take a minute."""
    try:
        return server.start()
    except RuntimeError:
        if server.process is None or server.process.poll() is not None:
            raise
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.url}/health", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.5)
    server.stop()
    raise RuntimeError("server did not become healthy")


def _client_loop():  # noqa: ANN202 - a loop factory
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return asyncio.new_event_loop
    return uvloop.new_event_loop


HEADER = (
    "| server | sockets / sessions | compress | connects/s | server RSS idle MB (total) | KB per connection (2nd half) | idle CPU % | "
    "loop wake-ups/s | pings per conn·min | server bytes per conn·min | posts/s (target) | delivery p50 / p99 / max ms | lost | "
    "closed | RSS after posting MB (total) | CPU % posting |"
)


def row(r: IdleResult) -> str:
    return (
        f"| {r.server} | {r.opened:,} / {r.sessions:,} | {'on' if r.compress else 'off'} | {r.connects_per_second} | "
        f"{r.rss_open_mb} ({r.rss_total_open_mb}) | {r.kb_per_connection} ({r.kb_per_connection_second_half}) | "
        f"{r.idle_cpu_percent} | {r.loop_wakeups_per_second} | {r.pings_per_connection_minute} | {r.server_bytes_per_connection_minute} | "
        f"{r.posts_per_second:,.0f} ({r.target_rate:,.0f}) | {r.delivery_p50_ms} / {r.delivery_p99_ms} / {r.delivery_max_ms} | "
        f"{r.frames_lost} | {r.closed_by_server} | {r.rss_after_posting_mb} ({r.rss_total_after_posting_mb}) | {r.posting_cpu_percent} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sockets", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=1_000)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=100.0, help="posts per second, all sessions together")
    parser.add_argument("--post-seconds", type=float, default=30.0)
    parser.add_argument("--compress", action="store_true", help="offer permessage-deflate, as browsers do")
    parser.add_argument("--server-path", type=Path, action="append", help="run the server from this checkout; repeat for back-to-back runs")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="a setting for the server")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    results = []
    print(HEADER)
    print("|" + "---|" * (HEADER.count("|") - 1))
    for path in args.server_path or [None]:
        result = run(args.sockets, args.sessions, args.idle_seconds, args.rate, args.post_seconds, args.compress, path, env)
        results.append(asdict(result))
        print(row(result), flush=True)
        save_json(args.json, results)  # after every run: a later one may fail on a loaded host


if __name__ == "__main__":
    main()
