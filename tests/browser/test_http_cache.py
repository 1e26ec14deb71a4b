"""The browser's own HTTP cache revalidates the API's cached views (ADR-045): the web client's
`fetch` sends no validator itself, Chromium adds `If-None-Match` from its cached copy, the server
answers 304 (counted in its /metrics), and the page still sees a 200 with the body it had. A real
server, a real Chromium."""

from __future__ import annotations

import httpx
import pytest

from tests.browser.test_chat import send, start_session

pytestmark = pytest.mark.browser


def answered_304(server_url: str) -> float:
    """How many 304s the server has answered on the messages route (its /metrics counter)."""
    text = httpx.get(f"{server_url}/metrics", timeout=30).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("chronicle_http_requests_total{") and 'status="304"' in line and "/messages" in line and "GET" in line
    )


def test_chromium_revalidates_a_cached_view_with_if_none_match_and_gets_304(people, server):
    ann = people()
    ann.sign_up("Ann")
    sid = start_session(ann.page, "Cached in the browser")
    send(ann.page, "one message")
    ann.page.get_by_role("log").get_by_text("one message").wait_for()
    path = f"/api/sessions/{sid}/messages?limit=7"  # a URL of its own: the page's requests use other queries
    fetch = "async p => { const r = await fetch(p, {credentials: 'same-origin', headers: {accept: 'application/json'}});"
    fetch += " return [r.status, (await r.json()).items.map(m => m.content)] }"
    first = ann.page.evaluate(fetch, path)
    assert first == [200, ["one message"]]
    before = answered_304(server.url)
    second = ann.page.evaluate(fetch, path)
    assert second == first, "the page sees the cached 200 and its body"
    assert answered_304(server.url) == before + 1, "Chromium revalidated with If-None-Match and the server answered 304"
