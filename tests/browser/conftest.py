"""The web client in a real headless Chromium (Debian's, driven by Playwright) against a real
`chronicle serve`. Every page records console errors and failed requests; a test fails on any.
Screenshots of the main screens go to `var/screenshots/` (not committed)."""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from tests.e2e.server import Server

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("CHRONICLE_CHROMIUM", shutil.which("chromium") or "/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
_emails = itertools.count()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    """Per module: Playwright's sync API keeps an event loop running in this thread while it is
    open, which tests elsewhere that run their own loop must not find."""
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    )
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # The assistant streams a piece every half second, so its reply of about seven pieces is still
    # streaming when a person clicks Stop on a busy host (at 0.05 s it once finished first).
    running = Server(
        tmp_path_factory.mktemp("browser-server"), env={"CHRONICLE_ASSISTANT_PACE": "0.5", "CHRONICLE_ASSISTANT_ANSWERS": ""}
    ).start()
    yield running
    running.stop()


class Person:
    """One person in their own browser context (their own cookies), with the problems the
    page reported: console errors and failed requests."""

    def __init__(self, context: BrowserContext, server: Server) -> None:
        self.context = context
        self.server = server
        self.page: Page = context.new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))

    def open(self, path: str = "/") -> Page:
        self.page.goto(self.server.url + path)
        return self.page

    def sign_up(self, name: str) -> str:
        email = f"{name.lower()}{next(_emails)}@example.org"
        page = self.open("/sign-up")
        page.get_by_label("Display name").fill(name)
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill("correct horse")
        page.get_by_role("button", name="Create account").click()
        page.get_by_role("button", name="New session").wait_for()
        self.email = email
        return email

    def sign_in(self, email: str, password: str = "correct horse") -> None:
        page = self.open("/sign-in")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="New session").wait_for()
        self.email = email

    def screenshot(self, name: str) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


@pytest.fixture
def people(browser: Browser, server: Server) -> Iterator[callable]:
    made: list[Person] = []

    def make(viewport: dict[str, int] | None = None) -> Person:
        person = Person(browser.new_context(viewport=viewport or {"width": 1280, "height": 800}), server)
        made.append(person)
        return person

    yield make
    problems = [p for person in made for p in person.problems]
    for person in made:
        person.context.close()
    assert problems == [], problems
