"""The browser's own HTTP cache revalidates the API's cached views (ADR-045): the web client's
`fetch` sends no validator itself, Chromium adds `If-None-Match` from its cached copy, the server
answers 304, and the page still sees a 200 with the body it had. A real server, a real Chromium."""

from __future__ import annotations

import re

import pytest

from tests.browser.test_chat import send, start_session

pytestmark = pytest.mark.browser


def test_chromium_revalidates_a_cached_view_with_if_none_match_and_gets_304(people):
    ann = people()
    ann.sign_up("Ann")
    sid = start_session(ann.page, "Cached in the browser")
    send(ann.page, "one message")
    ann.page.get_by_role("log").get_by_text("one message").wait_for()
    path = f"/api/sessions/{sid}/messages"
    seen: list[tuple[dict[str, str], int]] = []

    def record(response) -> None:
        if response.request.method == "GET" and response.url.endswith(path):  # this exact URL, no query: only ours
            seen.append((response.request.all_headers(), response.status))

    ann.page.on("response", record)
    fetch = "async p => { const r = await fetch(p, {credentials: 'same-origin', headers: {accept: 'application/json'}});"
    fetch += " return [r.status, (await r.json()).items.map(m => m.content)] }"
    first = ann.page.evaluate(fetch, path)
    second = ann.page.evaluate(fetch, path)
    assert first == second == [200, ["one message"]], "the page sees the same 200 both times"
    print("SEEN", seen)
    (first_headers, first_status), (second_headers, second_status) = seen[-2:]
    assert first_status == 200 and "if-none-match" not in first_headers
    assert re.fullmatch(r'W/"[0-9a-f]+"', second_headers.get("if-none-match", "")), second_headers
    assert second_status == 304, "Chromium revalidated its copy and the server answered 304"
