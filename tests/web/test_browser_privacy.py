"""Privacy in a real browser (headless Chromium) through a running server: a regulation
created with the form, its page with its status, and the list showing it. Every page loads
without a console error or a failed request, and axe-core finds nothing serious."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect

from tests.support.browser import assert_page_ok, chromium, watched_page
from tests.support.live import ADMIN_TOKEN, LiveServer

pytestmark = pytest.mark.live  # starts a headwater server process

CONFIG = """workspace: test
sources:
  - name: web
    write_key: WK_web
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("browser-privacy")
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


def test_a_regulation_created_with_the_form_shows_its_status(
    browser: Browser, server: LiveServer
) -> None:
    page, watcher = watched_page(browser)
    page.goto(server.url + "/login?next=/privacy")
    page.get_by_text("Sign in with a token").click()
    page.get_by_label("Admin or API token").fill(ADMIN_TOKEN)
    page.get_by_role("button", name="Sign in with the token").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Privacy")
    assert_page_ok(page, watcher)

    page.get_by_label("Regulation type").select_option("SUPPRESS_WITH_DELETE")
    page.get_by_label("Subject type").select_option("USER_ID")
    page.get_by_label("Subject ids, one a line").fill("u-gone\nu-also-gone")
    page.get_by_role("button", name="Create regulation").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Regulation")
    expect(page.locator("#status")).to_have_text(
        # the worker may already have picked it up
        re.compile(r"INITIALIZED|RUNNING|FINISHED|PARTIAL_SUCCESS")
    )
    expect(page.get_by_text("u-also-gone")).to_be_visible()
    assert_page_ok(page, watcher)

    page.get_by_role("link", name="Privacy").first.click()
    expect(page.locator("#regulations")).to_contain_text("USER_ID: u-gone, u-also-gone")
    assert_page_ok(page, watcher)

    page.get_by_role("link", name="Privacy Portal").click()
    expect(page.locator("#inbox")).to_be_visible()
    assert_page_ok(page, watcher)
    page.get_by_role("link", name="Consent").click()
    expect(page.get_by_role("heading", name="New consent category")).to_be_visible()
    assert_page_ok(page, watcher)
