"""Unify in a real browser (headless Chromium) through a running server: identify calls sent
to the Tracking API, the profile found by its email in the space's search, opened, and its
traits and identities shown. Every page loads without a console error or a failed request,
and axe-core finds nothing serious."""

from __future__ import annotations

import time

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.support.browser import assert_page_ok, open_area, signed_in_page
from tests.support.live import LiveServer

pytestmark = pytest.mark.live  # starts a headwater server process

CONFIG = """workspace: test
sources:
  - name: web
    write_key: WK_web
spaces:
  - name: main
    sources: [web]
"""


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
    page, watcher = signed_in_page(browser, server)
    open_area(page, watcher, "Unify")
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
