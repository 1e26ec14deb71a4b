"""Load tool: starts a real `chronicle serve` on a fresh data directory, posts messages from many
concurrent HTTP clients to many sessions, and reports throughput, latency, read-model lag and
server memory — next to the machine's ceiling measured in the same run (a trivial Litestar POST
endpoint served the same way, loaded the same way), so the figures read as ratios that hold on
a noisy machine.

    python -m benchmarks.load --clients 50 500 --seconds 10 --json benchmarks/results/load.json

`--backends sqlite postgresql` runs the server on each backend in turn, back to back (PostgreSQL:
a database made for the run on `CHRONICLE_TEST_POSTGRES`, default 127.0.0.1:5432, dropped
afterwards); `--py-spy DIR` records the server's processes with py-spy during each run; `--profile
FILE.prof` runs the server under cProfile (its event loop's thread) into FILE-N.prof.

The load comes from wrk when it is installed (`apt-get install wrk`), else from an aiohttp
client in this process. Traffic goes only to 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from benchmarks.report import save_json
from tests.e2e.server import Server, free_port

BODY = {"content": "a message of ordinary length about the launch plan"}


@dataclass
class Run:
    target: str
    engine: str
    clients: int
    seconds: float
    requests: int
    errors: int
    per_second: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    read_model_catch_up_ms: float | None = None
    read_after_write_p50_ms: float | None = None
    read_after_write_p99_ms: float | None = None
    projection_lag_p50_ms: float | None = None
    projection_lag_p99_ms: float | None = None
    server_rss_mb: float | None = None
    server_cpu_seconds: float | None = None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def _proc_stat(pid: int) -> tuple[float, float]:
    """RSS in MB and CPU seconds (user + system) of a process and its descendants (the server's
    projection process, conversion forkserver and jobs), all threads included."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    rss = cpu = 0.0
    todo = [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, []))
        try:
            status = Path(f"/proc/{current}/status").read_text()
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        rss += next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0.0)
        cpu += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return rss, cpu


def lag_buckets(url: str) -> dict[float, float]:
    """The server's `chronicle_projection_lag_seconds` histogram: cumulative count per bound."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    buckets = {}
    for line in text.splitlines():
        if line.startswith("chronicle_projection_lag_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def lag_percentiles(before: dict[float, float], after: dict[float, float]) -> tuple[float | None, float | None]:
    """p50 and p99 of the projection lag between two snapshots, in ms, as the upper bound of
    the histogram bucket they fall in (1, 2, 5, 10, 20, 50 ms, …)."""
    counts = sorted((bound, after[bound] - before.get(bound, 0.0)) for bound in after)
    total = counts[-1][1] if counts else 0
    if not total:
        return None, None

    def at(q: float) -> float:
        return next(bound for bound, count in counts if count >= q * total) * 1000

    return at(0.5), at(0.99)


# --- load engines ---------------------------------------------------------------------------

PIN = {"server": None, "load": None}
"""CPU sets for the server and the load generator (`--pin`), so they do not compete for a core.
The server's projection process is left unpinned: it shares the load generator's core."""


def _pin(pid: int, role: str) -> None:
    cpus = PIN[role]
    if cpus is not None:
        for task in Path(f"/proc/{pid}/task").iterdir():
            os.sched_setaffinity(int(task.name), cpus)


def _wrk(url: str, targets: list[tuple[str, str]], clients: int, seconds: float) -> dict:
    """`targets` are (path, authorization) pairs; requests rotate through them."""
    entries = ",\n".join(f'  {{"{path}", "{auth}"}}' for path, auth in targets)
    script = f"""
local targets = {{
{entries}
}}
local body = '{json.dumps(BODY)}'
local n = 0
request = function()
  n = n + 1
  local t = targets[(n % #targets) + 1]
  return wrk.format("POST", t[1], {{["Content-Type"] = "application/json", ["Authorization"] = t[2]}}, body)
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %f %f %f %f\\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            ([] if PIN["load"] is None else ["taskset", "-c", ",".join(map(str, PIN["load"]))])
            + ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", f.name, url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    line = next(row for row in out.splitlines() if row.startswith("RESULT"))
    requests, errors, duration_us, p50, p95, p99, worst = line.split()[1:]
    elapsed = int(duration_us) / 1e6
    return {
        "requests": int(requests) - int(errors),
        "errors": int(errors),
        "elapsed": elapsed,
        "p50": float(p50) / 1000,
        "p95": float(p95) / 1000,
        "p99": float(p99) / 1000,
        "max": float(worst) / 1000,
    }


async def _aiohttp(url: str, targets: list[tuple[str, str]], clients: int, seconds: float, max_requests: int) -> dict:
    latencies: list[float] = []
    errors = sent = 0
    connector = aiohttp.TCPConnector(limit=clients + 10)
    async with aiohttp.ClientSession(connector=connector) as http:
        deadline = time.perf_counter() + seconds

        async def client(n: int) -> None:
            nonlocal errors, sent
            path, auth = targets[n % len(targets)]
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                started = time.perf_counter()
                try:
                    async with http.post(url + path, json=BODY, headers={"authorization": auth}) as r:
                        await r.read()
                        ok = r.status in (200, 201)
                except aiohttp.ClientError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(client(n) for n in range(clients)))
        elapsed = time.perf_counter() - started
    ms = [x * 1000 for x in latencies]
    return {
        "requests": len(ms),
        "errors": errors,
        "elapsed": elapsed,
        "p50": percentile(ms, 0.5),
        "p95": percentile(ms, 0.95),
        "p99": percentile(ms, 0.99),
        "max": max(ms, default=float("nan")),
    }


def _load(engine: str, url: str, targets: list[tuple[str, str]], clients: int, seconds: float, max_requests: int) -> dict:
    if engine == "wrk":
        return _wrk(url, targets, clients, seconds)
    return asyncio.run(_aiohttp(url, targets, clients, seconds, max_requests))


# --- Chronicle ------------------------------------------------------------------------------


async def _users_and_sessions(url: str, sessions: int) -> list[tuple[str, str]]:
    """One user per session; returns (messages path, authorization) pairs. A 503 (storage busy on
    a loaded host) is retried after its Retry-After, a few times: this is setup, not the load."""
    async with aiohttp.ClientSession() as http:
        setup = asyncio.Semaphore(4)  # password hashing is slow on purpose: a few sign-ups at a time

        async def call(path: str, body: dict[str, Any], expected: int, auth: str | None = None) -> dict[str, Any]:
            for _ in range(10):
                async with setup, http.post(url + path, json=body, headers={"authorization": auth} if auth else {}) as r:
                    if r.status != 503:
                        assert r.status == expected, await r.text()
                        return await r.json()
                    retry = float(r.headers.get("retry-after", "1"))
                await asyncio.sleep(retry)
            raise AssertionError(f"{path} kept answering 503")

        async def one(i: int) -> tuple[str, str]:
            body = {"email": f"load{i}@example.org", "password": "load password", "display_name": f"L{i}"}
            await call("/api/auth/register", body, 201)
            auth = "Bearer " + (await call("/api/auth/login", {"email": body["email"], "password": body["password"]}, 200))["access_token"]
            session = {"title": f"load {i}", "assistant": False}  # posting alone; the assistant is measured apart
            return f"/api/sessions/{(await call('/api/sessions', session, 201, auth))['id']}/messages", auth

        return list(await asyncio.gather(*(one(i) for i in range(sessions))))


async def _read_side(url: str, targets: list[tuple[str, str]]) -> tuple[float, list[float]]:
    """Time until the read model shows the log's head after the load; then read-your-writes
    latency at rest: post, then query with after_position."""
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/health") as r:
            head = (await r.json())["head"]
        path, auth = targets[0]
        started = time.perf_counter()
        async with http.get(url + path, params={"limit": 1, "after_position": head}, headers={"authorization": auth}) as r:
            assert r.status == 200, await r.text()
        catch_up = time.perf_counter() - started
        ryw = []
        for k in range(100):
            path, auth = targets[k % len(targets)]
            async with http.post(url + path, json=BODY, headers={"authorization": auth}) as r:
                position = (await r.json())["position"]
            started = time.perf_counter()
            async with http.get(url + path, params={"limit": 1, "after_position": position}, headers={"authorization": auth}) as r:
                assert r.status == 200
            ryw.append(time.perf_counter() - started)
        return catch_up, ryw


class OtlpSink:
    """Accepts OTLP/HTTP exports and throws them away: the server pays for tracing in full
    (spans, batching, protobuf, HTTP) while nothing here competes for the CPU."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                self.rfile.read(int(self.headers["content-length"]))
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def _py_spy(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy on the server and its children (the projection process) for `seconds`, as collapsed
    stacks (one line per stack and its sample count; `--gil`-less: waiting shows too)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [
            shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@contextmanager
def _backend_env(backend: str) -> Iterator[dict[str, str]]:
    """The server's environment for a backend: nothing for SQLite, a fresh database for PostgreSQL."""
    if backend == "sqlite":
        yield {}
        return
    from tests.postgres import fresh_database

    with fresh_database() as url:
        yield {"CHRONICLE_DATABASE_URL": url}


def chronicle(
    engine: str,
    clients: int,
    sessions: int,
    seconds: float,
    max_requests: int,
    log_level: str = "warning",
    otlp: bool = False,
    backend: str = "sqlite",
    py_spy: Path | None = None,
    server_path: Path | None = None,
    profile: Path | None = None,
) -> Run:
    sink = OtlpSink() if otlp else None
    env = {
        "CHRONICLE_RATE_LIMIT_POSTS": "0",
        "CHRONICLE_RATE_LIMIT_LOGIN": "0",
        "CHRONICLE_RATE_LIMIT_PASSWORDS": "0",
        "CHRONICLE_RATE_LIMIT_WRITES": "0",
        "CHRONICLE_LOG_FORMAT": "json",
    }
    if sink is not None:
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = sink.url
    if server_path is not None:
        env["PYTHONPATH"] = str(server_path.resolve())
    with tempfile.TemporaryDirectory(prefix="chronicle-load-") as tmp, _backend_env(backend) as backend_env:
        launcher = (sys.executable, "-m", "cProfile", "-o", str(profile.resolve())) if profile else ()
        server = Server(Path(tmp), env={**env, **backend_env}, log_level=log_level, launcher=launcher).start(timeout=180)
        try:
            targets = asyncio.run(_users_and_sessions(server.url, sessions))
            _pin(server.process.pid, "server")
            _, cpu_before = _proc_stat(server.process.pid)
            lag_before = lag_buckets(server.url)
            which = f"{backend}-{clients}" + (f"-{server_path.resolve().name}" if server_path else "")
            spy = None if py_spy is None else _py_spy(server.process.pid, seconds, py_spy / f"{which}.txt")
            raw = _load(engine, server.url, targets, clients, seconds, max_requests)
            rss, cpu_after = _proc_stat(server.process.pid)
            if spy is not None:
                try:
                    spy.wait(seconds + 300)  # py-spy writes its file after the load; slow on a loaded host
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()
            lag_p50, lag_p99 = lag_percentiles(lag_before, lag_buckets(server.url))
            catch_up, ryw = asyncio.run(_read_side(server.url, targets))
        finally:
            if profile and server.process is not None:
                # uvicorn re-raises the signal it stopped on: SIGTERM would kill the profiler
                # before it writes, SIGINT unwinds through it.
                server.process.send_signal(signal.SIGINT)
                try:
                    server.process.wait(60)
                except subprocess.TimeoutExpired:
                    server.process.kill()  # no profile, but no server left behind either
            server.stop()
            if sink is not None:
                sink.close()
    ryw_ms = [x * 1000 for x in ryw]
    return Run(
        f"chronicle (log {log_level}{', tracing' if otlp else ''}{', PostgreSQL' if backend == 'postgresql' else ''}"
        f"{f', server from {server_path}' if server_path else ''})",
        engine,
        clients,
        round(raw["elapsed"], 2),
        raw["requests"],
        raw["errors"],
        round(raw["requests"] / raw["elapsed"], 1),
        round(raw["p50"], 2),
        round(raw["p95"], 2),
        round(raw["p99"], 2),
        round(raw["max"], 2),
        round(catch_up * 1000, 2),
        round(statistics.median(ryw_ms), 2),
        round(percentile(ryw_ms, 0.99), 2),
        lag_p50,
        lag_p99,
        round(rss, 1),
        round(cpu_after - cpu_before, 2),
    )


def ceiling(engine: str, clients: int, sessions: int, seconds: float, max_requests: int) -> Run:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "benchmarks.ceiling:app",
            "--port",
            str(port),
            "--log-level",
            "warning",
            "--no-access-log",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
        ],
        cwd=Path(__file__).resolve().parent.parent,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        targets = [(f"/api/sessions/s{i}/messages", "Bearer not-checked") for i in range(sessions)]
        _pin(process.pid, "server")
        _, cpu_before = _proc_stat(process.pid)
        raw = _load(engine, url, targets, clients, seconds, max_requests)
        rss, cpu_after = _proc_stat(process.pid)
    finally:
        process.terminate()
        process.wait(10)
    return Run(
        "trivial Litestar POST",
        engine,
        clients,
        round(raw["elapsed"], 2),
        raw["requests"],
        raw["errors"],
        round(raw["requests"] / raw["elapsed"], 1),
        round(raw["p50"], 2),
        round(raw["p95"], 2),
        round(raw["p99"], 2),
        round(raw["max"], 2),
        server_rss_mb=round(rss, 1),
        server_cpu_seconds=round(cpu_after - cpu_before, 2),
    )


def sqlite_appends(seconds: float, synchronous: str = "FULL") -> Run:
    """The storage ceiling: single-event transactions into an event-shaped table (300-byte
    payload, unique (originator, version)), WAL, with the event store's durability setting."""
    with tempfile.TemporaryDirectory(prefix="chronicle-sqlite-") as tmp:
        db = sqlite3.connect(Path(tmp) / "raw.sqlite3", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={synchronous}")
        db.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, originator_id BLOB, version INTEGER,"
            " topic TEXT, state BLOB, UNIQUE (originator_id, version))"
        )
        payload, latencies = os.urandom(300), []
        started = time.perf_counter()
        while (now := time.perf_counter()) - started < seconds:
            db.execute("BEGIN")
            db.execute(
                "INSERT INTO events (originator_id, version, topic, state) VALUES (?,?,?,?)",
                (os.urandom(16), 1, "domain.message:Message.MessagePosted", payload),
            )
            db.execute("COMMIT")
            latencies.append(time.perf_counter() - now)
        elapsed = time.perf_counter() - started
        db.close()
    ms = [x * 1000 for x in latencies]
    return Run(
        f"raw SQLite append ({synchronous})",
        "1 thread",
        1,
        round(elapsed, 2),
        len(ms),
        0,
        round(len(ms) / elapsed, 1),
        round(percentile(ms, 0.5), 2),
        round(percentile(ms, 0.95), 2),
        round(percentile(ms, 0.99), 2),
        round(max(ms), 2),
    )


def markdown(runs: list[Run]) -> str:
    ceilings = {r.clients: r.per_second for r in runs if r.target.startswith("trivial")}
    rows = [
        "| target | load | clients | requests | errors | req/s | vs ceiling | p50 ms | p95 ms | p99 ms | projection lag p50 / p99 ms (≤ bucket) | read model catch-up ms | read-after-write p50 / p99 ms | server RSS MB | server CPU s |",  # noqa: E501 - one Markdown table header
        "|" + "---|" * 15,
    ]
    for r in runs:
        ratio = f"{r.per_second / ceilings[r.clients]:.0%}" if r.target.startswith("chronicle") and ceilings.get(r.clients) else "—"
        ryw = "—" if r.read_after_write_p50_ms is None else f"{r.read_after_write_p50_ms} / {r.read_after_write_p99_ms}"
        lag = "—" if r.projection_lag_p50_ms is None else f"{r.projection_lag_p50_ms:g} / {r.projection_lag_p99_ms:g}"
        rows.append(
            f"| {r.target} | {r.engine} | {r.clients} | {r.requests:,} | {r.errors} | {r.per_second:,.0f} | {ratio} | {r.p50_ms} | "
            f"{r.p95_ms} | {r.p99_ms} | {lag} | {r.read_model_catch_up_ms if r.read_model_catch_up_ms is not None else '—'} | {ryw} | "
            f"{r.server_rss_mb} | {r.server_cpu_seconds} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, nargs="+", default=[50])
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--max-requests", type=int, default=2_000_000)
    parser.add_argument("--engine", choices=["wrk", "aiohttp"], default="wrk" if shutil.which("wrk") else "aiohttp")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the trivial-endpoint reference")
    parser.add_argument("--pin", action="store_true", help="server on CPU 0, load generator on CPU 1 (wrk only)")
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    parser.add_argument("--log-level", default="warning", help="the server's; info writes one access line per request")
    parser.add_argument("--otlp", action="store_true", help="trace every request, exported over OTLP/HTTP to a sink in this process")
    parser.add_argument(
        "--backends", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite"], help="one run per backend, back to back"
    )
    parser.add_argument("--py-spy", type=Path, help="record the server with py-spy during each run, into this directory")
    parser.add_argument(
        "--profile",
        type=Path,
        help="run the server under cProfile (its event loop's thread); each run's statistics go to this name with -N before its suffix",
    )
    parser.add_argument(
        "--server-path",
        type=Path,
        action="append",
        help="run the server from this checkout (its PYTHONPATH); repeat for back-to-back runs of old and new",
    )
    args = parser.parse_args(argv)
    if args.pin and args.engine == "wrk":
        PIN.update(server={0}, load={1})
    runs: list[Run] = [] if args.no_ceiling else [sqlite_appends(min(args.seconds, 5.0))]
    profiles = 0

    def next_profile() -> Path | None:
        nonlocal profiles
        profiles += 1
        return args.profile and args.profile.with_name(f"{args.profile.stem}-{profiles - 1}{args.profile.suffix}")

    for clients in args.clients:
        if not args.no_ceiling:
            runs.append(ceiling(args.engine, clients, args.sessions, args.seconds, args.max_requests))
        for backend in args.backends:
            for path in args.server_path or [None]:
                runs.append(
                    chronicle(
                        args.engine,
                        clients,
                        args.sessions,
                        args.seconds,
                        args.max_requests,
                        args.log_level,
                        args.otlp,
                        backend,
                        args.py_spy,
                        path,
                        next_profile(),
                    )
                )
    print(markdown(runs))
    save_json(args.json, [asdict(r) for r in runs])


if __name__ == "__main__":
    main()
