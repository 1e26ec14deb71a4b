"""People chatting in the web client, as they would use it."""

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_sign_up_start_a_session_and_send_a_message(people):
    ann = people()
    ann.sign_up("Ann")
    page = ann.page
    page.get_by_role("button", name="New session").click()
    page.get_by_label("Title").fill("Launch plan")
    page.get_by_role("button", name="Create").click()
    log = page.get_by_role("log")
    expect(log).to_be_visible()
    page.get_by_label("Message").fill("We ship on Friday.")
    page.get_by_role("button", name="Send").click()
    expect(log.get_by_text("We ship on Friday.")).to_be_visible()
    ann.screenshot("conversation")
