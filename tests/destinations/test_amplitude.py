"""Amplitude: HTTP V2 API requests, Segment's mapping, ID rules, batching, partial failures."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from headwater.destinations.definition import Response
from headwater.destinations.registry import get
from tests.destinations.send import render, send
from tests.support.receiver import Answer, Receiver

T0 = "2024-03-05T10:00:00.000Z"
T0_MS = 1_709_632_800_000
API_KEY = "0123456789abcdef0123456789abcdef"


def settings(receiver: Receiver | None = None, **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"api_key": API_KEY, **extra}
    if receiver is not None:
        found["endpoint"] = receiver.url
    return found


def message(
    kind: str,
    *,
    user: str | None = "user-123",
    anonymous: str | None = "anon-456",
    message_id: str = "msg-1",
    **extra: Any,
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "type": kind,
        "messageId": message_id,
        "timestamp": T0,
        "receivedAt": "2024-03-05T10:00:00.100Z",
        "context": {},
        "integrations": {},
        **extra,
    }
    if user is not None:
        found["userId"] = user
    if anonymous is not None:
        found["anonymousId"] = anonymous
    return found


MOBILE_CONTEXT = {
    "ip": "8.8.8.8",
    "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
    "device": {
        "id": "2b6f0cc904d137be2e1730235f5664094b831186",
        "type": "ios",
        "model": "iPhone 10",
        "brand": "Apple",
        "manufacturer": "Apple",
        "advertisingId": "AEBE52E7-03EE-455A-B3C4-E57283966239",
    },
    "os": {"name": "iOS", "version": "17.0"},
    "network": {"carrier": "T-Mobile"},
    "app": {"version": "3.5.1"},
    "location": {
        "country": "United States",
        "region": "California",
        "city": "San Francisco",
        "latitude": "37.7672319",
        "longitude": -122.4021353,
    },
    "locale": "en-US",
    "library": {"name": "analytics-ios", "version": "4.1.0"},
}


def test_track_with_revenue_is_one_event_with_revenue_fields(receiver: Receiver) -> None:
    track = message(
        "track",
        event="Subscription Started",
        context=MOBILE_CONTEXT,
        properties={
            "plan": "Basic",
            "revenue": "32",
            "price": 16,
            "quantity": 2,
            "productId": "basic-monthly",
            "revenueType": "subscription",
            "currency": "usd",
        },
        integrations={"Amplitude": {"session_id": 1709632700}},
    )
    responses = send("amplitude", settings(receiver), [track])
    assert [r.status_code for r in responses] == [200]
    [request] = receiver.requests
    assert (request.method, request.path, request.query) == ("POST", "/2/httpapi", {})
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert request.json() == {
        "api_key": API_KEY,
        "events": [
            {
                "event_type": "Subscription Started",
                "user_id": "user-123",
                "device_id": "anon-456",
                "time": T0_MS,
                "insert_id": "msg-1",
                "event_properties": {
                    "plan": "Basic",
                    "revenue": "32",
                    "price": 16,
                    "quantity": 2,
                    "productId": "basic-monthly",
                    "revenueType": "subscription",
                    "currency": "usd",
                },
                "price": 16,
                "quantity": 2,
                "revenue": 32.0,
                "productId": "basic-monthly",
                "revenueType": "subscription",
                "currency": "USD",
                "session_id": 1_709_632_700_000,
                "ip": "8.8.8.8",
                "user_agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
                "platform": "ios",
                "os_name": "iOS",
                "os_version": "17.0",
                "device_brand": "Apple",
                "device_manufacturer": "Apple",
                "device_model": "iPhone 10",
                "carrier": "T-Mobile",
                "country": "United States",
                "region": "California",
                "city": "San Francisco",
                "language": "en-US",
                "app_version": "3.5.1",
                "location_lat": 37.7672319,
                "location_lng": -122.4021353,
                "idfa": "AEBE52E7-03EE-455A-B3C4-E57283966239",
            }
        ],
    }


def test_identify_sets_traits_as_user_properties(receiver: Receiver) -> None:
    identify = message(
        "identify",
        traits={"email": "derek@example.com", "name": "Derek Sivers", "industry": "Music"},
        context={"ip": "1.2.3.4", "library": {"name": "analytics.js"}},
        integrations={"Amplitude": {"groups": {"sports": ["tennis"]}}},
    )
    send("amplitude", settings(receiver), [identify])
    assert receiver.requests[0].json()["events"] == [
        {
            "event_type": "$identify",
            "user_id": "user-123",
            "device_id": "anon-456",
            "time": T0_MS,
            "insert_id": "msg-1",
            "user_properties": {
                "$set": {"email": "derek@example.com", "name": "Derek Sivers", "industry": "Music"}
            },
            "groups": {"sports": ["tennis"]},
            "ip": "1.2.3.4",
            "platform": "Web",
        }
    ]


def test_page_and_screen_are_loaded_a_page_and_loaded_a_screen(receiver: Receiver) -> None:
    page = message(
        "page",
        name="Settings",
        category="Merchant",
        message_id="p1",
        properties={"url": "https://example.com/settings", "title": "Settings"},
    )
    screen = message("screen", name="Listing", message_id="s1", properties={})
    send("amplitude", settings(receiver), [page, screen])
    [request] = receiver.requests
    events = request.json()["events"]
    assert [(e["event_type"], e["insert_id"], e["event_properties"]) for e in events] == [
        (
            "Loaded a Page",
            "p1",
            {
                "url": "https://example.com/settings",
                "title": "Settings",
                "name": "Settings",
                "category": "Merchant",
            },
        ),
        ("Loaded a Screen", "s1", {"name": "Listing"}),
    ]


def test_group_associates_the_user_with_the_group(receiver: Receiver) -> None:
    group = message(
        "group",
        groupId="082108c8-f51e-485f-9d2d-b6ba57ee2c40",
        anonymous=None,
        traits={"group_type": "Organization", "name": "ExampleCorp, LLC", "employees": "20"},
    )
    send(
        "amplitude",
        settings(receiver, group_type_trait="group_type", group_value_trait="name"),
        [group],
    )
    send("amplitude", settings(receiver), [group])
    mapped, legacy = (r.json()["events"][0] for r in receiver.requests)
    assert mapped == {
        "event_type": "$identify",
        "user_id": "user-123",
        "time": T0_MS,
        "insert_id": "msg-1",
        "user_properties": {"$set": {"Organization": "ExampleCorp, LLC"}},
        "groups": {"Organization": "ExampleCorp, LLC"},
    }
    assert legacy["user_properties"] == {
        "$set": {"[Segment] Group": "082108c8-f51e-485f-9d2d-b6ba57ee2c40"}
    }
    assert legacy["groups"] == {"[Segment] Group": "082108c8-f51e-485f-9d2d-b6ba57ee2c40"}


def test_anonymous_messages_carry_only_a_device_id(receiver: Receiver) -> None:
    track = message("track", event="Video Played", user=None, properties={"length": 30})
    send("amplitude", settings(receiver), [track])
    [event] = receiver.requests[0].json()["events"]
    assert event == {
        "event_type": "Video Played",
        "device_id": "anon-456",
        "time": T0_MS,
        "insert_id": "msg-1",
        "event_properties": {"length": 30},
    }


def test_messages_without_an_acceptable_id_are_rejected_not_sent() -> None:
    short = message("track", event="A", user="u1", anonymous=None)
    placeholder = message("track", event="B", user="null", anonymous="undefined")
    falls_back = message("track", event="C", user="u1", anonymous="anon-456")
    device_only = message(
        "track", event="D", user=None, anonymous=None, context={"device": {"id": "device-0001"}}
    )
    rendered = render("amplitude", settings(), [short, placeholder, falls_back, device_only])
    assert set(rendered.rejected) == {0, 1}
    assert {code for code, _ in rendered.rejected.values()} == {"MESSAGE_REJECTED"}
    assert "at least 5 characters" in rendered.rejected[0][1]
    [outgoing] = rendered.outgoing
    assert outgoing.messages == (2, 3)
    assert outgoing.request.body is not None
    events = json.loads(outgoing.request.body)["events"]
    assert [(e.get("user_id"), e.get("device_id")) for e in events] == [
        (None, "anon-456"),
        (None, "device-0001"),
    ]


def test_min_id_length_is_sent_as_an_option(receiver: Receiver) -> None:
    send(
        "amplitude",
        settings(receiver, min_id_length=1),
        [message("track", event="A", user="7", anonymous=None)],
    )
    body = receiver.requests[0].json()
    assert body["options"] == {"min_id_length": 1}
    assert body["events"][0]["user_id"] == "7"


def test_several_messages_share_one_request(receiver: Receiver) -> None:
    messages = [message("track", event=f"E{i}", message_id=f"m{i}") for i in range(5)]
    send("amplitude", settings(receiver), messages)
    [request] = receiver.requests
    assert [e["insert_id"] for e in request.json()["events"]] == [f"m{i}" for i in range(5)]


def test_requests_respect_the_event_and_size_limits() -> None:
    many = [message("track", event="E", message_id=f"m{i}") for i in range(1001)]
    rendered = render("amplitude", settings(), many)
    assert [len(o.messages) for o in rendered.outgoing] == [1000, 1]
    assert rendered.outgoing[1].messages == (1000,)

    big = [
        message("track", event="E", message_id=f"b{i}", properties={"blob": "x" * 300_000})
        for i in range(4)
    ]
    rendered = render("amplitude", settings(), big)
    assert [o.messages for o in rendered.outgoing] == [(0, 1, 2), (3,)]
    assert all(len(o.request.body or b"") < 1_000_000 for o in rendered.outgoing)

    huge = message("track", event="E", properties={"blob": "x" * 1_000_000})
    rendered = render("amplitude", settings(), [huge])
    assert rendered.outgoing == []
    assert rendered.rejected[0][0] == "MESSAGE_REJECTED"


def _answer(receiver: Receiver, status: int, body: dict[str, Any]) -> Response:
    receiver.answer(Answer(status=status, body=json.dumps(body).encode()))
    reply = httpx.post(receiver.url + "/2/httpapi", json={})
    return Response(reply.status_code, dict(reply.headers), reply.content)


def test_interpret_drops_the_invalid_events_and_resends_the_others(receiver: Receiver) -> None:
    interpret = get("amplitude").interpret
    assert interpret is not None
    invalid = _answer(
        receiver,
        400,
        {
            "code": 400,
            "error": "Invalid field values on some events",
            "events_with_invalid_fields": {"time": [1], "device_id": [3]},
            "events_with_missing_fields": {"event_type": [4]},
        },
    )
    assert interpret(invalid, 5) == ["RETRY", "400", "RETRY", "400", "400"]

    silenced = _answer(
        receiver,
        400,
        {
            "code": 400,
            "error": "Events silenced for device_id",
            "eps_threshold": 100,
            "exceeded_daily_quota_devices": {},
            "silenced_devices": ["d1", "d2"],
            "silenced_events": [5, 6],
            "throttled_devices": {"d3": 0, "d4": 100},
            "throttled_events": [3, 4],
        },
    )
    assert interpret(silenced, 7) == ["RETRY", "RETRY", "RETRY", "429", "429", "400", "400"]

    throttled = _answer(
        receiver,
        429,
        {
            "code": 429,
            "error": "Too many requests for some devices and users",
            "eps_threshold": 30,
            "throttled_devices": {"C8F9E604": 31},
            "throttled_users": {"datamonster@amplitude.com": 32},
            "throttled_events": [0, 2],
        },
    )
    assert interpret(throttled, 3) == ["429", "RETRY", "429"]


def test_interpret_leaves_whole_request_answers_to_the_engine(receiver: Receiver) -> None:
    interpret = get("amplitude").interpret
    assert interpret is not None
    ok = _answer(
        receiver,
        200,
        {
            "code": 200,
            "events_ingested": 2,
            "payload_size_bytes": 50,
            "server_upload_time": 1396381378123,
        },
    )
    assert interpret(ok, 2) is None
    missing_key = _answer(
        receiver,
        400,
        {
            "code": 400,
            "error": "Request missing required field",
            "missing_field": "api_key",
            "events_with_missing_fields": {"event_type": [3]},
        },
    )
    assert interpret(missing_key, 4) is None
    assert interpret(_answer(receiver, 400, {"code": 400, "error": "Invalid API key"}), 2) is None
    assert interpret(_answer(receiver, 503, {"code": 503}), 2) is None
    too_large = _answer(receiver, 413, {"code": 413, "error": "Payload too large"})
    assert interpret(too_large, 3) == ["RETRY", "RETRY", "RETRY"]
    assert interpret(too_large, 1) is None


def test_settings() -> None:
    definition = get("amplitude")
    assert definition.name == "Amplitude"
    assert definition.secrets == {"api_key", "secret_key"}  # the secret: deletions only
    assert "alias" not in definition.methods
    assert definition.batching is not None and definition.batching.max_events == 1000
    with pytest.raises(ValidationError):
        definition.parse_settings({})
    with pytest.raises(ValidationError):
        definition.parse_settings({"api_key": ""})
    with pytest.raises(ValidationError):
        definition.parse_settings({"api_key": API_KEY, "secret": "x"})
    urls = [
        render("amplitude", s, [message("track", event="E")]).outgoing[0].request.url
        for s in (
            settings(),
            settings(eu_residency=True),
            settings(endpoint="https://proxy.example.com/amp/2/httpapi"),
        )
    ]
    assert urls == [
        "https://api2.amplitude.com/2/httpapi",
        "https://api.eu.amplitude.com/2/httpapi",
        "https://proxy.example.com/amp/2/httpapi",
    ]
