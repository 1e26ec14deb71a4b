"""Documents benchmark: starts a real `chronicle serve` on a fresh data directory and measures

- upload throughput (MB/s) for 1 MB and 50 MB files (distinct bytes, so nothing is deduplicated),
- conversions per second per source type (the server's conversion concurrency, default 2),
- message-posting latency at rest and while 4 large conversions run (the API must stay within
  2x of idle: conversions run in their own processes, the event loop only waits for them).

    python -m benchmarks.documents --json benchmarks/results/documents.json

Traffic goes only to 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks.load import percentile
from benchmarks.report import save_json
from tests import document_files as files
from tests.e2e.server import Server

MB = 1024 * 1024
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def _source(kind: str, n: int) -> tuple[str, bytes]:
    words = f"sample {n} about walrus colonies and sea ice " * 40
    makers = {
        "pdf": lambda: ("f.pdf", files.pdf([words, words, words])),
        "docx": lambda: ("f.docx", files.docx(f"Report {n}", words, [["k", "v"], [str(n), "x"]] * 10)),
        "pptx": lambda: ("f.pptx", files.pptx(f"Deck {n}", words)),
        "xlsx": lambda: ("f.xlsx", files.xlsx([["n", "text"]] + [[i, f"cell {n} {i}"] for i in range(200)])),
        "html": lambda: ("f.html", f"<html><body><h1>Page {n}</h1><p>{words}</p></body></html>".encode()),
        "markdown": lambda: ("f.md", f"# Note {n}\n\n{words}\n\n- a\n- b\n".encode()),
        "text": lambda: ("f.txt", words.encode()),
        "csv": lambda: ("f.csv", "\n".join(f"{n},{i},walrus" for i in range(300)).encode()),
        "json": lambda: ("f.json", json.dumps({"n": n, "items": [{"i": i, "w": "walrus"} for i in range(100)]}).encode()),
    }
    return makers[kind]()


async def _login(http: aiohttp.ClientSession, url: str, email: str) -> str:
    body = {"email": email, "password": "bench password", "display_name": "Bench"}
    async with http.post(f"{url}/api/auth/register", json=body) as r:
        assert r.status == 201, await r.text()
    async with http.post(f"{url}/api/auth/login", json={"email": email, "password": body["password"]}) as r:
        return "Bearer " + (await r.json())["access_token"]


async def _upload(http: aiohttp.ClientSession, url: str, auth: str, name: str, data: bytes) -> dict:
    form = aiohttp.FormData()
    form.add_field("file", data, filename=name, content_type="application/octet-stream")
    async with http.post(f"{url}/api/documents", data=form, headers={"authorization": auth}) as r:
        assert r.status == 201, await r.text()
        return await r.json()


async def _uploads(http: aiohttp.ClientSession, url: str, auth: str, size: int, count: int, parallel: int) -> float:
    """MB/s for `count` uploads of `size` distinct bytes, `parallel` at a time."""
    blobs = [os.urandom(size) for _ in range(count)]
    gate = asyncio.Semaphore(parallel)

    async def one(data: bytes) -> None:
        async with gate:
            await _upload(http, url, auth, "random.bin", data)

    started = time.perf_counter()
    await asyncio.gather(*(one(b) for b in blobs))
    return size * count / MB / (time.perf_counter() - started)


async def _wait_converted(http: aiohttp.ClientSession, url: str, auth: str, pairs: list[tuple[str, str]], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    pending = set(pairs)
    failed = 0
    while pending and time.monotonic() < deadline:
        for document_id, conversion_id in list(pending):
            async with http.get(f"{url}/api/documents/{document_id}/conversions/{conversion_id}", headers={"authorization": auth}) as r:
                status = (await r.json())["status"] if r.status == 200 else "pending"
            if status in ("completed", "failed"):
                pending.discard((document_id, conversion_id))
                failed += status == "failed"
        await asyncio.sleep(0.05)
    assert not pending, f"{len(pending)} conversions unfinished"
    return failed


async def _convert_all(http: aiohttp.ClientSession, url: str, auth: str, documents: list[dict], target: str) -> list[tuple[str, str]]:
    pairs = []
    for document in documents:
        async with http.post(
            f"{url}/api/documents/{document['id']}/conversions", json={"target": target}, headers={"authorization": auth}
        ) as r:
            assert r.status == 202, await r.text()
            pairs.append((document["id"], (await r.json())["id"]))
    return pairs


async def _conversion_rates(http: aiohttp.ClientSession, url: str, auth: str, per_type: int) -> dict[str, float]:
    rates = {}
    for kind in ("pdf", "docx", "pptx", "xlsx", "html", "markdown", "text", "csv", "json"):
        documents = [await _upload(http, url, auth, *_source(kind, n)) for n in range(per_type)]
        started = time.perf_counter()
        pairs = await _convert_all(http, url, auth, documents, "markdown")
        failed = await _wait_converted(http, url, auth, pairs, timeout=120)
        assert failed == 0, f"{failed} {kind} conversions failed"
        rates[kind] = round(per_type / (time.perf_counter() - started), 1)
    return rates


async def _posting_latency(http: aiohttp.ClientSession, url: str, auth: str, session: str, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            async with http.post(
                f"{url}/api/sessions/{session}/messages", json={"content": "status update"}, headers={"authorization": auth}
            ) as r:
                await r.read()
                assert r.status == 201
            latencies.append((time.perf_counter() - started) * 1000)

    await asyncio.gather(*(client() for _ in range(clients)))
    return {
        "posts_per_second": round(len(latencies) / seconds, 1),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
    }


async def _run(url: str, short: bool) -> dict:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as http:
        auth = await _login(http, url, "bench@example.org")
        result: dict = {
            "upload_1mb_mb_per_s": round(await _uploads(http, url, auth, MB, 8 if short else 40, 4), 1),
            "upload_50mb_mb_per_s": round(await _uploads(http, url, auth, (5 if short else 50) * MB, 1 if short else 3, 1), 1),
        }
        result["conversions_per_second"] = await _conversion_rates(http, url, auth, 2 if short else 10)
        async with http.post(f"{url}/api/sessions", json={"title": "bench", "assistant": False}, headers={"authorization": auth}) as r:
            session = (await r.json())["id"]
        seconds = 2 if short else 8
        result["posting_idle"] = await _posting_latency(http, url, auth, session, 10, seconds)
        rows = 20_000 if short else 150_000
        big = [await _upload(http, url, auth, "big.csv", "\n".join(f"{n},{i},walrus ice" for i in range(rows)).encode()) for n in range(4)]
        pairs = await _convert_all(http, url, auth, big, "html")
        await asyncio.sleep(0.5)
        result["posting_during_4_conversions"] = await _posting_latency(http, url, auth, session, 10, seconds)
        await _wait_converted(http, url, auth, pairs, timeout=600)
        result["p99_ratio_busy_to_idle"] = round(result["posting_during_4_conversions"]["p99_ms"] / result["posting_idle"]["p99_ms"], 2)
        return result


def run(short: bool = False) -> dict:
    with tempfile.TemporaryDirectory(prefix="chronicle-documents-") as tmp:
        server = Server(
            Path(tmp),
            env={
                "CHRONICLE_RATE_LIMIT_POSTS": "0",
                "CHRONICLE_RATE_LIMIT_LOGIN": "0",
                "CHRONICLE_RATE_LIMIT_PASSWORDS": "0",
                "CHRONICLE_RATE_LIMIT_WRITES": "0",
                "CHRONICLE_CONVERSION_CONCURRENCY": "4" if not short else "2",
            },
        ).start()
        try:
            return asyncio.run(_run(server.url, short))
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="a few seconds, for CI")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args(argv)
    result = run(args.short)
    print(json.dumps(result, indent=2))
    save_json(args.json, result)


if __name__ == "__main__":
    main()
