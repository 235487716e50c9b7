"""Unify in a real browser (headless Chromium) through a running server: identify calls sent
to the Tracking API, the profile found by its email in the space's search, opened, and its
traits and identities shown. Every page loads without a console error or a failed request,
and axe-core finds nothing serious."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import PageProblems, assert_page_ok, chromium, watched_page
from tests.support.live import ADMIN_TOKEN, LiveServer

pytestmark = pytest.mark.live  # starts a headwater server process

CONFIG = """workspace: test
sources:
  - name: web
    write_key: WK_web
spaces:
  - name: main
    sources: [web]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("browser-unify")
    config = root / "headwater.yaml"
    config.write_text(CONFIG)
    live = LiveServer(data_dir=root / "data", config=config, role="single")
    try:
        live.start(timeout=120)
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as found:
        yield found


def sign_in(page: Page, watcher: PageProblems, server: LiveServer) -> None:
    page.goto(server.url + "/login?next=/unify")
    page.get_by_text("Sign in with a token").click()
    page.get_by_label("Admin or API token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in with the token").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Unify")
    assert_page_ok(page, watcher)


def identify(server: LiveServer, **fields: object) -> None:
    answer = httpx.post(server.url + "/v1/identify", json=fields, auth=("WK_web", ""), timeout=10)
    assert answer.status_code == 200, answer.text


def test_a_profile_found_by_email_shows_its_traits(browser: Browser, server: LiveServer) -> None:
    identify(server, anonymousId="anon-browser", traits={"plan": "pro"})
    identify(
        server,
        userId="u-browser",
        anonymousId="anon-browser",
        traits={"email": "ana@example.com", "name": "Ana Lima"},
    )
    page, watcher = watched_page(browser)
    sign_in(page, watcher, server)
    page.get_by_role("link", name="main").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("main")
    assert_page_ok(page, watcher)

    deadline = time.monotonic() + 60  # identity resolution runs in its own loop
    while True:
        page.get_by_label("Identifier").fill("ana@example.com")
        page.get_by_role("button", name="Search").click()
        found = page.locator("#profiles a")
        if found.count() == 1 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert_page_ok(page, watcher)
    expect(found).to_have_count(1)
    found.click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Profile")
    traits = page.locator("#traits")
    expect(traits.get_by_role("row", name="name Ana Lima")).to_be_visible()
    expect(traits.get_by_role("row", name="plan pro")).to_be_visible()
    expect(page.locator("#identities")).to_contain_text("anon-browser")
    assert_page_ok(page, watcher)
