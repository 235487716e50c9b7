"""A newcomer's first ten minutes, in a real browser against a running server: sign in with the
admin token, add a source, copy its analytics.js snippet into a website, see the website's event
in the debugger, add a webhook from the destination catalog (a loopback receiver), and see the
next event delivered there and counted in Event Delivery.

The website is a tiny page served by a local http.server. analytics.js is Segment's standalone
bundle from tests/oracle (npm ``@segment/analytics-next``): the browser gets it when the snippet
asks Segment's CDN for it, and its lazily loaded chunks when it asks the Headwater server (the
snippet's ``_cdn``) for them; everything else goes to Headwater as the snippet says.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.support.browser import (
    assert_fits_the_screen,
    assert_page_ok,
    open_area,
    signed_in_page,
)
from tests.support.live import LiveServer
from tests.support.receiver import Receiver

pytestmark = pytest.mark.live  # starts a headwater server process

BUNDLES = (
    Path(__file__).resolve().parents[1]
    / "oracle"
    / "node_modules"
    / "@segment"
    / "analytics-next"
    / "dist"
    / "umd"
)
CONFIG = "workspace: newcomer\n"


@pytest.fixture
def website(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local web server for the newcomer's website: its address and its folder."""
    root = tmp_path / "site"
    root.mkdir()
    handler = partial(_QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _bundle(route: Route) -> None:
    """analytics.js from tests/oracle: the main bundle, or the chunk the URL names."""
    name = route.request.url.rsplit("/", 1)[-1].split("?", 1)[0]
    found = BUNDLES / ("standalone.js" if name == "analytics.min.js" else name)
    if not found.is_file() or found.parent != BUNDLES:
        route.fulfill(status=404, body="")
        return
    route.fulfill(path=str(found), content_type="application/javascript")


def _track(site: Page, server: LiveServer, event: str) -> None:
    """The website tracks ``event``; back once Headwater has accepted it."""
    with site.expect_response(
        lambda r: r.url.startswith(server.url + "/v1/t") and r.request.method == "POST",
        timeout=20_000,
    ) as sent:
        site.evaluate("event => analytics.track(event, {plan: 'pro'})", event)
    assert sent.value.status == 200, sent.value.text()


def _heading(page: Page, text: str) -> None:
    expect(page.get_by_role("heading", level=1)).to_have_text(text)


def test_a_newcomers_first_ten_minutes(
    browser: Browser,
    server: LiveServer,
    website: tuple[str, Path],
    receiver: Receiver,
) -> None:
    if not (BUNDLES / "standalone.js").is_file():
        pytest.skip("analytics.js is not installed: npm ci --prefix tests/oracle")
    site_url, site_root = website
    # Sign in with the admin token printed at the first start.
    page, watcher = signed_in_page(browser, server)
    page.context.route("https://cdn.segment.com/analytics.js/**", _bundle)
    page.context.route(f"{server.url}/analytics-next/bundles/**", _bundle)

    # Add a source and copy its snippet.
    open_area(page, watcher, "Sources")
    page.get_by_label("Name").fill("My Website")
    page.get_by_role("button", name="Add source").click()
    _heading(page, "My Website")
    assert_page_ok(page, watcher)
    page.get_by_role("button", name="Copy snippet").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    snippet = page.evaluate("navigator.clipboard.readText()")
    assert f'analytics._cdn="{server.url}"' in snippet
    source_url = page.url

    # The website: the snippet in its <head>, as the source's page says.
    (site_root / "index.html").write_text(
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Shop</title>"
        f"{snippet}</head><body><h1>Shop</h1></body></html>"
    )
    site = page.context.new_page()
    site.goto(site_url + "/index.html")
    site.wait_for_function("window.analytics && window.analytics.initialized === true")
    _track(site, server, "Viewed Shop")

    # The debugger shows it.
    page.bring_to_front()
    page.goto(source_url + "/debugger")
    assert_page_ok(page, watcher)
    arrived = page.locator("#events .label", has_text="Viewed Shop")
    expect(arrived).to_be_visible(timeout=20_000)

    # Connect a webhook from the catalog.
    open_area(page, watcher, "Destinations")
    page.get_by_role("link", name="Add a destination from the catalog").click()
    _heading(page, "Destination catalog")
    assert_page_ok(page, watcher)
    page.get_by_label("Search the catalog").fill("webhook")
    page.get_by_role("button", name="Search").click()
    page.get_by_role("link", name="Webhooks", exact=True).click()
    _heading(page, "Add Webhooks")
    assert_page_ok(page, watcher)
    page.get_by_label("Source").select_option(label="My Website")
    page.get_by_label("Name").fill("My webhook")
    page.get_by_label("Url", exact=True).fill(receiver.url + "/hook")
    page.get_by_role("button", name="Add destination").click()
    _heading(page, "My webhook")
    assert_page_ok(page, watcher)
    destination_url = page.url

    # The next event from the website reaches the webhook ...
    _track(site, server, "Started Checkout")
    got = receiver.wait_for(1, timeout=30)
    assert any(r.json().get("event") == "Started Checkout" for r in got)

    # ... and Event Delivery counts it.
    page.goto(destination_url + "/delivery")
    delivered = page.locator("#delivered")
    for _ in range(30):
        if delivered.inner_text() != "0":
            break
        page.wait_for_timeout(1000)
        page.reload()
    expect(delivered).not_to_have_text("0")
    expect(page.locator("figure.chart svg title").first).to_contain_text("per hour")
    assert_page_ok(page, watcher)

    # On a phone, neither Event Delivery nor the settings form is wider than the screen.
    page.set_viewport_size({"width": 375, "height": 740})
    for path in (destination_url + "/delivery", destination_url):
        page.goto(path)
        assert_fits_the_screen(page, path)
    assert_page_ok(page, watcher)
    site.close()
    page.context.close()
