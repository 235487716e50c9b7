"""A headless Chromium (Debian's ``chromium``, driven by Playwright) for the web app's tests,
the checks every page visit makes (no console error, no failed request, no serious or critical
axe-core violation), and the steps every browser test shares: a live server started from a
configuration, signing in with a token, an event sent to the Tracking API.

Playwright's own browser download does not work here; the system's chromium does
(docs in /work/shared/spec/dependencies.md §8). Tests that use it start a live server, so they
carry ``@pytest.mark.live``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, expect, sync_playwright

from tests.support.live import ADMIN_TOKEN, LiveServer

LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
BLOCKING_IMPACTS = {"serious", "critical"}
# The start of most browser tests' headwater.yaml: one source, ``web``, whose write key
# ``track`` uses unless told.
WEB_SOURCE = """workspace: test
sources:
  - name: web
    write_key: WK_web
"""


@contextmanager
def chromium() -> Iterator[Browser]:
    """A headless Chromium; the test is skipped where none is installed."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("no chromium on PATH (scripts/test.sh installs Debian's)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=LAUNCH_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageProblems:
    """What went wrong while a page was open: console errors, uncaught exceptions and requests
    that failed (no answer, or an answer of 400 or more)."""

    errors: list[str] = field(default_factory=list)
    # Requests a test expects to fail, by URL substring (a form answering 422 on purpose).
    expected: list[str] = field(default_factory=list)

    def watch(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", lambda r: self._answer(r.url, r.status))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        where = f"{message.location.get('url', '')} {message.text}"
        if not any(e in where for e in self.expected):
            self.errors.append(f"console: {message.text} ({message.location.get('url')})")

    def _failed(self, request: Request) -> None:
        failure = request.failure or ""
        # Leaving a page aborts its open event stream; that is not a failure of the page.
        if "ERR_ABORTED" in failure and request.resource_type in ("eventsource", "other"):
            return
        self.errors.append(f"request failed: {request.method} {request.url} ({failure})")

    def _answer(self, url: str, status: int) -> None:
        if status >= 400 and not any(e in url for e in self.expected):
            self.errors.append(f"answer {status}: {url}")

    def check(self) -> None:
        """Fail the test with every problem seen so far, then start afresh."""
        found, self.errors = self.errors, []
        assert not found, "the page had problems:\n" + "\n".join(found)


def watched_page(
    browser: Browser, *, width: int = 1280, height: int = 800
) -> tuple[Page, PageProblems]:
    """A page in a fresh context (its own cookies, clipboard allowed) and what it watches."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = context.new_page()
    watcher = PageProblems()
    watcher.watch(page)
    return page, watcher


_AXE = Axe()


def assert_accessible(page: Page) -> None:
    """Fail on axe-core violations of serious or critical impact on the page as it is now."""
    results = _AXE.run(page)
    violations = [
        v for v in results.response.get("violations", []) if v.get("impact") in BLOCKING_IMPACTS
    ]
    detail = "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(node["target"][0] for node in v.get("nodes", [])[:3])
        for v in violations
    )
    assert not violations, f"axe-core found on {page.url}:\n{detail}"


def assert_page_ok(page: Page, watcher: PageProblems) -> None:
    """The page's checks: nothing failed while it loaded, and axe finds nothing serious."""
    page.wait_for_load_state("load")
    watcher.check()
    assert_accessible(page)


@contextmanager
def live_app(root: Path, config: str) -> Iterator[LiveServer]:
    """A running server (every role in one process) with ``config`` as its headwater.yaml and
    its data under ``root``; stopped on leaving, whatever happened."""
    path = root / "headwater.yaml"
    path.write_text(config)
    live = LiveServer(data_dir=root / "data", config=path, role="single")
    try:
        live.start(timeout=120)
        yield live
    finally:
        live.stop()


def sign_in(
    page: Page, watcher: PageProblems, server: LiveServer, token: str = ADMIN_TOKEN
) -> None:
    """Sign in as a person does: ``/`` sends the browser to the login page, where the token
    (the admin token unless told) signs in and Home shows. Both pages pass their checks."""
    page.goto(server.url + "/")
    expect(page).to_have_url(server.url + "/login?next=/")
    assert_page_ok(page, watcher)
    page.get_by_text("Sign in with a token").click()  # members sign in with email and password
    page.get_by_label("Admin or API token").fill(token)
    page.get_by_role("button", name="Sign in with the token").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Home")
    assert_page_ok(page, watcher)


def signed_in_page(
    browser: Browser, server: LiveServer, *, width: int = 1280, height: int = 800
) -> tuple[Page, PageProblems]:
    """A fresh page (``watched_page``) signed in with the admin token, showing Home."""
    page, watcher = watched_page(browser, width=width, height=height)
    sign_in(page, watcher, server)
    return page, watcher


def open_area(page: Page, watcher: PageProblems, name: str) -> None:
    """Follow the main navigation's link to an area; its page is headed with the area's name
    and passes the checks."""
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    assert_page_ok(page, watcher)


def assert_fits_the_screen(page: Page, where: object = None) -> None:
    """Nothing on the page is wider than its viewport (a phone's, in the tests that ask)."""
    viewport = page.viewport_size
    assert viewport is not None
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= viewport["width"], (where or page.url, width)


def track(
    server: LiveServer,
    event: str,
    properties: dict[str, object] | None = None,
    write_key: str = "WK_web",
) -> None:
    """Send a track call for user ``u-browser`` to the Tracking API (properties
    ``{"plan": "pro"}`` unless told); back once the server has accepted it."""
    answer = httpx.post(
        server.url + "/v1/track",
        json={
            "userId": "u-browser",
            "event": event,
            "properties": {"plan": "pro"} if properties is None else properties,
        },
        auth=(write_key, ""),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
