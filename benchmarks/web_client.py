"""Web client benchmark: a real `chronicle serve` on a fresh data directory and Debian's Chromium
(headless, driven by Playwright) measure what a person using the web client waits for:

1. the JavaScript shipped for the first screen (the sign-in page; the session list after signing
   in; the session list opened directly while signed in): gzip -9 sizes of the `/assets/*.js`
   files the browser actually loaded;
2. opening a 10,000-message session: from navigation start to the newest message's text being in
   the conversation log (and the frame after it painted), warm server, median and max of N;
3. live delivery: P people post into the session the browser has open, about one message per
   second each; for every message, the time from its POST's 201 to the browser painting it
   (same machine, same wall clock), and how many never showed or showed twice;
4. the JS heap after scrolling the whole conversation from the bottom to the first message and
   back (after a forced garbage collection).

Next to them, measured in the same run: the server's `/health` round trip and a bare
`GET /api/sessions/<id>/messages?dir=b&limit=50`, from Python and from inside the page, so the
browser figures read against what the server itself takes.

    python -m benchmarks.web_client --messages 10000 --posters 20 --seconds 60 --json benchmarks/results/web-client.json

Loopback only; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import re
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import httpx

from benchmarks.load import _proc_stat, percentile
from benchmarks.report import save_json
from tests.e2e.server import Server

CHROMIUM = os.environ.get("CHRONICLE_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-precise-memory-info",
]
VIEWPORT = {"width": 1280, "height": 800}
PASSWORD = "benchmark password"
BEGINNING = "This is the beginning of the conversation."
JS_ASSET = re.compile(r"/assets/[^/?#]+\.js(\?.*)?$")

AIMS = {"first_screen_js_kb": 150, "open_ms": 300, "live_p99_ms": 100, "heap_mb": 100}


def _ms(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None, "max": None, "min": None}
    return {
        "p50": round(percentile(values, 0.5), 1),
        "p95": round(percentile(values, 0.95), 1),
        "p99": round(percentile(values, 0.99), 1),
        "max": round(max(values), 1),
        "min": round(min(values), 1),
    }


# --- setting up through the HTTP API --------------------------------------------------------


def _signup(url: str, email: str, name: str) -> tuple[str, str]:
    """Registers and logs in; returns (user id, bearer token)."""
    with httpx.Client(base_url=url, timeout=30) as http:
        user = http.post("/api/auth/register", json={"email": email, "password": PASSWORD, "display_name": name})
        assert user.status_code == 201, user.text
        login = http.post("/api/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        return user.json()["id"], login.json()["access_token"]


async def _post_many(url: str, path: str, token: str, texts: list[str], concurrency: int) -> list[int]:
    """Posts the texts with `concurrency` requests in flight; returns their positions."""
    positions: list[int] = []
    queue = iter(texts)
    headers = {"authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency + 2)) as http:

        async def worker() -> None:
            for text in queue:
                async with http.post(url + path, json={"content": text}, headers=headers) as r:
                    assert r.status == 201, await r.text()
                    positions.append((await r.json())["position"])

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return positions


def _post(http: httpx.Client, path: str, text: str) -> int:
    r = http.post(path, json={"content": text})
    assert r.status_code == 201, r.text
    return r.json()["position"]


def _timed(http: httpx.Client, path: str, n: int, **params: Any) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        r = http.get(path, params=params)
        out.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, r.text
    return out


# --- in-page scripts ------------------------------------------------------------------------

# Installed before the app's scripts on every navigation: notes (performance.now(), measured from
# the navigation's start) when the target text first appears in the conversation log, and the
# first moment after the frame that painted it (rAF, then a task).
OPEN_OBSERVER = """
(target) => {
  const b = (window.__open = { seenAt: null, paintedAt: null });
  const check = () => {
    const log = document.querySelector('[role="log"]');
    if (b.seenAt === null && log && log.textContent.includes(target)) {
      b.seenAt = performance.now();
      observer.disconnect();
      requestAnimationFrame(() => setTimeout(() => { b.paintedAt = performance.now(); }, 0));
    }
  };
  const observer = new MutationObserver(check);
  observer.observe(document, { childList: true, subtree: true, characterData: true });
}
"""

# Live delivery: on every change to the log, every tag in a message row is noted with Date.now()
# when first seen, and again after the frame that painted it, with whether its row was inside the
# log's viewport then. A tag in two rows at once counts as shown twice.
LIVE_OBSERVER = """
() => {
  const log = document.querySelector('[role="log"]');
  const s = (window.__live = { seen: {}, painted: {}, offscreen: [], twice: [], maxFromBottom: 0 });
  const tag = /L\\d{2}x\\d{5}/g;
  let pending = [];
  const scan = () => {
    const now = Date.now();
    const count = new Map();
    for (const row of log.querySelectorAll('article')) {
      for (const t of (row.textContent || '').match(tag) || []) count.set(t, (count.get(t) || 0) + 1);
    }
    for (const [t, n] of count) {
      if (n > 1 && !s.twice.includes(t)) s.twice.push(t);
      if (!(t in s.seen)) { s.seen[t] = now; pending.push(t); }
    }
    if (pending.length) {
      const batch = pending;
      pending = [];
      requestAnimationFrame(() => setTimeout(() => {
        const at = Date.now();
        const box = log.getBoundingClientRect();
        s.maxFromBottom = Math.max(s.maxFromBottom, log.scrollHeight - log.scrollTop - log.clientHeight);
        for (const t of batch) {
          s.painted[t] = at;
          const row = [...log.querySelectorAll('article')].find((a) => a.textContent.includes(t));
          const r = row && row.getBoundingClientRect();
          if (!r || r.bottom <= box.top || r.top >= box.bottom) s.offscreen.push(t);
        }
      }, 0));
    }
  };
  new MutationObserver(scan).observe(log, { childList: true, subtree: true, characterData: true });
  scan();
}
"""

# Scrolls the log up one viewport per step (two frames each) until the first message is loaded
# and the top reached, then down the same way to the bottom; every message row id seen on the way
# is collected, so the caller can check that every message was shown.
SCROLL_THROUGH = """
async ({ first, maxMs }) => {
  const log = document.querySelector('[role="log"]');
  const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
  const ids = new Set();
  const collect = () => { for (const a of log.querySelectorAll('article[id^="message-"]')) ids.add(a.id); };
  const t0 = performance.now();
  let steps = 0;
  const atTop = () => log.scrollTop <= 0 && log.textContent.includes(first) && log.textContent.includes(__BEGINNING__);
  while (!atTop()) {
    if (performance.now() - t0 > maxMs) return { complete: false, steps, ids: ids.size, upMs: null, downMs: null };
    log.scrollTop = Math.max(0, log.scrollTop - log.clientHeight);
    await frame(); await frame();
    collect();
    steps++;
  }
  const upMs = performance.now() - t0;
  while (log.scrollHeight - log.scrollTop - log.clientHeight > 2) {
    if (performance.now() - t0 > maxMs) return { complete: false, steps, ids: ids.size, upMs, downMs: null };
    log.scrollTop = log.scrollTop + log.clientHeight;
    await frame(); await frame();
    collect();
    steps++;
  }
  return { complete: true, steps, ids: ids.size, upMs, downMs: performance.now() - t0 - upMs };
}
""".replace("__BEGINNING__", json.dumps(BEGINNING))

# Where an opening's time went: the document, its scripts, and the API requests (start → end,
# ms from navigation start), from the page's Navigation and Resource Timing entries.
PHASES = """
() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const r = (x) => Math.round(x * 10) / 10;
  const out = { document_ms: r(nav.responseEnd), dom_content_loaded_ms: r(nav.domContentLoadedEventEnd) };
  out.requests = performance.getEntriesByType('resource')
    .filter((e) => e.name.includes('/api/') || e.name.includes('/assets/'))
    .map((e) => `${new URL(e.name).pathname}${new URL(e.name).search} ${r(e.startTime)}→${r(e.responseEnd)}`);
  return out;
}
"""

IN_PAGE_FETCH = """
async ({ path, n }) => {
  const out = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const r = await fetch(path, { credentials: 'same-origin' });
    await r.json();
    out.push(performance.now() - t);
  }
  return out;
}
"""


# --- the measurements -----------------------------------------------------------------------


class _Scripts:
    """The `/assets/*.js` responses a page received, by URL."""

    def __init__(self, page) -> None:
        self.responses: dict[str, Any] = {}
        page.on("response", lambda r: self.responses.setdefault(r.url, r) if JS_ASSET.search(r.url) else None)

    def sizes(self, urls: list[str] | None = None) -> dict[str, dict[str, int]]:
        out = {}
        for url in urls if urls is not None else list(self.responses):
            body = self.responses[url].body()
            out[url.rsplit("/", 1)[-1]] = {"bytes": len(body), "gzip": len(gzip.compress(body, 9))}
        return out


def _kb(files: dict[str, dict[str, int]]) -> float:
    return round(sum(f["gzip"] for f in files.values()) / 1000, 1)


def _first_screen(browser, url: str, email: str) -> tuple[dict, dict]:
    """JS for the sign-in page, the session list reached by signing in, and the session list
    opened directly while signed in (a fresh browser context: nothing cached). Returns the figures
    and the signed-in storage state."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    scripts = _Scripts(page)
    page.goto(url + "/")
    page.get_by_role("button", name="Sign in").wait_for()
    page.wait_for_load_state("networkidle")
    sign_in = scripts.sizes()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="New session").wait_for()
    page.get_by_role("link", name=re.compile("Benchmark")).first.wait_for()
    page.wait_for_load_state("networkidle")
    after_sign_in = scripts.sizes()
    state = context.storage_state()
    context.close()

    context = browser.new_context(viewport=VIEWPORT, storage_state=state)
    page = context.new_page()
    scripts = _Scripts(page)
    page.goto(url + "/")
    page.get_by_role("button", name="New session").wait_for()
    page.get_by_role("link", name=re.compile("Benchmark")).first.wait_for()
    page.wait_for_load_state("networkidle")
    direct = scripts.sizes()
    context.close()
    figures = {
        "sign_in_page_js_gzip_kb": _kb(sign_in),
        "session_list_after_sign_in_js_gzip_kb": _kb(after_sign_in),
        "session_list_direct_js_gzip_kb": _kb(direct),
        "files": {"sign_in": sign_in, "session_list_after_sign_in": after_sign_in, "session_list_direct": direct},
    }
    return figures, state


def _live(page, url: str, sid: str, poster_tokens: list[str], seconds: float, rate: float) -> dict:
    """P posters post tagged messages at `rate` each; the page notes when each tag shows."""
    page.evaluate(LIVE_OBSERVER)
    path = f"/api/sessions/{sid}/messages"
    acks: dict[str, tuple[float, float]] = {}  # tag -> (POST sent, 201 received), time.time()
    errors: list[str] = []
    lock = threading.Lock()
    start = time.time() + 1.0
    deadline = start + seconds

    def poster(n: int, token: str) -> None:
        with httpx.Client(base_url=url, headers={"authorization": f"Bearer {token}"}, timeout=30) as http:
            k = 0
            while True:
                due = start + n / (len(poster_tokens) * rate) + k / rate  # posters spread over the second
                if due >= deadline:
                    return
                time.sleep(max(0.0, due - time.time()))
                tag = f"L{n:02d}x{k:05d}"
                sent = time.time()
                try:
                    r = http.post(path, json={"content": f"{tag} a live message from poster {n}"})
                    acked = time.time()
                except httpx.HTTPError as e:
                    with lock:
                        errors.append(f"{tag}: {e!r}")
                else:
                    with lock:
                        if r.status_code == 201:
                            acks[tag] = (sent, acked)
                        else:
                            errors.append(f"{tag}: {r.status_code} {r.text[:200]}")
                k += 1

    threads = [threading.Thread(target=poster, args=(n, t), daemon=True) for n, t in enumerate(poster_tokens)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    settle = time.monotonic() + 15  # stragglers: until every acknowledged tag showed, or 15 s
    while time.monotonic() < settle:
        if page.evaluate("() => Object.keys(window.__live.painted).length") >= len(acks):
            break
        page.wait_for_timeout(100)
    page.wait_for_timeout(300)
    live = page.evaluate("() => window.__live")
    from_201 = [live["painted"][t] - a * 1000 for t, (_, a) in acks.items() if t in live["painted"]]
    from_sent = [live["painted"][t] - s * 1000 for t, (s, _) in acks.items() if t in live["painted"]]
    inserted = [live["seen"][t] - a * 1000 for t, (_, a) in acks.items() if t in live["seen"]]
    post_rtt = [(a - s) * 1000 for s, a in acks.values()]
    return {
        "posters": len(poster_tokens),
        "seconds": seconds,
        "posted": len(acks),
        "post_errors": len(errors),
        "post_error_samples": errors[:5],
        "painted": sum(1 for t in acks if t in live["painted"]),
        "never_painted": sum(1 for t in acks if t not in live["painted"]),
        "shown_twice": len(live["twice"]),
        "unexpected_tags": sorted(set(live["seen"]) - set(acks))[:5],
        "painted_outside_viewport": len(live["offscreen"]),
        "max_px_from_bottom": live["maxFromBottom"],
        "from_201_to_paint_ms": _ms(from_201),
        "from_201_to_dom_ms": _ms(inserted),
        "from_post_sent_to_paint_ms": _ms(from_sent),
        "post_round_trip_ms": _ms(post_rtt),
    }


def _heap(cdp) -> float:
    cdp.send("HeapProfiler.collectGarbage")
    return round(cdp.send("Runtime.getHeapUsage")["usedSize"] / 1e6, 1)


def run(messages: int = 10_000, posters: int = 20, seconds: float = 60.0, rate: float = 1.0, navigations: int = 5) -> dict:
    from playwright.sync_api import sync_playwright  # imported here: the short form's collection stays light

    result: dict[str, Any] = {"messages": messages, "posters": posters, "live_seconds": seconds, "navigations": navigations}
    nonce = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="chronicle-web-") as tmp:
        server = Server(Path(tmp), env={"CHRONICLE_ASSISTANT_ANSWERS": ""}).start()
        try:
            # --- the session: the owner, P posters as members, the messages --------------------
            owner_email = f"reader-{nonce}@example.org"
            _, owner_token = _signup(server.url, owner_email, "Reader")
            http = httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {owner_token}"}, timeout=60)
            sid = http.post("/api/sessions", json={"title": "Benchmark", "assistant": False}).json()["id"]
            path = f"/api/sessions/{sid}/messages"
            poster_tokens = []
            for n in range(posters):
                user_id, token = _signup(server.url, f"poster{n}-{nonce}@example.org", f"Poster {n}")
                r = http.post(f"/api/sessions/{sid}/members", json={"user_id": user_id})
                assert r.status_code == 201, r.text
                poster_tokens.append(token)
            first = f"first message {nonce}"
            newest = f"newest message {nonce}"
            _post(http, path, first)
            started = time.perf_counter()
            bulk = [f"message {i} of {messages}: an update of ordinary length about the launch plan" for i in range(1, messages - 1)]
            box: dict[str, Any] = {}
            # asyncio in a thread of its own: no event loop may run in the thread that later drives Playwright
            worker = threading.Thread(target=lambda: box.update(p=asyncio.run(_post_many(server.url, path, owner_token, bulk, 16))))
            worker.start()
            worker.join()
            last = _post(http, path, newest)
            posting = time.perf_counter() - started
            r = http.get(path, params={"dir": "b", "limit": 1, "after_position": last})
            assert r.status_code == 200 and r.json()["items"][0]["content"] == newest, r.text
            result["setup"] = {
                "bulk_posts_per_s": round(messages / posting, 1),
                "read_model_caught_up_s": round(time.perf_counter() - started, 2),
            }

            # --- the ceiling/context, from Python -------------------------------------------
            http.get("/health")
            result["context"] = {
                "health_round_trip_ms": _ms(_timed(http, "/health", 50)),
                "messages_page_api_ms": _ms(_timed(http, path, 50, dir="b", limit=50)),
            }

            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                try:
                    problems: list[str] = []
                    result["first_screen"], state = _first_screen(browser, server.url, owner_email)

                    # --- opening the 10,000-message session --------------------------------
                    context = browser.new_context(viewport=VIEWPORT, storage_state=state)
                    page = context.new_page()
                    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
                    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
                    page.add_init_script(f"({OPEN_OBSERVER})({json.dumps(newest)})")
                    opens, frames, phases = [], [], []
                    for n in range(navigations + 1):  # the first warms the server and the browser cache
                        page.goto(f"{server.url}/sessions/{sid}")
                        page.wait_for_function("() => window.__open && window.__open.paintedAt !== null", timeout=30_000)
                        seen, painted = page.evaluate("() => [window.__open.seenAt, window.__open.paintedAt]")
                        if n > 0:
                            opens.append(seen)
                            frames.append(painted)
                            phases.append(page.evaluate(PHASES))
                    result["open"] = {
                        "to_newest_text_in_log_ms": [round(x, 1) for x in opens],
                        "median_ms": round(statistics.median(opens), 1),
                        "max_ms": round(max(opens), 1),
                        "painted_median_ms": round(statistics.median(frames), 1),
                        "painted_max_ms": round(max(frames), 1),
                        "phases_of_median_navigation": phases[sorted(range(len(opens)), key=opens.__getitem__)[len(opens) // 2]],
                    }
                    result["context"]["messages_page_in_page_fetch_ms"] = _ms(
                        page.evaluate(IN_PAGE_FETCH, {"path": f"{path}?dir=b&limit=50", "n": 30})
                    )
                    cdp = context.new_cdp_session(page)
                    heap_open = _heap(cdp)

                    # --- live delivery -------------------------------------------------------
                    result["live"] = _live(page, server.url, sid, poster_tokens, seconds, rate)

                    # --- scrolling through everything, then the heap --------------------------
                    total = messages + result["live"]["posted"]
                    scroll = page.evaluate(SCROLL_THROUGH, {"first": first, "maxMs": 900_000})
                    page.wait_for_timeout(500)
                    result["heap"] = {
                        "after_open_mb": heap_open,
                        "after_scroll_through_mb": _heap(cdp),
                        "performance_memory_used_mb": round(page.evaluate("() => performance.memory.usedJSHeapSize") / 1e6, 1),
                        "scroll_complete": scroll["complete"],
                        "scroll_steps": scroll["steps"],
                        "scroll_up_s": round(scroll["upMs"] / 1000, 1) if scroll["upMs"] is not None else None,
                        "scroll_down_s": round(scroll["downMs"] / 1000, 1) if scroll["downMs"] is not None else None,
                        "messages_in_session": total,
                        "distinct_messages_shown": scroll["ids"],
                    }
                    result["browser_problems"] = problems[:10]
                    context.close()
                finally:
                    browser.close()
            rss, _ = _proc_stat(server.process.pid)
            result["server_rss_mb"] = round(rss, 1)
            http.close()
        finally:
            server.stop()
    return result


def markdown(r: dict) -> str:
    fs, op, lv, hp, cx = r["first_screen"], r["open"], r["live"], r["heap"], r["context"]
    js = max(fs["sign_in_page_js_gzip_kb"], fs["session_list_after_sign_in_js_gzip_kb"], fs["session_list_direct_js_gzip_kb"])
    api = cx["messages_page_api_ms"]
    d = lv["from_201_to_paint_ms"]

    def verdict(value: float | None, aim: float) -> str:
        return "—" if value is None else ("✔" if value <= aim else f"✘ ({value / aim:.1f}×)")

    rows = [
        "| measure | aim | measured | verdict | context in the same run |",
        "|---|---|---|---|---|",
        f"| first-screen JS, gzip -9 | ≤ {AIMS['first_screen_js_kb']} KB | sign-in page {fs['sign_in_page_js_gzip_kb']} KB; "
        f"session list after sign-in {fs['session_list_after_sign_in_js_gzip_kb']} KB (cumulative); session list opened directly "
        f"{fs['session_list_direct_js_gzip_kb']} KB | {verdict(js, AIMS['first_screen_js_kb'])} | JS files the browser loaded "
        f"({len(fs['files']['session_list_after_sign_in'])} after sign-in) |",
        f"| open a {r['messages']:,}-message session: navigation → newest message in the log | ≤ {AIMS['open_ms']} ms | median "
        f"**{op['median_ms']} ms**, max {op['max_ms']} ms ({r['navigations']} navigations, warm); painted: median "
        f"{op['painted_median_ms']}, max {op['painted_max_ms']} ms | {verdict(op['max_ms'], AIMS['open_ms'])} | "
        f"`GET …/messages?dir=b&limit=50`: p50 {api['p50']} ms from Python, "
        f"{cx['messages_page_in_page_fetch_ms']['p50']} ms by fetch in the page; `/health` p50 {cx['health_round_trip_ms']['p50']} ms |",
        f"| live delivery, {lv['posters']} posters × ~1 msg/s, {lv['seconds']:g} s: 201 → painted | p99 ≤ {AIMS['live_p99_ms']} ms | "
        f"p50 {d['p50']}, p95 {d['p95']}, **p99 {d['p99']}**, max {d['max']} ms; {lv['posted']:,} posted, {lv['painted']:,} painted, "
        f"**{lv['never_painted']} never painted, {lv['shown_twice']} shown twice** | {verdict(d['p99'], AIMS['live_p99_ms'])} | "
        f"201 → in the DOM p50 {lv['from_201_to_dom_ms']['p50']} / p99 {lv['from_201_to_dom_ms']['p99']} ms; POST round trip p50 "
        f"{lv['post_round_trip_ms']['p50']} / p99 {lv['post_round_trip_ms']['p99']} ms; {lv['post_errors']} POST errors |",
        f"| JS heap after scrolling all {hp['messages_in_session']:,} messages up and back down (after GC) | ≤ {AIMS['heap_mb']} MB | "
        f"**{hp['after_scroll_through_mb']} MB** (performance.memory: {hp['performance_memory_used_mb']} MB) | "
        f"{verdict(hp['after_scroll_through_mb'], AIMS['heap_mb'])} | {hp['after_open_mb']} MB after opening; "
        f"{hp['distinct_messages_shown']:,} distinct messages shown on the way, {hp['scroll_steps']:,} steps, up {hp['scroll_up_s']} s, "
        f"down {hp['scroll_down_s']} s |",
    ]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--posters", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--rate", type=float, default=1.0, help="messages per second per poster")
    parser.add_argument("--navigations", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here as JSON")
    args = parser.parse_args(argv)
    result = run(args.messages, args.posters, args.seconds, args.rate, args.navigations)
    print(markdown(result))
    save_json(args.json, result)


if __name__ == "__main__":
    main()
