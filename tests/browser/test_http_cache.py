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
    with ann.page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith(f"/api/sessions/{sid}/messages")) as posted:
        send(ann.page, "one message")
    position = posted.value.json()["position"]
    # A URL of its own (the page's requests use other queries) that reads the post's own write: the 201 comes
    # when the event is appended, and the read model may still be behind it (a pending message shows at once).
    path = f"/api/sessions/{sid}/messages?limit=7&after_position={position}"
    fetch = "async p => { const r = await fetch(p, {credentials: 'same-origin', headers: {accept: 'application/json'}});"
    fetch += " return [r.status, (await r.json()).items.map(m => m.content)] }"
    first = ann.page.evaluate(fetch, path)
    assert first == [200, ["one message"]]
    before = answered_304(server.url)
    second = ann.page.evaluate(fetch, path)
    assert second == first, "the page sees the cached 200 and its body"
    assert answered_304(server.url) == before + 1, "Chromium revalidated with If-None-Match and the server answered 304"
