"""Privacy in a real browser (headless Chromium) through a running server: a regulation
created with the form, its page with its status, and the list showing it. Every page loads
without a console error or a failed request, and axe-core finds nothing serious."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, expect

from tests.support.browser import assert_page_ok, open_area, signed_in_page
from tests.support.live import LiveServer

pytestmark = pytest.mark.live  # starts a headwater server process

CONFIG = """workspace: test
sources:
  - name: web
    write_key: WK_web
"""


def test_a_regulation_created_with_the_form_shows_its_status(
    browser: Browser, server: LiveServer
) -> None:
    page, watcher = signed_in_page(browser, server)
    open_area(page, watcher, "Privacy")

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
