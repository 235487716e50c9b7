"""The Functions pages in a real browser (headless Chromium) through a running server: creating
an insert function, editing its code (Tab indents), saving a version, running the test runner
on a sample event and reading its result and logs, then restoring the first version. Every
page visited loads without a console error or a failed request, and axe-core finds nothing
serious."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.support.browser import (
    WEB_SOURCE,
    assert_fits_the_screen,
    assert_page_ok,
    open_area,
    signed_in_page,
)
from tests.support.live import LiveServer

pytestmark = pytest.mark.live  # starts a headwater server process

CONFIG = WEB_SOURCE
CODE = """async function onTrack(event, settings) {
console.log('enriching', event.event)
event.properties.enriched = true
return event
}"""


def test_a_function_from_creation_to_a_test_run(browser: Browser, server: LiveServer) -> None:
    page, watcher = signed_in_page(browser, server)
    open_area(page, watcher, "Functions")

    page.get_by_label("Name").fill("enrich")
    page.get_by_label("Type").select_option("insert")
    page.get_by_role("button", name="Create function").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("enrich")
    assert_page_ok(page, watcher)

    # The editor: Tab indents with spaces instead of leaving the field.
    editor = page.get_by_role("textbox", name="Code", exact=True)
    editor.fill(CODE)
    editor.focus()
    page.keyboard.press("Control+Home")
    page.keyboard.press("ArrowDown")  # the console.log line
    page.keyboard.press("Tab")
    expect(editor).to_be_focused()
    assert "\n  console.log('enriching', event.event)" in editor.input_value()
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Saved as version 2.")
    assert_page_ok(page, watcher)

    sample = '{"type": "track", "event": "Signed Up", "userId": "u1", "properties": {}}'
    page.get_by_label("Sample event (JSON; a list runs onBatch)").fill(sample)
    page.get_by_role("button", name="Run test").click()
    expect(page.locator("#test-outcome")).to_contain_text("Ran onTrack of version 2")
    expect(page.locator("#test-output")).to_contain_text('"enriched": true')
    expect(page.locator("#test-logs")).to_contain_text("[log] enriching Signed Up")
    assert_page_ok(page, watcher)

    page.get_by_role("navigation", name="Function").get_by_role("link", name="Versions").click()
    page.get_by_role("link", name="Version 1").click()
    expect(page.locator("#version-code")).not_to_contain_text("enriched")
    assert_page_ok(page, watcher)
    page.get_by_role("button", name="Restore", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("Restored as version 3.")
    assert "enriched" not in page.get_by_role("textbox", name="Code", exact=True).input_value()
    assert_page_ok(page, watcher)

    page.get_by_role("navigation", name="Function").get_by_role("link", name="Logs").click()
    expect(page.locator("#no-logs")).to_be_visible()  # test runs are not logged
    assert_page_ok(page, watcher)
    function_url = page.url.removesuffix("/logs")
    page.context.close()

    # On a phone the editor and its test runner fit the screen.
    phone, watcher = signed_in_page(browser, server, width=375, height=740)
    phone.goto(function_url)
    expect(phone.get_by_role("button", name="Run test")).to_be_visible()
    assert_page_ok(phone, watcher)
    assert_fits_the_screen(phone)
    phone.context.close()
