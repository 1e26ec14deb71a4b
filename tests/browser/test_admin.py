"""The admin panel in a real browser, with the people it acts on in browsers of their own."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import Person
from tests.browser.test_chat import invite, send, start_session
from tests.e2e.server import Api, cli

pytestmark = pytest.mark.browser


def admin_in_browser(people, server) -> Person:
    email = f"chief-{uuid.uuid4().hex[:6]}@example.org"
    assert cli(server.data_dir, "users", "create", email, "--role", "admin", "--password-stdin", input="correct horse\n").returncode == 0
    admin = people()
    admin.sign_in(email)
    return admin


def person_row(admin: Person, email: str):
    page = admin.open("/admin/people")
    page.get_by_label("Search people").fill(email)
    row = page.get_by_role("row").filter(has_text=email)
    expect(row).to_have_count(1)
    return row


def api_for(server, email: str) -> Api:
    token = server.client().post("/api/auth/login", {"email": email, "password": "correct horse"}).json()["access_token"]
    return Api(server.url, token)


def test_disabling_a_person_signs_their_open_conversation_out(people, server):
    bob = people()
    bob_email = bob.sign_up("Bob")
    start_session(bob.page, "Bob's notes")
    admin = admin_in_browser(people, server)
    person_row(admin, bob_email).get_by_role("button", name="Disable").click()
    expect(bob.page.get_by_role("button", name="Sign in")).to_be_visible(timeout=20_000)
    admin.screenshot("admin-people")


def test_a_role_change_reaches_the_persons_browser(people, server):
    bob = people()
    bob_email = bob.sign_up("Bob")
    expect(bob.page.get_by_role("link", name="Admin")).to_have_count(0)
    admin = admin_in_browser(people, server)
    person_row(admin, bob_email).get_by_role("button", name="Change role").click()
    dialog = admin.page.get_by_role("dialog")
    dialog.get_by_label("New role").select_option("auditor")
    dialog.get_by_role("button", name="Save").click()
    expect(bob.page.get_by_role("button", name="Sign in")).to_be_visible(timeout=20_000)  # their tokens ended
    bob.sign_in(bob_email)
    bob.page.get_by_role("link", name="Admin").click()
    expect(bob.page).to_have_url(re.compile(r"/admin/audit$"))


def test_an_erased_persons_words_read_erased_in_another_members_open_conversation(people, server):
    ann, bob = people(), people()
    ann_email = ann.sign_up("Ann")
    bob_email = bob.sign_up("Bob")
    start_session(ann.page, "Soon erased")
    invite(ann.page, bob_email)
    bob.page.get_by_role("link", name=re.compile("Soon erased")).click()
    send(ann.page, "Ann's secret plan")
    log = bob.page.get_by_role("log")
    expect(log.get_by_text("Ann's secret plan")).to_be_visible()
    admin = admin_in_browser(people, server)
    person_row(admin, ann_email).get_by_role("button", name="Erase").click()
    dialog = admin.page.get_by_role("dialog")
    confirm = dialog.get_by_role("button", name="Erase this person")
    expect(confirm).to_be_disabled()
    dialog.get_by_label(f"Type {ann_email} to confirm").fill(ann_email)
    confirm.click()
    expect(dialog.get_by_text("Erasure done")).to_be_visible(timeout=60_000)
    expect(log.get_by_text("[erased]")).to_be_visible(timeout=30_000)
    expect(log.get_by_text("Ann's secret plan")).to_have_count(0)
    ann.problems.clear()  # Ann's own browser was signed out by the erasure, as it should be


def test_an_auditor_sees_the_audit_pages_and_nothing_else(people, server):
    aud = people()
    aud_email = aud.sign_up("Audrey")
    admin_api = server.admin()
    user_id = api_for(server, aud_email).get("/api/me").json()["id"]
    assert admin_api.patch(f"/api/admin/users/{user_id}", {"role": "auditor"}).status_code == 200
    aud.sign_in(aud_email)
    page = aud.open("/admin")
    expect(page).to_have_url(re.compile(r"/admin/audit$"))
    page.get_by_role("button", name="Verify chain").click()
    expect(page.get_by_text(re.compile("intact"))).to_be_visible(timeout=30_000)
    aud.screenshot("admin-audit")
    for path in ("/admin/people", "/admin/projections", "/admin/storage"):
        aud.open(path)
        expect(aud.page.get_by_text("You do not have access to this page")).to_be_visible()


ADMIN_CALLS = [
    "/api/admin/dashboard",
    "/api/admin/users",
    "/api/admin/projections",
    "/api/admin/storage",
    "/api/audit/events",
    "/api/audit/chain",
    "/api/audit/export",
]


def test_a_plain_user_gets_the_403_page_and_403_from_every_call_the_panel_makes(people):
    eve = people()
    eve.sign_up("Eve")
    expect(eve.page.get_by_role("link", name="Admin")).to_have_count(0)
    eve.open("/admin")
    expect(eve.page.get_by_text("You do not have access to this page")).to_be_visible()
    statuses = eve.page.evaluate(
        "async (paths) => Promise.all(paths.map(async (p) => (await fetch(p, {credentials: 'same-origin'})).status))", ADMIN_CALLS
    )
    assert statuses == [403] * len(ADMIN_CALLS)
    eve.problems.clear()  # the refused requests above are the point


def test_the_dashboard_request_rate_rises_while_a_script_posts(people, server):
    admin = admin_in_browser(people, server)
    page = admin.open("/admin")
    figure = page.locator(".metric").filter(has_text="Requests per second").locator(".metric-value")
    expect(figure).to_be_visible()
    poster, _ = server.client().signup(f"poster-{uuid.uuid4().hex[:6]}@example.org")
    sid = poster.post("/api/sessions", {"title": "Load", "assistant": False}).json()["id"]
    for n in range(60):
        poster.post(f"/api/sessions/{sid}/messages", {"content": f"load {n}"})
    expect(figure).not_to_have_text(re.compile(r"^(0(\.0+)?|—)$"), timeout=20_000)
    admin.screenshot("admin-dashboard")


def test_a_rebuild_of_messages_swaps_in_while_a_long_conversation_keeps_reading(people, server):
    owner = people()
    owner_email = owner.sign_up("Reader")
    api = api_for(server, owner_email)
    sid = api.post("/api/sessions", {"title": "Two thousand", "assistant": False}).json()["id"]
    last = None
    for n in range(2000):
        last = api.post(f"/api/sessions/{sid}/messages", {"content": f"entry {n:04d}"}).json()
    api.get(f"/api/sessions/{sid}/messages", params={"after_position": last["position"], "limit": 1})
    owner.open(f"/sessions/{sid}")
    log = owner.page.get_by_role("log")
    expect(log.get_by_text("entry 1999")).to_be_visible()
    admin = admin_in_browser(people, server)
    page = admin.open("/admin/projections")
    page.get_by_role("row").filter(has_text="messages").first.get_by_role("button", name="Rebuild").click()
    for _ in range(3):  # reading on while the shadow tables fill: always the whole, newest-first page
        owner.page.reload()
        expect(owner.page.get_by_role("log").get_by_text("entry 1999")).to_be_visible()
        expect(owner.page.get_by_role("log").get_by_text("entry 1990")).to_be_visible()
    expect(page.get_by_role("row").filter(has_text="messages").first).to_contain_text("live", timeout=60_000)
    owner.page.reload()
    expect(owner.page.get_by_role("log").get_by_text("entry 1999")).to_be_visible()
    count = api.get(f"/api/sessions/{sid}").json()["message_count"]
    assert count == 2000


def test_an_invitation_link_opened_in_a_fresh_browser_creates_the_account(people, server):
    email = f"ivy-{uuid.uuid4().hex[:6]}@example.org"
    link = server.admin().post("/api/admin/invitations", {"email": email, "role": "user"}).json()
    ivy = people()
    page = ivy.open(link["url"])  # a direct navigation: the server answers the client route itself
    expect(page.get_by_text(email)).to_be_visible()
    page.get_by_label("Display name").fill("Ivy")
    page.get_by_label("Password").fill("correct horse")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_role("button", name="New session")).to_be_visible()
