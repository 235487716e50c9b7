"""A headless Chromium (Debian's ``chromium``, driven by Playwright) for the web app's tests,
and the checks every page visit makes: no console error, no failed request, no serious or
critical axe-core violation.

Playwright's own browser download does not work here; the system's chromium does
(docs in /work/shared/spec/dependencies.md §8). Tests that use it start a live server, so they
carry ``@pytest.mark.live``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright

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
