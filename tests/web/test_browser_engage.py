"""Engage in a real browser (headless Chromium) through a running server: an audience written
with the guided form, its size previewed, created, and its page with the definition; a
journey's diagram. Every page loads without a console error or a failed request, and axe-core
finds nothing serious."""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Browser, expect

from tests.support.browser import assert_page_ok, open_area, signed_in_page
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
JOURNEY = {
    "name": "Welcome",
    "definition": {
        "entry": {"audience": "buyers"},
        "steps": [
            {"name": "Wait 5 days", "delay": {"days": 5}},
            {
                "name": "Still buying",
                "true_false": {"condition": {"audience": "buyers"}, "true": [], "false": []},
            },
        ],
    },
}


def test_an_audience_built_previewed_and_created(browser: Browser, server: LiveServer) -> None:
    page, watcher = signed_in_page(browser, server)
    open_area(page, watcher, "Engage")
    page.get_by_role("link", name="main").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("main")
    assert_page_ok(page, watcher)

    page.get_by_label("Name", exact=True).fill("Buyers")
    page.get_by_label("Event", exact=True).fill("Order Completed")
    page.get_by_role("button", name="Write the query").click()
    query = page.get_by_label("Definition (Segment Query Language)")
    expect(query).to_have_value("event('Order Completed').within(30 days).count() >= 1")
    assert_page_ok(page, watcher)
    page.get_by_role("button", name="Preview size").click()
    expect(page.locator("#preview")).to_be_visible()
    assert_page_ok(page, watcher)
    page.get_by_role("button", name="Create audience").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Buyers")
    expect(page.locator("#saved-query")).to_have_text(re.compile(r"event\('Order Completed'\)"))
    assert_page_ok(page, watcher)

    made = httpx.post(
        server.url + "/api/v1/spaces/main/journeys",
        json=JOURNEY,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        timeout=10,
    )
    assert made.status_code == 201, made.text
    page.get_by_role("link", name="main").click()
    page.get_by_role("link", name="Welcome").click()
    expect(page.get_by_role("img", name=re.compile("The steps of Welcome"))).to_be_visible()
    expect(page.locator("#steps")).to_contain_text("Wait 5 days")
    assert_page_ok(page, watcher)
