"""The web app in a real browser (headless Chromium) through a running server: signing in with
the admin token, adding a source, copying its snippet, an event sent to the Tracking API showing
in the debugger live, pausing it, rotating a key, and the navigation on a phone. Every page
visited loads without a console error or a failed request, and axe-core finds nothing serious.
"""

from __future__ import annotations

from pathlib import Path

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
    + """destinations:
  - name: hook
    type: webhook
    source: web
    settings: {url: "http://127.0.0.1:9/hook"}
"""
)


def test_a_source_from_creation_to_live_events(browser: Browser, server: LiveServer) -> None:
    page, watcher = signed_in_page(browser, server)
    open_area(page, watcher, "Sources")

    # A name the API refuses shows its error by the field; the page still works.
    watcher.expected.append("/sources")
    page.get_by_label("Name").fill("web")
    page.get_by_role("button", name="Add source").click()
    expect(page.locator("#name-error")).to_contain_text("already")
    watcher.expected.clear()
    watcher.check()
    assert_page_ok(page, watcher)

    page.get_by_label("Name").fill("Checkout")
    page.get_by_role("button", name="Add source").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Checkout")
    assert_page_ok(page, watcher)
    write_key = page.locator("#key-1").inner_text()
    assert len(write_key) == 32

    page.get_by_role("button", name="Copy snippet").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    copied = page.evaluate("navigator.clipboard.readText()")
    assert f'analytics.load("{write_key}")' in copied
    assert f'analytics._cdn="{server.url}"' in copied

    page.get_by_role("navigation", name="Source").get_by_role("link", name="Debugger").click()
    expect(page.locator("#events")).to_have_attribute("data-live", "true")
    assert_page_ok(page, watcher)

    track(server, "Browser Test Event", write_key=write_key)
    arrived = page.locator("#events .label", has_text="Browser Test Event")
    expect(arrived).to_be_visible(timeout=20_000)
    arrived.click()  # opens the entry's JSON
    expect(page.locator("#events pre").first).to_contain_text('"plan": "pro"')

    page.get_by_role("button", name="Pause").click()
    track(server, "Held While Paused", write_key=write_key)
    page.wait_for_timeout(1500)  # long enough for the stream to bring it (it polls at 0.2 s)
    held = page.locator("#events .label", has_text="Held While Paused")
    expect(held).to_have_count(0)
    page.get_by_role("button", name="Resume").click()
    expect(held).to_be_visible()
    assert_page_ok(page, watcher)

    page.get_by_role("navigation", name="Source").get_by_role("link", name="Overview").click()
    page.get_by_role("button", name="Rotate write key").click()
    expect(page.get_by_role("status")).to_contain_text("A new write key was added")
    expect(page.locator("ul.keys code")).to_have_count(2)
    assert page.locator("#key-2").inner_text() == write_key
    assert_page_ok(page, watcher)
    page.context.close()


def test_a_phone_sized_screen_shows_the_navigation(browser: Browser, server: LiveServer) -> None:
    page, watcher = signed_in_page(browser, server, width=375, height=740)
    navigation = page.get_by_role("navigation", name="Main")
    expect(navigation).to_be_in_viewport()
    links = navigation.get_by_role("link")
    expect(links).to_have_count(10)
    for link in links.all():  # every area, none pushed off the screen
        expect(link).to_be_in_viewport()
    navigation.get_by_role("link", name="Sources").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Sources")
    assert_page_ok(page, watcher)
    assert_fits_the_screen(page)
    page.context.close()


def test_the_keyboard_reaches_the_forms(
    browser: Browser, server: LiveServer, tmp_path: Path
) -> None:
    page, watcher = signed_in_page(browser, server)
    page.goto(server.url + "/sources")
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    page.keyboard.press("Enter")
    page.get_by_label("Name").focus()
    page.keyboard.type("Keyboard")
    page.keyboard.press("Enter")  # submits the form
    expect(page.get_by_role("heading", level=1)).to_have_text("Keyboard")
    assert_page_ok(page, watcher)
    page.context.close()
