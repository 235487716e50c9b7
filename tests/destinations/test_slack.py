"""Slack: incoming-webhook messages from templates, whitelisted identify, escaping, settings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from headwater.destinations.catalog.slack import render_template
from headwater.destinations.registry import get
from headwater.errors import MessageRejected
from tests.destinations.send import render, send
from tests.support.receiver import Answer, Receiver

TRACK: dict[str, Any] = {
    "type": "track",
    "event": "Order Completed",
    "userId": "u1",
    "anonymousId": "a1",
    "messageId": "m1",
    "timestamp": "2024-03-05T10:00:00.000Z",
    "properties": {
        "total": 27.5,
        "currency": "USD",
        "items": 3,
        "coupon": None,
        "products": [{"name": "Mug"}, {"name": "Tea"}],
    },
    "context": {"traits": {"firstName": "Peter", "lastName": "Gibbons"}},
}
IDENTIFY: dict[str, Any] = {
    "type": "identify",
    "userId": "97980cfea0067",
    "messageId": "i1",
    "traits": {
        "name": "Peter Gibbons",
        "email": "peter@example.com",
        "plan": "premium",
        "logins": 5,
    },
}


def hook(receiver: Receiver, **extra: Any) -> dict[str, Any]:
    return {"webhook_url": receiver.url + "/services/T000/B000/XXXX", **extra}


def test_track_posts_the_default_text(receiver: Receiver) -> None:
    receiver.default = Answer(status=200, body=b"ok", headers={"Content-Type": "text/html"})
    responses = send("slack", hook(receiver), [TRACK])
    assert [(r.status_code, r.text) for r in responses] == [(200, "ok")]
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/services/T000/B000/XXXX")
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {"text": "Peter Gibbons did Order Completed."}


def test_event_template_channel_and_identity(receiver: Receiver) -> None:
    settings = hook(
        receiver,
        channel="#events",
        username="Headwater",
        icon_emoji=":droplet:",
        templates={
            "Order Completed": ":moneybag: {{name}} paid {{ properties.total }} "
            "{{properties.currency}} for {{properties.items}} items "
            "({{properties.products.0.name}}, "
            "{{properties.products.[1].name}}), coupon "
            "'{{properties.coupon}}' <{{userId}}>"
        },
        event_channels={"Order Completed": "#orders"},
    )
    send("slack", settings, [TRACK, {**TRACK, "event": "Signed Up", "messageId": "m2"}])
    first, second = (r.json() for r in receiver.requests)
    assert first == {
        "text": ":moneybag: Peter Gibbons paid 27.5 USD for 3 items (Mug, Tea), coupon '' <u1>",
        "channel": "#orders",
        "username": "Headwater",
        "icon_emoji": ":droplet:",
    }
    assert second == {
        "text": "Peter Gibbons did Signed Up.",
        "channel": "#events",
        "username": "Headwater",
        "icon_emoji": ":droplet:",
    }


def test_regex_keys_match_event_names_after_exact_ones() -> None:
    settings = {
        "webhook_url": "https://hooks.slack.com/services/T/B/X",
        "templates": {
            "/^product .*$/i": "product: {{event}}",
            "Product Viewed": "viewed {{properties.sku}}",
        },
        "event_channels": {"/ing$/": "#gerunds"},
    }
    messages = [
        {**TRACK, "event": event}
        for event in ("Product Added", "Product Viewed", "Onboarding", "Order Completed")
    ]
    bodies = [
        json.loads(o.request.body or b"") for o in render("slack", settings, messages).outgoing
    ]
    assert bodies == [
        {"text": "product: Product Added"},
        {"text": "viewed "},
        {"text": "Peter Gibbons did Onboarding.", "channel": "#gerunds"},
        {"text": "Peter Gibbons did Order Completed."},
    ]


def test_values_are_escaped_for_slack_but_the_template_is_not() -> None:
    message = {
        **TRACK,
        "event": "Note <!channel> & <https://evil.example|click>",
        "properties": {"html": "<b>bold</b>"},
    }
    settings = {
        "webhook_url": "https://hooks.slack.com/services/T/B/X",
        "templates": {
            message["event"]: "<!here> {{event}} {{{properties.html}}} "
            "{{#if x}}kept{{/if}} {{ not a path }}"
        },
    }
    [outgoing] = render("slack", settings, [message]).outgoing
    assert json.loads(outgoing.request.body or b"") == {
        "text": "<!here> Note &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt; "
        "&lt;b&gt;bold&lt;/b&gt; {{#if x}}kept{{/if}} {{ not a path }}"
    }


def test_identify_needs_every_whitelisted_trait(receiver: Receiver) -> None:
    settings = hook(receiver, whitelisted_traits=["name", "email"])
    without_email = {**IDENTIFY, "messageId": "i2", "traits": {"name": "Samir"}}
    with pytest.raises(MessageRejected, match="email"):
        render("slack", settings, [without_email])
    send("slack", settings, [IDENTIFY])
    assert receiver.requests[0].json() == {
        "text": "Identified user Peter Gibbons.\nname: Peter Gibbons\n"
        "email: peter@example.com\nplan: premium\nlogins: 5"
    }


def test_identify_template_reaches_traits_at_the_top_level() -> None:
    settings = {
        "webhook_url": "https://hooks.slack.com/services/T/B/X",
        "whitelisted_traits": ["email"],
        "identify_template": "The user {{name}} has an email of {{email}} "
        "({{traits.plan}}, {{type}})",
    }
    [outgoing] = render("slack", settings, [IDENTIFY]).outgoing
    assert json.loads(outgoing.request.body or b"") == {
        "text": "The user Peter Gibbons has an email of peter@example.com (premium, identify)"
    }


def test_identify_without_whitelisted_traits_is_not_sent() -> None:
    with pytest.raises(MessageRejected, match="whitelisted_traits"):
        render("slack", {"webhook_url": "https://hooks.slack.com/services/T/B/X"}, [IDENTIFY])


@pytest.mark.parametrize(
    ("message", "name"),
    [
        ({"context": {"traits": {"name": "Ann Lee", "firstName": "Ann"}}}, "Ann Lee"),
        ({"context": {"traits": {"firstName": "Ann"}}}, "Ann"),
        ({"context": {"traits": {"username": "ann", "email": "ann@example.com"}}}, "ann"),
        ({"context": {"traits": {"email": "ann@example.com"}}}, "ann@example.com"),
        ({"properties": {"email": "prop@example.com"}, "userId": "u9"}, "prop@example.com"),
        ({"userId": "u9", "anonymousId": "a9"}, "User u9"),
        ({"anonymousId": "a9"}, "Anonymous user a9"),
    ],
)
def test_display_name_follows_segment(message: dict[str, Any], name: str) -> None:
    full = {"type": "track", "event": "Clicked", "messageId": "x", **message}
    [outgoing] = render(
        "slack", {"webhook_url": "https://hooks.slack.com/services/T/B/X"}, [full]
    ).outgoing
    assert json.loads(outgoing.request.body or b"") == {"text": f"{name} did Clicked."}


def test_empty_text_is_rejected_not_sent() -> None:
    settings = {
        "webhook_url": "https://hooks.slack.com/services/T/B/X",
        "templates": {"Order Completed": "{{properties.missing}}  "},
    }
    with pytest.raises(MessageRejected, match="empty"):
        render("slack", settings, [TRACK])


def test_slack_errors_come_back_as_sent(receiver: Receiver) -> None:
    receiver.answer(
        Answer(status=404, body=b"channel_not_found", headers={"Content-Type": "text/html"}),
        Answer(status=429, body=b"rate_limited", headers={"Retry-After": "3"}),
    )
    responses = send("slack", hook(receiver, channel="#nope"), [TRACK, TRACK])
    assert [(r.status_code, r.text) for r in responses] == [
        (404, "channel_not_found"),
        (429, "rate_limited"),
    ]
    assert responses[1].headers["retry-after"] == "3"
    assert get("slack").interpret is None  # 429 retried after Retry-After, 404 discarded


def test_template_renderer_values() -> None:
    data = {"a": {"b": [1, 2.0, True, None], "c": {"x": 1.5}}, "key with space": "yes"}
    assert (
        render_template(
            "{{a.b}}|{{a.b.1}}|{{a.b.2}}|{{a.c}}|{{[key with space]}}|"
            "{{a.b.9}}|{{a.missing.deeper}}",
            data,
        )
        == "1, 2, true, |2|true|x: 1.5|yes||"
    )


def test_settings_and_catalog_entry() -> None:
    definition = get("slack")
    assert definition.name == "Slack"
    assert definition.methods == {"track", "identify"}
    assert definition.secrets == {"webhook_url"}
    assert definition.batching is None
    assert definition.rate_limit_per_second == 1.0
    url = "https://hooks.slack.com/services/T/B/X"
    for bad in (
        {},
        {"webhook_url": "not a url"},
        {"webhook_url": url, "icon_url": "https://x.example/i.png", "icon_emoji": ":x:"},
        {"webhook_url": url, "templates": {"/([/": "broken regex"}},
        {"webhook_url": url, "whitelisted_traits": "email"},
        {"webhook_url": url, "unknown": 1},
    ):
        with pytest.raises(ValidationError):
            definition.parse_settings(bad)
    definition.parse_settings({"webhook_url": url, "templates": {"/a|b/g": "ok"}})
