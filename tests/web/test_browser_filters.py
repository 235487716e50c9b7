"""A destination filter and an Actions mapping in a real browser (headless Chromium) through a running server: events
sent to the Tracking API, then a filter written on the destination's filters page whose live
preview shows, as the FQL is typed, which of those events it drops; invalid FQL shows the
parser's error by the field; saving lists the filter. A mapping set up from an action with
the trigger builder, saved, enabled and tested on a loopback receiver. Every page visited loads without a
console error or a failed request, and axe-core finds nothing serious."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.support.browser import WEB_SOURCE, assert_page_ok, signed_in_page, track
from tests.support.live import ADMIN_TOKEN, LiveServer
from tests.support.receiver import Receiver
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # starts a headwater server process

CONFIG = (
    WEB_SOURCE
    + """destinations:
  - name: hook
    type: webhook
    source: web
    settings: {url: "http://127.0.0.1:9/hook"}
  - name: orders
    type: webhook-actions
    source: web
"""
)


def in_debugger(server: LiveServer, count: int) -> bool:
    answer = httpx.get(
        server.url + "/api/v1/sources/web/debugger",
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    return len(answer.json()["data"]["events"]) >= count


def test_a_filter_previewed_live_on_recent_events(browser: Browser, server: LiveServer) -> None:
    for event in ("Order Completed", "Page Scrolled", "Page Scrolled"):
        track(server, event)
    wait_for(lambda: in_debugger(server, 3), 30, "the events in the debugger")

    page, watcher = signed_in_page(browser, server)
    page.goto(server.url + "/destinations/hook/filters")
    expect(page.get_by_role("heading", level=1)).to_have_text("hook")
    expect(page.get_by_text("No filters")).to_be_visible()
    assert_page_ok(page, watcher)

    page.get_by_role("link", name="New filter").click()
    expect(page.get_by_role("heading", level=2, name="New filter")).to_be_visible()
    assert_page_ok(page, watcher)
    page.get_by_label("Title").fill("No scrolls")
    # Typed, not submitted: the preview follows the statement.
    page.get_by_label("If (FQL)").fill('event = "Page Scrolled"')
    summary = page.locator("#preview-summary")
    expect(summary).to_have_text("Of the source's 3 most recent events, this filter drops 2.")
    dropped = page.locator(".preview-result.dropped")
    expect(dropped).to_have_count(2)
    expect(page.locator(".preview-result.kept")).to_have_count(1)
    assert_page_ok(page, watcher)

    page.get_by_label("If (FQL)").fill('event = "Page Scrolled" and')
    expect(page.locator("#if-error")).to_contain_text("not valid FQL")
    expect(page.get_by_label("If (FQL)")).to_have_attribute("aria-invalid", "true")
    page.get_by_label("If (FQL)").fill('event = "Order Completed"')
    expect(page.locator("#if-error")).to_be_hidden()
    expect(summary).to_have_text("Of the source's 3 most recent events, this filter drops 1.")
    assert_page_ok(page, watcher)

    page.get_by_role("button", name="Save filter").click()
    expect(page.get_by_role("status")).to_have_text("Filter saved.")
    expect(page.get_by_role("link", name="No scrolls")).to_be_visible()
    assert_page_ok(page, watcher)
    page.context.close()


def test_a_mapping_set_up_with_the_builder_and_tested(
    browser: Browser, server: LiveServer, receiver: Receiver
) -> None:
    page, watcher = signed_in_page(browser, server)
    page.goto(server.url + "/destinations/orders/mappings")
    expect(page.get_by_text("No mappings yet")).to_be_visible()
    assert_page_ok(page, watcher)

    page.get_by_label("Action").select_option("send")
    page.get_by_label("Name").fill("Completed orders")
    page.get_by_role("button", name="Set up mapping").click()
    expect(page.get_by_role("heading", level=2)).to_contain_text("New mapping")
    assert_page_ok(page, watcher)

    page.get_by_label("and the event name").select_option("is")
    page.get_by_label("Event name", exact=True).fill("Order Completed")
    page.get_by_label("url (required)").select_option("literal")
    page.get_by_label("Value of url").fill(receiver.url + "/orders")
    page.get_by_label("data", exact=True).select_option("json")
    page.get_by_label("Value of data").fill('{"order": {"@path": "$.properties.order_id"}}')
    page.get_by_label("Enabled").check()
    page.get_by_role("button", name="Save mapping").click()
    expect(page.get_by_role("status")).to_have_text("Mapping saved.")
    expect(page.get_by_role("heading", level=2)).to_contain_text("enabled")
    assert_page_ok(page, watcher)

    sample = '{"type": "track", "event": "Order Completed", "userId": "u1", "properties": {"order_id": "o-7"}}'
    page.get_by_label("Sample event (JSON)").fill(sample)
    page.get_by_role("button", name="Send test event").click()
    expect(page.locator("#tester-summary")).to_contain_text("Delivered")
    [received] = receiver.wait_for(1)
    assert received.json() == {"order": "o-7"}
    assert_page_ok(page, watcher)

    page.get_by_role("link", name="All mappings of orders").click()
    expect(page.get_by_role("cell", name="Enabled")).to_be_visible()
    expect(
        page.locator("code", has_text='type = "track" and event = "Order Completed"')
    ).to_be_visible()
    assert_page_ok(page, watcher)
    page.context.close()
