"""Warehouses and Protocols in a real browser (headless Chromium) against a running server:
"Sync now" on a warehouse until its history shows the run; then a tracking plan created, a
rule added as JSON Schema (a broken one first, refused by the field), a source connected, an
event that breaks the rule sent to the Tracking API, and its violation seen with a sample.
Every page visited loads without a console error or a failed request, and axe-core finds
nothing serious."""

from __future__ import annotations

import json
import time

import pytest
from playwright.sync_api import Browser, expect

from tests.support.browser import (
    WEB_SOURCE,
    assert_fits_the_screen,
    assert_page_ok,
    open_area,
    signed_in_page,
    track,
)
from tests.support.live import LiveServer

pytestmark = pytest.mark.live  # starts a headwater server process

CONFIG = (
    WEB_SOURCE
    + """warehouses:
  - name: default
    type: duckdb
"""
)
RULE = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "properties": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        }
    },
    "required": ["properties"],
}


def test_sync_now_shows_the_run_in_the_history(browser: Browser, server: LiveServer) -> None:
    page, watcher = signed_in_page(browser, server)
    open_area(page, watcher, "Warehouses")
    page.get_by_role("link", name="default").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("default")
    assert_page_ok(page, watcher)
    page.get_by_role("button", name="Sync now").click()
    expect(page.get_by_role("status")).to_contain_text("was requested")
    assert_page_ok(page, watcher)
    history = page.locator("table.syncs tbody tr").first
    deadline = time.monotonic() + 60
    while "Success" not in history.inner_text() and time.monotonic() < deadline:
        page.wait_for_timeout(1000)
        page.reload()
    expect(history).to_contain_text("Success")
    assert_page_ok(page, watcher)
    page.context.close()


def test_a_rule_broken_by_an_event_shows_as_a_violation(
    browser: Browser, server: LiveServer
) -> None:
    page, watcher = signed_in_page(browser, server)
    open_area(page, watcher, "Protocols")

    page.get_by_label("Name").fill("Ecommerce")
    page.get_by_role("button", name="Create tracking plan").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ecommerce")
    assert_page_ok(page, watcher)

    # A schema that is not JSON is refused by its field; the page still works.
    watcher.expected.append("/rules")
    page.get_by_label("Event name").fill("Order Completed")
    page.get_by_label("JSON Schema", exact=True).fill('{"type": ')
    page.get_by_role("button", name="Add rule").click()
    expect(page.locator("#rule-new-error")).to_contain_text("not valid JSON")
    watcher.expected.clear()
    watcher.check()
    assert_page_ok(page, watcher)

    page.get_by_label("JSON Schema", exact=True).fill(json.dumps(RULE, indent=2))
    page.get_by_role("button", name="Add rule").click()
    row = page.locator("#rule-0")
    expect(row).to_contain_text("Order Completed")
    expect(row.locator("td").nth(3)).to_have_text("1")  # one property planned
    assert_page_ok(page, watcher)

    page.get_by_label("Source", exact=True).select_option(label="web")
    page.get_by_role("button", name="Connect source").click()
    expect(page.get_by_role("button", name="Disconnect web")).to_be_visible()
    assert_page_ok(page, watcher)

    # The plan reaches the pipeline within seconds; events sent until a violation shows.
    page.get_by_role("navigation", name="Protocols").get_by_role("link", name="Violations").click()
    expect(page.get_by_role("heading", level=2, name="web")).to_be_visible()
    assert_page_ok(page, watcher)
    found = page.get_by_role("cell", name="properties.order_id", exact=True)
    deadline = time.monotonic() + 60
    while found.count() == 0 and time.monotonic() < deadline:
        track(server, "Order Completed", {"total": 10})
        page.wait_for_timeout(1500)
        page.reload()
    expect(found).to_be_visible()
    expect(page.locator("section.violations")).to_contain_text("Required")
    page.get_by_text("recent", exact=False).first.click()  # opens the samples
    expect(page.locator("section.violations pre").first).to_contain_text('"total": 10')
    assert_page_ok(page, watcher)

    # On a phone, the plan's editor and the violations fit the screen (tables scroll).
    page.set_viewport_size({"width": 375, "height": 740})
    for link in ("Violations", "Tracking plans"):
        page.get_by_role("navigation", name="Protocols").get_by_role("link", name=link).click()
        assert_page_ok(page, watcher)
        assert_fits_the_screen(page, link)
    page.get_by_role("link", name="Ecommerce").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Ecommerce")
    assert_fits_the_screen(page)
    assert_page_ok(page, watcher)
    page.context.close()
