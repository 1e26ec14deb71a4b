"""People using the web client as they would: chatting live, going offline, the assistant,
documents, search, history, and hostile content and sites. A real server, a real Chromium."""

from __future__ import annotations

import http.server
import re
import threading

import pytest
from playwright.sync_api import Page, expect

from tests.browser.conftest import Person
from tests.document_files import docx

pytestmark = pytest.mark.browser


def start_session(page: Page, title: str, assistant: bool = False) -> str:
    """Create a session and wait until the client shows it (not the session that was open before)."""
    before = page.url
    page.get_by_role("button", name="New session").click()
    page.get_by_label("Title").fill(title)
    checkbox = page.get_by_label("Assistant")
    if checkbox.is_checked() != assistant:
        checkbox.click()
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_role("log", name=title, exact=True)).to_be_visible()
    page.wait_for_url(lambda url: url != before and re.search(r"/sessions/[0-9a-f-]{36}$", url) is not None)
    return page.url.rsplit("/", 1)[-1]


def send(page: Page, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()


def invite(page: Page, email: str) -> None:
    page.get_by_role("button", name="Members").click()
    page.get_by_label("Email to invite").fill(email)
    page.get_by_role("button", name="Invite").click()
    expect(page.get_by_role("status").filter(has_text="was added")).to_be_visible()


def pair(people, **bob_options) -> tuple[Person, Person, str]:
    """Ann and Bob, each in their own browser, in Ann's session."""
    ann, bob = people(), people(**bob_options)
    ann.sign_up("Ann")
    bob_email = bob.sign_up("Bob")
    sid = start_session(ann.page, "Ann and Bob")
    invite(ann.page, bob_email)
    bob.page.get_by_role("link", name=re.compile("Ann and Bob")).click()  # the invitation arrived live
    expect(bob.page.get_by_role("log", name="Ann and Bob")).to_be_visible()
    return ann, bob, sid


def test_two_people_chat_live_in_both_directions(people):
    ann, bob, _ = pair(people)
    send(ann.page, "Hello Bob, are you there?")
    expect(bob.page.get_by_role("log").get_by_text("Hello Bob, are you there?")).to_be_visible()
    bob.page.get_by_label("Message").press_sequentially("Yes, Ann")
    expect(ann.page.get_by_text("Bob is typing…")).to_be_visible()
    bob.page.get_by_label("Message").press_sequentially(", here I am.")
    bob.page.get_by_label("Message").press("Enter")
    expect(ann.page.get_by_role("log").get_by_text("Yes, Ann, here I am.")).to_be_visible()
    expect(ann.page.get_by_text("Bob is typing…")).to_have_count(0)
    ann.screenshot("conversation")
    bob.screenshot("conversation-other-side")


def test_offline_and_back_every_missed_message_shows_once_in_order(people):
    ann, bob, _ = pair(people, viewport={"width": 1280, "height": 2400})  # all 21 messages rendered at once
    send(ann.page, "before the outage")
    expect(bob.page.get_by_role("log").get_by_text("before the outage")).to_be_visible()
    bob.context.set_offline(True)
    for n in range(20):
        send(ann.page, f"missed message {n:02d}")
    expect(ann.page.get_by_role("log").get_by_text("missed message 19")).to_be_visible()
    bob.context.set_offline(False)
    log = bob.page.get_by_role("log")
    expect(log.get_by_text("missed message 19")).to_be_visible(timeout=30_000)
    texts = [t for t in log.get_by_text(re.compile(r"^missed message \d\d$")).all_inner_texts()]
    assert texts == [f"missed message {n:02d}" for n in range(20)]
    bob.page.reload()
    log = bob.page.get_by_role("log")
    expect(log.get_by_text("missed message 19")).to_be_visible()
    assert log.get_by_text(re.compile(r"^missed message \d\d$")).all_inner_texts() == [f"missed message {n:02d}" for n in range(20)]
    # A connection drop is part of the test: the browser reports the failed stream while offline.
    bob.problems[:] = [p for p in bob.problems if "ERR_INTERNET_DISCONNECTED" not in p and "WebSocket" not in p]


def test_hostile_message_text_is_shown_as_text_and_runs_nothing(people):
    ann = people()
    ann.sign_up("Ann")
    dialogs: list[str] = []
    ann.page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    start_session(ann.page, "Hostile")
    hostile = ['<img src=x onerror="alert(1)">', "<script>alert(2)</script>", "[click me](javascript:alert(3))"]
    for text in hostile:
        send(ann.page, text)
    log = ann.page.get_by_role("log")
    expect(log.get_by_text('<img src=x onerror="alert(1)">')).to_be_visible()
    expect(log.get_by_text("<script>alert(2)</script>")).to_be_visible()
    link = log.get_by_text("click me")
    expect(link).to_be_visible()
    assert "javascript:" not in (link.get_attribute("href") or "")
    link.click()
    assert log.locator("img, script").count() == 0
    assert dialogs == []


def test_the_assistant_streams_its_reply_and_stop_keeps_the_partial_text(people):
    ann = people()
    ann.sign_up("Ann")
    start_session(ann.page, "Ask", assistant=True)
    send(ann.page, "The launch moved to Friday after the security review of the vault service.")
    send(ann.page, "The launch party is on Saturday at the lighthouse with the whole launch team.")
    send(ann.page, "What do we know about the launch?")
    stop = ann.page.get_by_role("button", name="Stop")
    expect(stop).to_be_visible()
    stop.click()
    expect(ann.page.get_by_role("log").get_by_text("cancelled")).to_be_visible()
    expect(stop).to_have_count(0)


def test_upload_a_docx_see_its_conversion_complete_and_preview_its_text(people, tmp_path):
    ann = people()
    ann.sign_up("Ann")
    path = tmp_path / "walrus.docx"
    path.write_bytes(docx("Walrus report", "The walrus herd moved north in March.", [["Site", "Count"], ["Svalbard", "312"]]))
    page = ann.open("/documents")
    page.get_by_label("Upload file").set_input_files(str(path))
    row = page.get_by_role("listitem").filter(has_text="walrus.docx")
    expect(row).to_be_visible()
    row.get_by_label("Convert to").select_option("text")
    row.get_by_role("button", name="Convert").click()
    expect(row.get_by_text("Text: converted")).to_be_visible(timeout=60_000)
    ann.screenshot("documents")
    row.get_by_role("link", name="walrus.docx").click()
    expect(page.get_by_text("The walrus herd moved north in March.")).to_be_visible()
    expect(page.get_by_text("Svalbard")).to_be_visible()


def test_a_sessions_documents_panel_lists_them_a_page_at_a_time(people, tmp_path):
    """52 files dropped on a session's documents panel: 50 listed, the rest on request."""
    ann = people()
    ann.sign_up("Ann")
    start_session(ann.page, "Library")
    page = ann.page
    page.get_by_role("button", name="Documents").click()
    panel = page.get_by_role("region", name="Documents")
    paths = []
    for n in range(52):
        path = tmp_path / f"note-{n:02}.txt"
        path.write_text(f"note number {n}")
        paths.append(str(path))
    panel.get_by_label("Upload file").set_input_files(paths)
    links = panel.get_by_role("link", name=re.compile(r"^note-\d\d\.txt$"))
    more = panel.get_by_role("button", name="More documents")
    expect(more).to_be_visible(timeout=30_000)  # the attachments arrive as frames; the first page is full
    expect(links).to_have_count(50)
    more.click()
    expect(links).to_have_count(52)
    expect(more).to_be_hidden()
    names = links.all_inner_texts()
    assert sorted(names) == [f"note-{n:02}.txt" for n in range(52)] and len(set(names)) == 52


def test_search_finds_a_message_and_opens_it_in_its_conversation(people):
    ann = people()
    ann.sign_up("Ann")
    start_session(ann.page, "Zoo", assistant=False)
    send(ann.page, "The okapi enclosure opens in June.")
    expect(ann.page.get_by_role("log").get_by_text("The okapi enclosure opens in June.")).to_be_visible()
    start_session(ann.page, "Elsewhere", assistant=False)
    search = ann.page.get_by_label("Search")
    search.fill("okapi")
    search.press("Enter")
    hit = ann.page.get_by_role("link", name=re.compile("okapi", re.I)).first
    expect(hit).to_be_visible()
    ann.screenshot("search")
    hit.click()
    expect(ann.page.get_by_role("log", name="Zoo")).to_be_visible()
    expect(ann.page.get_by_role("log").get_by_text("The okapi enclosure opens in June.")).to_be_in_viewport()


def test_the_history_slider_shows_an_edited_messages_earlier_text(people):
    ann = people()
    ann.sign_up("Ann")
    start_session(ann.page, "Minutes", assistant=False)
    send(ann.page, "We meet on Monday.")
    log = ann.page.get_by_role("log")
    message = log.get_by_role("article").filter(has_text="We meet on Monday.")
    message.get_by_role("button", name="Edit").click()
    ann.page.get_by_role("dialog").get_by_role("textbox").fill("We meet on Tuesday.")
    ann.page.get_by_role("dialog").get_by_role("button", name="Save").click()
    expect(log.get_by_text("We meet on Tuesday.")).to_be_visible()
    ann.page.get_by_role("link", name="History").click()
    slider = ann.page.get_by_label("History position")
    expect(slider).to_be_visible()
    expect(ann.page.get_by_role("main").get_by_text("We meet on Tuesday.")).to_be_visible()
    slider.focus()
    slider.press("ArrowLeft")
    expect(ann.page.get_by_role("main").get_by_text("We meet on Monday.")).to_be_visible()
    ann.screenshot("history")


def test_a_messages_versions_dialog_shows_later_versions_on_request(people):
    ann = people()
    email = ann.sign_up("Ann")
    sid = start_session(ann.page, "Drafts", assistant=False)
    with ann.page.expect_response(lambda r: r.request.method == "POST" and r.url.endswith(f"/api/sessions/{sid}/messages")) as posted:
        send(ann.page, "draft 1")
    message = posted.value.json()
    log = ann.page.get_by_role("log")
    expect(log.get_by_text("draft 1")).to_be_visible()
    token = ann.server.client().post("/api/auth/login", {"email": email, "password": "correct horse"}).json()["access_token"]
    api = ann.server.client(token)
    for n in range(2, 53):  # 52 versions: more than the 50 of a page
        assert api.patch(f"/api/sessions/{sid}/messages/{message['id']}", {"content": f"draft {n}"}).status_code == 200
    expect(log.get_by_text("draft 52")).to_be_visible()
    log.get_by_role("button", name="edited").click()
    dialog = ann.page.get_by_role("dialog")
    expect(dialog.get_by_role("heading", name=re.compile("^Version 50 "))).to_be_visible()
    expect(dialog.get_by_role("heading", name=re.compile("^Version 51 "))).to_have_count(0)
    dialog.get_by_role("button", name="Show later versions").click()
    expect(dialog.get_by_role("heading", name=re.compile("^Version 52 "))).to_be_visible()
    expect(dialog.get_by_role("listitem")).to_have_count(52)
    expect(dialog.get_by_role("button", name="Show later versions")).to_have_count(0)
    assert ann.problems == []


class _EvilSite(http.server.BaseHTTPRequestHandler):
    """Another origin (another port on the same host: same site, foreign origin) whose page
    posts a form to Chronicle and opens a stream with the visitor's cookie."""

    target = ""

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        page = f"""<!doctype html><html><body>
<form id="f" method="post" action="{self.target}/api/sessions" enctype="text/plain">
<input name='{{"title":"forged","x":"' value='"}}'></form>
<script>
const ws = new WebSocket("{self.target.replace("http", "ws")}/api/stream?after=0");
ws.onclose = (e) => {{ document.title = "closed " + e.code; }};
</script></body></html>"""
        body = page.encode()
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_foreign_site_can_neither_post_with_the_cookie_nor_open_a_stream(people, server):
    ann = people()
    ann.sign_up("Ann")
    _EvilSite.target = server.url
    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EvilSite)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        page = ann.context.new_page()
        page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        expect(page).to_have_title("closed 4403", timeout=10_000)
        with page.expect_response(lambda r: r.url.endswith("/api/sessions")) as posted:
            page.evaluate("document.getElementById('f').submit()")
        assert posted.value.status == 403
    finally:
        evil.shutdown()
    ann.page.reload()
    expect(ann.page.get_by_role("button", name="New session")).to_be_visible()
    expect(ann.page.get_by_text("forged")).to_have_count(0)
    ann.problems.clear()  # the foreign page's refused requests are the point of this test
