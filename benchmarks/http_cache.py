"""Conditional GETs (ADR-045): what a revalidation that answers 304 costs next to the full read of
a 50-message page, and next to the machine's trivial Litestar GET, in the same run.

Starts a real `chronicle serve` on a fresh data directory (one user, one session of `--messages`
messages) and the trivial app (`benchmarks.ceiling`, same uvicorn, uvloop and httptools stack),
then runs closed-loop keep-alive clients (wrk, else aiohttp) in alternating rounds:

- `full`: `GET /api/sessions/{id}/messages?limit=50` (200, the page read and encoded);
- `not_modified`: the same with `If-None-Match` holding the page's current ETag (304);
- `sessions_full` / `sessions_not_modified`: `GET /api/sessions` (the user's list), both ways;
- `trivial`: `GET /api/trivial` on the trivial app.

    python -m benchmarks.http_cache --clients 10 --seconds 5 --rounds 3 --json benchmarks/results/http-cache.json

Traffic goes only to 127.0.0.1; every loop is bounded in count and time."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from benchmarks.load import _proc_stat, percentile
from benchmarks.report import save_json
from tests.e2e.server import Server, free_port

CONTENT = "a message of ordinary length about the launch plan, the crew, the weather and the checklist " * 2


def _wrk(url: str, headers: dict[str, str], clients: int, seconds: float) -> dict[str, float]:
    pairs = ", ".join(f'["{k}"] = [[{v}]]' for k, v in headers.items())  # long strings: a tag holds quotes
    script = f"""
wrk.headers = {{}}
request = function() return wrk.format("GET", nil, {{{pairs}}}) end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %f %f\\n", summary.requests,
    e.connect + e.read + e.write + e.status + e.timeout, summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    try:
        out = subprocess.run(
            ["wrk", "-t1", f"-c{clients}", f"-d{max(1, round(seconds))}s", "--timeout", "10s", "-s", f.name, url],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    if "RESULT" not in out:
        raise RuntimeError(f"wrk gave no result: {out}")
    requests, errors, duration_us, p50, p99 = next(r for r in out.splitlines() if r.startswith("RESULT")).split()[1:]
    return {
        "requests": int(requests) - int(errors),
        "requests_per_s": (int(requests) - int(errors)) / (int(duration_us) / 1e6),
        "errors": int(errors),
        "p50_ms": float(p50) / 1000,
        "p99_ms": float(p99) / 1000,
    }


async def _aiohttp(url: str, headers: dict[str, str], clients: int, seconds: float, expect: int) -> dict[str, float]:
    latencies: list[float] = []
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients + 5)) as http:
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                async with http.get(url, headers=headers) as r:
                    await r.read()
                    if r.status == expect:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    ms = [x * 1000 for x in latencies]
    return {
        "requests": len(ms),
        "requests_per_s": len(ms) / elapsed,
        "errors": errors,
        "p50_ms": percentile(ms, 0.5),
        "p99_ms": percentile(ms, 0.99),
    }


def _measure(url: str, headers: dict[str, str], clients: int, seconds: float, expect: int, pid: int) -> dict[str, float]:
    """One round against `url`; the status is checked once first (wrk counts only >= 400 as errors).
    Besides the rate: the server's CPU time per request (its process and children), which a loaded
    host disturbs far less than the rate."""
    status = httpx.get(url, headers=headers, timeout=30).status_code
    assert status == expect, f"{url} answered {status}, not {expect}"
    _, cpu_before = _proc_stat(pid)
    if shutil.which("wrk"):
        result = _wrk(url, headers, clients, seconds)
    else:
        result = asyncio.run(_aiohttp(url, headers, clients, seconds, expect))
    _, cpu_after = _proc_stat(pid)
    result["server_cpu_us_per_request"] = (cpu_after - cpu_before) * 1e6 / max(1, result["requests"])
    return result


def _trivial_app() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "benchmarks.ceiling:app", "--port", str(port), "--log-level", "warning", "--no-access-log"]
        + ["--loop", "uvloop", "--http", "httptools"],
        cwd=Path(__file__).resolve().parent.parent,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return process, f"http://127.0.0.1:{port}"
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise
            time.sleep(0.1)


def _started(server: Server, patience: float = 120) -> Server:
    """`Server.start` waits 30 s for health; on a host this loaded the imports alone may take longer."""
    try:
        return server.start()
    except RuntimeError:
        if server.process is None or server.process.poll() is not None:
            raise
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{server.url}/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError("the server did not become healthy")


def run(messages: int = 50, clients: int = 10, seconds: float = 5, rounds: int = 3) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        server = _started(Server(Path(tmp), env={"CHRONICLE_READ_WAIT": "60"}))
        trivial, trivial_url = _trivial_app()
        try:
            api, _ = server.client().signup("bench@example.org")
            auth = {"Authorization": f"Bearer {api.token}"}
            sid = api.post("/api/sessions", {"title": "Bench", "assistant": False}).json()["id"]
            last = 0
            for i in range(messages):
                last = api.post(f"/api/sessions/{sid}/messages", {"content": f"{i}: {CONTENT}"}).json()["position"]
            page_url = f"{server.url}/api/sessions/{sid}/messages?limit=50"
            list_url = f"{server.url}/api/sessions"
            full = api.get(f"/api/sessions/{sid}/messages", params={"limit": 50, "after_position": last})
            assert full.status_code == 200 and len(full.json()["items"]) == min(50, messages), full.text
            page_tag = full.headers["etag"]
            list_tag = api.get("/api/sessions", params={"after_position": last}).headers["etag"]
            assert server.process is not None
            chronicle = server.process.pid
            scenarios = {
                "full": (page_url, auth, 200, chronicle),
                "not_modified": (page_url, {**auth, "If-None-Match": page_tag}, 304, chronicle),
                "sessions_full": (list_url, auth, 200, chronicle),
                "sessions_not_modified": (list_url, {**auth, "If-None-Match": list_tag}, 304, chronicle),
                "trivial": (f"{trivial_url}/api/trivial", {}, 200, trivial.pid),
            }
            results: dict[str, list[dict[str, float]]] = {name: [] for name in scenarios}
            for _ in range(rounds):
                for name, (url, headers, expect, pid) in scenarios.items():
                    results[name].append(_measure(url, headers, clients, seconds, expect, pid))
            page_bytes = len(full.content)
        finally:
            trivial.terminate()
            trivial.wait(10)
            server.stop()
    median = {name: statistics.median(r["requests_per_s"] for r in runs) for name, runs in results.items()}
    cpu = {name: statistics.median(r["server_cpu_us_per_request"] for r in runs) for name, runs in results.items()}
    return {
        "messages_per_page": min(50, messages),
        "page_bytes": page_bytes,
        "clients": clients,
        "seconds_per_round": seconds,
        "rounds": rounds,
        "load_generator": "wrk" if shutil.which("wrk") else "aiohttp",
        "load_average": os.getloadavg()[0],
        "runs": results,
        "median_requests_per_s": median,
        "median_server_cpu_us_per_request": cpu,
        "cpu_ratios": {
            "not_modified_to_full": cpu["not_modified"] / cpu["full"],
            "not_modified_to_trivial": cpu["not_modified"] / cpu["trivial"],
            "sessions_not_modified_to_full": cpu["sessions_not_modified"] / cpu["sessions_full"],
        },
        "ratios": {
            "not_modified_to_full": median["not_modified"] / median["full"],
            "not_modified_to_trivial": median["not_modified"] / median["trivial"],
            "full_to_trivial": median["full"] / median["trivial"],
            "sessions_not_modified_to_full": median["sessions_not_modified"] / median["sessions_full"],
        },
        "errors": sum(r["errors"] for runs in results.values() for r in runs),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    result = run(args.messages, args.clients, args.seconds, args.rounds)
    print(f"{'scenario':24} {'req/s (median)':>15} {'p50 ms':>8} {'p99 ms':>8} {'server CPU µs/req':>18}")
    for name, runs in result["runs"].items():
        p50 = statistics.median(r["p50_ms"] for r in runs)
        p99 = statistics.median(r["p99_ms"] for r in runs)
        cpu = result["median_server_cpu_us_per_request"][name]
        print(f"{name:24} {result['median_requests_per_s'][name]:15.0f} {p50:8.1f} {p99:8.1f} {cpu:18.0f}")
    for name, ratio in result["ratios"].items():
        print(f"rate {name}: {ratio:.2f}")
    for name, ratio in result["cpu_ratios"].items():
        print(f"server CPU per request {name}: {ratio:.2f}")
    print(f"errors: {result['errors']}, load average {result['load_average']:.1f}")
    save_json(args.json, result)


if __name__ == "__main__":
    main()
