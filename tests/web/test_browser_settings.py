"""Settings in a real browser (headless Chromium) through a running server: the owner invites a
member as Source Read-only and copies the link; the member opens it in a second browser, joins,
sees Sources and is told "Not allowed" on Settings. Every page visited loads without a console
error or a failed request (but the expected 403), and axe-core finds nothing serious.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, expect

from tests.support.browser import (
    WEB_SOURCE,
    assert_fits_the_screen,
    assert_page_ok,
    signed_in_page,
    watched_page,
)
from tests.support.live import LiveServer

pytestmark = pytest.mark.live  # starts a headwater server process

CONFIG = WEB_SOURCE


def test_an_invited_member_joins_with_the_role_they_were_given(
    browser: Browser, server: LiveServer
) -> None:
    owner, watcher = signed_in_page(browser, server)

    owner.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(owner.get_by_role("heading", level=2, name="Invite a team member")).to_be_visible()
    assert_page_ok(owner, watcher)
    owner.get_by_label("Email").fill("reader@example.com")
    owner.get_by_label("Role").select_option(label="Source Read-only")
    owner.get_by_label("Applies to").select_option(label="All current and future resources")
    owner.get_by_role("button", name="Create invite link").click()
    expect(owner.get_by_role("status")).to_contain_text("Invite link created")
    assert_page_ok(owner, watcher)
    owner.get_by_role("button", name="Copy link").click()
    expect(owner.get_by_role("button", name="Copied")).to_be_visible()
    link = owner.evaluate("navigator.clipboard.readText()")
    assert link.startswith(server.url + "/invite/"), link
    expect(owner.locator("#invites")).to_contain_text("Invite Pending")

    # The member, in a browser of their own.
    member, seen = watched_page(browser)
    member.goto(link)
    expect(member.get_by_role("heading", level=1)).to_contain_text("Join")
    assert_page_ok(member, seen)
    member.get_by_label("Your name").fill("Rea Der")
    member.get_by_label("Password").fill("a long enough password")
    member.get_by_role("button", name="Join workspace").click()
    expect(member.get_by_role("heading", level=1)).to_have_text("Home")
    assert_page_ok(member, seen)
    navigation = member.get_by_role("navigation", name="Main")
    expect(navigation.get_by_role("link", name="Settings")).to_have_count(0)
    navigation.get_by_role("link", name="Sources").click()
    expect(member.get_by_role("heading", level=1)).to_have_text("Sources")
    expect(member.get_by_role("link", name="web")).to_be_visible()
    assert_page_ok(member, seen)

    seen.expected.append("/settings")  # answered 403 on purpose
    member.goto(server.url + "/settings")
    expect(member.get_by_role("heading", level=1)).to_have_text("Not allowed")
    seen.expected.clear()
    assert_page_ok(member, seen)

    # The owner now sees the member, with the role.
    owner.goto(server.url + "/settings/users")
    expect(owner.get_by_role("link", name="Rea Der")).to_be_visible()
    expect(owner.get_by_role("row", name="Rea Der")).to_contain_text("Source Read-only")
    assert_page_ok(owner, watcher)

    # On a phone, nothing of the Settings page is wider than the screen.
    owner.set_viewport_size({"width": 375, "height": 740})
    for tab in ("Users", "Roles", "Access tokens", "Audit trail", "My account"):
        link = owner.get_by_role("navigation", name="Settings").get_by_role("link", name=tab)
        link.click()
        expect(link).to_have_attribute("aria-current", "page")
        assert_fits_the_screen(owner, tab)
        assert_page_ok(owner, watcher)
    member.context.close()
    owner.context.close()
