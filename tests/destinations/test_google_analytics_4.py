"""Google Analytics 4: Measurement Protocol requests, mapping, GA4's limits, batching per client."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from headwater.destinations.catalog.google_analytics_4 import (
    GoogleAnalytics4Settings,
    event_name_for,
)
from headwater.destinations.registry import get
from tests.destinations.send import render, send
from tests.support.receiver import Answer, Receiver

T0 = "2024-03-05T10:00:00.000Z"
T0_MICROS = 1_709_632_800_000_000


def settings(receiver: Receiver | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"measurement_id": "G-ABC123", "api_secret": "s3cr3t"}
    if receiver is not None:
        found["endpoint"] = receiver.url
    return found


def track(
    event: str,
    properties: dict[str, Any] | None = None,
    *,
    anonymous: str = "anon-1",
    user: str | None = "u1",
    timestamp: str = T0,
    **extra: Any,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "type": "track",
        "event": event,
        "messageId": f"m-{event}",
        "anonymousId": anonymous,
        "timestamp": timestamp,
        "originalTimestamp": timestamp,
        "receivedAt": "2024-03-05T10:00:00.100Z",
        "properties": properties or {},
        "context": {"library": {"name": "analytics.js"}},
        "integrations": {},
        **extra,
    }
    if user is not None:
        message["userId"] = user
    return message


ORDER = track(
    "Order Completed",
    {
        "order_id": "50314b8e9bcf000000000000",
        "affiliation": "Google Store",
        "total": 27.5,
        "revenue": 25.0,
        "shipping": 3,
        "tax": 2,
        "discount": 2.5,
        "coupon": "hasbros",
        "currency": "usd",
        "checkout_method": "express",
        "products": [
            {
                "product_id": "507f1f77bcf86cd799439011",
                "sku": "45790-32",
                "name": "Monopoly: 3rd Edition",
                "price": 19,
                "quantity": 1,
                "category": "Games",
                "brand": "Hasbro",
                "variant": "classic",
                "position": 1,
                "url": "https://www.example.com/product/path",
            },
            {
                "product_id": "505bd76785ebb509fc183733",
                "name": "Uno Card Game",
                "price": 3,
                "quantity": 2,
                "category": "Games",
            },
        ],
    },
)


def test_order_completed_is_a_purchase_with_items(receiver: Receiver) -> None:
    receiver.default = Answer(status=204, body=b"", headers={})
    responses = send("google_analytics_4", settings(receiver), [ORDER])
    assert [r.status_code for r in responses] == [204]
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/mp/collect")
    assert request.query == {"measurement_id": ["G-ABC123"], "api_secret": ["s3cr3t"]}
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "client_id": "anon-1",
        "user_id": "u1",
        "timestamp_micros": T0_MICROS,
        "events": [
            {
                "name": "purchase",
                "timestamp_micros": T0_MICROS,
                "params": {
                    "transaction_id": "50314b8e9bcf000000000000",
                    "value": 27.5,
                    "currency": "USD",
                    "coupon": "hasbros",
                    "affiliation": "Google Store",
                    "shipping": 3,
                    "tax": 2,
                    "items": [
                        {
                            "item_id": "507f1f77bcf86cd799439011",
                            "item_name": "Monopoly: 3rd Edition",
                            "index": 1,
                            "item_brand": "Hasbro",
                            "item_category": "Games",
                            "item_variant": "classic",
                            "price": 19,
                            "quantity": 1,
                        },
                        {
                            "item_id": "505bd76785ebb509fc183733",
                            "item_name": "Uno Card Game",
                            "item_category": "Games",
                            "price": 3,
                            "quantity": 2,
                        },
                    ],
                    "discount": 2.5,
                    "checkout_method": "express",
                    "engagement_time_msec": 1,
                },
            }
        ],
    }


def test_product_added_describes_one_item() -> None:
    message = track(
        "Product Added",
        {
            "product_id": "p-1",
            "sku": "G-32",
            "name": "Mug",
            "price": 13.5,
            "quantity": 2,
            "cart_id": "c-9",
        },
    )
    [outgoing] = render("google_analytics_4", settings(), [message]).outgoing
    assert outgoing.request.body is not None
    body = json.loads(outgoing.request.body)
    assert body["events"][0]["name"] == "add_to_cart"
    assert body["events"][0]["params"] == {
        "currency": "USD",
        "value": 13.5,
        "items": [{"item_id": "p-1", "item_name": "Mug", "price": 13.5, "quantity": 2}],
        "cart_id": "c-9",
        "engagement_time_msec": 1,
    }


@pytest.mark.parametrize(
    ("event", "name"),
    [
        ("Checkout Started", "begin_checkout"),
        ("Order Refunded", "refund"),
        ("Product Viewed", "view_item"),
        ("Product Removed", "remove_from_cart"),
        ("Cart Viewed", "view_cart"),
        ("Product List Viewed", "view_item_list"),
        ("Product Clicked", "select_item"),
        ("Payment Info Entered", "add_payment_info"),
        ("Product Added to Wishlist", "add_to_wishlist"),
        ("Products Searched", "search"),
        ("Promotion Viewed", "view_promotion"),
        ("Promotion Clicked", "select_promotion"),
        ("Signed Up", "sign_up"),
        ("Signed In", "login"),
        ("Video Played", "video_played"),
        ("signupButtonClicked", "signup_button_clicked"),
        ("Plan / Upgraded (v2)", "plan_upgraded_v2"),
        ("2FA Enabled", "fa_enabled"),
    ],
)
def test_event_names(event: str, name: str) -> None:
    [outgoing] = render("google_analytics_4", settings(), [track(event)]).outgoing
    assert outgoing.request.body is not None
    assert json.loads(outgoing.request.body)["events"][0]["name"] == name


def test_custom_event_parameters_follow_ga4_limits() -> None:
    properties: dict[str, Any] = {
        "plan": "pro",
        "seats": 3,
        "trial": True,
        "Plan Type": "annual",
        "nested": {"a": 1},
        "tags": ["x"],
        "empty": None,
        "blank": "",
        "long": "x" * 150,
        "firebase_thing": "no",
        "_private": "no",
        "a_very_long_property_name_that_goes_past_forty_chars": 1,
    }
    properties.update({f"p{i:02d}": i for i in range(30)})
    message = track("Report Exported", properties)
    [outgoing] = render("google_analytics_4", settings(), [message]).outgoing
    assert outgoing.request.body is not None
    params = json.loads(outgoing.request.body)["events"][0]["params"]
    assert len(params) == 25
    assert params["engagement_time_msec"] == 1  # kept although the properties fill 25
    assert list(params)[:6] == ["plan", "seats", "trial", "Plan_Type", "long", "private"]
    assert params["trial"] == "true"
    assert params["long"] == "x" * 100
    assert "a_very_long_property_name_that_goes_past" in params
    assert len("a_very_long_property_name_that_goes_past") == 40
    for dropped in ("nested", "tags", "empty", "blank", "firebase_thing"):
        assert dropped not in params
    assert list(params)[-2] == "p16"  # 24 properties fit next to engagement_time_msec


def test_page_is_a_page_view_with_long_page_values() -> None:
    url = "https://www.example.com/" + "a" * 300
    message = {
        "type": "page",
        "name": "Pricing",
        "anonymousId": "anon-7",
        "messageId": "p1",
        "timestamp": T0,
        "properties": {
            "url": url,
            "path": "/pricing",
            "referrer": "https://google.com/",
            "search": "?q=1",
            "experiment": "b",
        },
        "context": {"page": {"title": "Pricing – Example"}},
    }
    [outgoing] = render("google_analytics_4", settings(), [message]).outgoing
    assert outgoing.request.body is not None
    assert json.loads(outgoing.request.body) == {
        "client_id": "anon-7",
        "timestamp_micros": T0_MICROS,
        "events": [
            {
                "name": "page_view",
                "timestamp_micros": T0_MICROS,
                "params": {
                    "page_location": url,
                    "page_title": "Pricing – Example",
                    "page_referrer": "https://google.com/",
                    "experiment": "b",
                    "engagement_time_msec": 1,
                },
            }
        ],
    }


def test_identify_sets_user_properties_in_a_request_of_its_own(receiver: Receiver) -> None:
    identify = {
        "type": "identify",
        "userId": "u1",
        "anonymousId": "anon-1",
        "messageId": "i1",
        "timestamp": "2024-03-05T10:00:01.000Z",
        "traits": {
            "plan": "premium",
            "logins": 5,
            "email_verified": False,
            "company": {"name": "Initech"},
            "user_id": "reserved",
            "favourite_programming_language": "too long a name",
            "bio": "b" * 50,
            "first_name": "Peter",
        },
    }
    send("google_analytics_4", settings(receiver), [track("Video Played"), identify])
    first, second = receiver.requests
    assert [e["name"] for e in first.json()["events"]] == ["video_played"]
    assert second.json() == {
        "client_id": "anon-1",
        "user_id": "u1",
        "timestamp_micros": 1_709_632_801_000_000,
        "user_properties": {
            "plan": {"value": "premium"},
            "logins": {"value": 5},
            "email_verified": {"value": "false"},
            "bio": {"value": "b" * 36},
            "first_name": {"value": "Peter"},
        },
        "events": [{"name": "identify", "params": {}, "timestamp_micros": 1_709_632_801_000_000}],
    }


def test_client_id_from_the_integrations_object_and_rejection_without_one() -> None:
    chosen = track(
        "Video Played",
        anonymous="anon-2",
        integrations={
            "Google Analytics 4": {"client_id": "GA1.1.123.456", "session_id": "1709632000"}
        },
    )
    aliased = track(
        "Video Played",
        user="u3",
        integrations={"Google Analytics 4 Cloud": {"clientId": "GA1.1.7.8"}},
    )
    aliased.pop("anonymousId")
    nobody = track("Video Played", user="u4")
    nobody.pop("anonymousId")
    rendered = render("google_analytics_4", settings(), [chosen, aliased, nobody])
    bodies = [json.loads(o.request.body or b"") for o in rendered.outgoing]
    assert [b["client_id"] for b in bodies] == ["GA1.1.123.456", "GA1.1.7.8"]
    assert bodies[0]["events"][0]["params"]["session_id"] == "1709632000"
    assert [o.messages for o in rendered.outgoing] == [(0,), (1,)]
    assert list(rendered.rejected) == [2]
    code, detail = rendered.rejected[2]
    assert code == "MESSAGE_REJECTED"
    assert "client_id" in detail


def test_reserved_and_unusable_event_names_are_rejected() -> None:
    rendered = render(
        "google_analytics_4",
        settings(),
        [track("Session Start"), track("First Visit"), track("!!!"), track("Google Something")],
    )
    assert rendered.outgoing == []
    assert {p: code for p, (code, _) in rendered.rejected.items()} == {
        0: "MESSAGE_REJECTED",
        1: "MESSAGE_REJECTED",
        2: "MESSAGE_REJECTED",
        3: "MESSAGE_REJECTED",
    }
    assert "reserves" in rendered.rejected[0][1]


def test_batches_hold_one_client_and_at_most_25_events(receiver: Receiver) -> None:
    messages = [track("Video Played", {"n": i}, anonymous="anon-a", user=None) for i in range(30)]
    messages.insert(3, track("Video Paused", anonymous="anon-b", user=None))
    messages.insert(5, track("Video Played", anonymous="anon-a", user="u-a"))
    rendered = render("google_analytics_4", settings(receiver), messages)
    assert [o.messages for o in rendered.outgoing] == [
        (0, 1, 2, 4, *range(6, 27)),  # 25 events of anon-a without a user id
        tuple(range(27, 32)),
        (3,),  # anon-b
        (5,),  # anon-a once signed in: user_id is request-wide
    ]
    send("google_analytics_4", settings(receiver), messages)
    bodies = [r.json() for r in receiver.requests]
    assert [len(b["events"]) for b in bodies] == [25, 5, 1, 1]
    assert [(b["client_id"], b.get("user_id")) for b in bodies] == [
        ("anon-a", None),
        ("anon-a", None),
        ("anon-b", None),
        ("anon-a", "u-a"),
    ]
    assert [e["params"]["n"] for e in bodies[0]["events"] + bodies[1]["events"]] == list(range(30))


def test_requests_stay_under_130_kb() -> None:
    products = [
        {
            "product_id": f"p{i}",
            "name": "n" * 100,
            "category": "c" * 100,
            "brand": "b" * 100,
            "variant": "v" * 100,
        }
        for i in range(60)
    ]
    messages = [
        track("Order Completed", {"order_id": f"o{i}", "products": products}) for i in range(8)
    ]
    rendered = render("google_analytics_4", settings(), messages)
    sizes = [len(o.request.body or b"") for o in rendered.outgoing]
    assert all(size < 130_000 for size in sizes)
    assert len(rendered.outgoing) > 1
    assert [p for o in rendered.outgoing for p in o.messages] == list(range(8))
    huge = track("Order Completed", {"products": products * 6})
    rendered = render("google_analytics_4", settings(), [huge])
    assert rendered.outgoing == []
    assert rendered.rejected[0][0] == "MESSAGE_REJECTED"


def test_settings_catalog_entry_and_secrets() -> None:
    definition = get("google_analytics_4")
    assert definition.name == "Google Analytics 4"
    assert definition.integration_names == ("Google Analytics 4", "Google Analytics 4 Cloud")
    assert definition.methods == {"track", "page", "identify"}
    assert definition.secrets == {"api_secret"}
    assert definition.batching is not None
    parsed = definition.parse_settings({"measurement_id": "G-ABC123", "api_secret": "x"})
    assert isinstance(parsed, GoogleAnalytics4Settings)
    assert (
        parsed.url()
        == "https://www.google-analytics.com/mp/collect?measurement_id=G-ABC123&api_secret=x"
    )
    eu = definition.parse_settings(
        {
            "measurement_id": "G-ABC123",
            "api_secret": "a&b",
            "endpoint": "https://region1.google-analytics.com",
        }
    )
    assert isinstance(eu, GoogleAnalytics4Settings)
    assert (
        eu.url()
        == "https://region1.google-analytics.com/mp/collect?measurement_id=G-ABC123&api_secret=a%26b"
    )
    for bad in (
        {"api_secret": "x"},
        {"measurement_id": "G-ABC123"},
        {"measurement_id": "UA-1234-1", "api_secret": "x"},
        {"measurement_id": "G-ABC123", "api_secret": ""},
        {"measurement_id": "G-ABC123", "api_secret": "x", "region": "eu"},
    ):
        with pytest.raises(ValidationError):
            definition.parse_settings(bad)


def test_event_name_helper_cuts_at_40_characters() -> None:
    name = event_name_for("A Really Quite Remarkably Long Event Name For Analytics")
    assert name == "a_really_quite_remarkably_long_event_nam"
    assert len(name) == 40
