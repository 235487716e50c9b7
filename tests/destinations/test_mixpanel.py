"""Mixpanel: /import events, /engage profiles, /track identity events, batching, strict answers."""

from __future__ import annotations

import base64
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
TOKEN = "f2b1c3d4e5f60718293a4b5c6d7e8f90"
SECRET = "s3cr3t-api-secret"


def settings(receiver: Receiver | None = None, **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"project_token": TOKEN, "api_secret": SECRET, **extra}
    if receiver is not None:
        found["endpoint"] = receiver.url
    return found


def message(
    kind: str,
    *,
    user: str | None = "019mr8mf4r",
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


def basic(user: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:".encode()).decode()


WEB_CONTEXT = {
    "ip": "8.8.8.8",
    "page": {"url": "https://example.com/checkout", "referrer": "https://google.com/"},
    "campaign": {
        "name": "TPS Innovation Newsletter",
        "source": "Newsletter",
        "medium": "email",
        "term": "tps reports",
        "content": "image link",
    },
    "os": {"name": "Mac OS X", "version": "14.1"},
    "screen": {"width": 1440, "height": 900, "density": 2},
    "locale": "en-US",
    "library": {"name": "analytics.js", "version": "2.11.1"},
}


def test_track_is_imported_with_context_and_identity(receiver: Receiver) -> None:
    track = message(
        "track",
        event="Purchased an Item",
        context=WEB_CONTEXT,
        properties={"revenue": 39.95, "shippingMethod": "2-day", "ip": "9.9.9.9", "time": 1},
    )
    responses = send("mixpanel", settings(receiver), [track])
    assert [r.status_code for r in responses] == [200]
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/import")
    assert request.query == {"strict": ["1"]}
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == basic(SECRET)
    assert request.json() == [
        {
            "event": "Purchased an Item",
            "properties": {
                "time": T0_MS,
                "$insert_id": "msg-1",
                "distinct_id": "019mr8mf4r",
                "$user_id": "019mr8mf4r",
                "$device_id": "anon-456",
                "ip": "9.9.9.9",  # the message's own property wins over context.ip
                "$os": "Mac OS X",
                "$os_version": "14.1",
                "$current_url": "https://example.com/checkout",
                "$referrer": "https://google.com/",
                "$locale": "en-US",
                "utm_source": "Newsletter",
                "utm_medium": "email",
                "utm_campaign": "TPS Innovation Newsletter",
                "utm_term": "tps reports",
                "utm_content": "image link",
                "$screen_width": 1440,
                "$screen_height": 900,
                "$screen_density": 2,
                "revenue": 39.95,
                "shippingMethod": "2-day",
            },
        }
    ]


def test_import_authenticates_with_the_project_token_without_a_secret(receiver: Receiver) -> None:
    send(
        "mixpanel",
        {"project_token": TOKEN, "endpoint": receiver.url},
        [message("track", event="Signed Up")],
    )
    assert receiver.requests[0].headers["authorization"] == basic(TOKEN)


def test_anonymous_track_uses_the_anonymous_id(receiver: Receiver) -> None:
    send("mixpanel", settings(receiver), [message("track", event="Video Played", user=None)])
    assert receiver.requests[0].json() == [
        {
            "event": "Video Played",
            "properties": {
                "time": T0_MS,
                "$insert_id": "msg-1",
                "distinct_id": "anon-456",
                "$device_id": "anon-456",
            },
        }
    ]


def test_identify_sets_the_profile_and_links_the_anonymous_id(receiver: Receiver) -> None:
    identify = message(
        "identify",
        context={"ip": "1.2.3.4", "active": False},
        traits={
            "firstName": "Michael",
            "lastName": "Bolton",
            "email": "mbolton@example.com",
            "plan": "Enterprise",
            "friends": 42,
            "created": "2024-01-01T00:00:00.000Z",
        },
    )
    send("mixpanel", settings(receiver), [identify])
    engage, track = sorted(receiver.requests, key=lambda r: r.path)
    assert (engage.method, engage.path) == ("POST", "/engage")
    assert engage.query == {"verbose": ["1"], "ip": ["0"]}
    assert engage.headers["content-type"] == "application/json"
    assert "authorization" not in engage.headers
    assert engage.json() == [
        {
            "$token": TOKEN,
            "$distinct_id": "019mr8mf4r",
            "$ip": "1.2.3.4",
            "$ignore_time": True,
            "$set": {
                "$first_name": "Michael",
                "$last_name": "Bolton",
                "$email": "mbolton@example.com",
                "plan": "Enterprise",
                "friends": 42,
                "$created": "2024-01-01T00:00:00.000Z",
            },
        }
    ]
    assert (track.method, track.path, track.query) == ("POST", "/track", {"verbose": ["1"]})
    assert track.json() == [
        {
            "event": "$identify",
            "properties": {
                "$identified_id": "019mr8mf4r",
                "$anon_id": "anon-456",
                "token": TOKEN,
                "time": T0_MS,
                "$insert_id": "msg-1",
            },
        }
    ]


def test_identify_without_a_user_id_sets_the_anonymous_profile(receiver: Receiver) -> None:
    send(
        "mixpanel",
        settings(receiver),
        [message("identify", user=None, traits={"name": "Ian Taylor"})],
    )
    [engage] = receiver.requests
    assert engage.json() == [
        {"$token": TOKEN, "$distinct_id": "anon-456", "$set": {"$name": "Ian Taylor"}}
    ]


def test_page_and_screen_are_consolidated_events(receiver: Receiver) -> None:
    page = message(
        "page",
        name="Pricing",
        category="Docs",
        message_id="p1",
        properties={"url": "https://example.com/pricing"},
    )
    screen = message("screen", name="Listing", message_id="s1")
    send("mixpanel", settings(receiver), [page, screen])
    [request] = receiver.requests
    events = request.json()
    assert [e["event"] for e in events] == ["Loaded a Page", "Loaded a Screen"]
    assert events[0]["properties"]["url"] == "https://example.com/pricing"
    assert (events[0]["properties"]["name"], events[0]["properties"]["category"]) == (
        "Pricing",
        "Docs",
    )
    assert events[1]["properties"]["name"] == "Listing"


def test_alias_creates_an_alias(receiver: Receiver) -> None:
    alias = message("alias", user="12345", anonymous=None, previousId="92fh49fqh9849hf")
    send("mixpanel", settings(receiver), [alias])
    [request] = receiver.requests
    assert (request.path, request.query) == ("/track", {"verbose": ["1"]})
    assert request.json() == [
        {
            "event": "$create_alias",
            "properties": {
                "distinct_id": "92fh49fqh9849hf",
                "alias": "12345",
                "token": TOKEN,
                "time": T0_MS,
                "$insert_id": "msg-1",
            },
        }
    ]


def test_messages_mixpanel_would_refuse_are_rejected() -> None:
    placeholder = message("track", event="A", user="null", anonymous="anonymous")
    no_previous = message("alias", user="12345", anonymous=None)
    no_time = message("track", event="B", timestamp=None, receivedAt=None)
    huge = message("track", event="C", properties={"blob": "x" * 1_000_000})
    fine = message("track", event="D")
    rendered = render("mixpanel", settings(), [placeholder, no_previous, no_time, huge, fine])
    assert set(rendered.rejected) == {0, 1, 2, 3}
    assert {code for code, _ in rendered.rejected.values()} == {"MESSAGE_REJECTED"}
    assert [o.messages for o in rendered.outgoing] == [(4,)]


def test_batches_split_by_api_and_limits() -> None:
    mixed = [
        message("track", event="A", message_id="m0"),
        message("identify", traits={"plan": "pro"}, anonymous=None, message_id="m1"),
        message("page", name="Home", message_id="m2"),
    ]
    rendered = render("mixpanel", settings(), mixed)
    assert [(o.request.url, o.messages) for o in rendered.outgoing] == [
        ("https://api.mixpanel.com/import?strict=1", (0, 2)),
        ("https://api.mixpanel.com/engage?verbose=1&ip=0", (1,)),
    ]

    many = [message("track", event="E", message_id=f"m{i}") for i in range(2001)]
    rendered = render("mixpanel", settings(), many)
    assert [len(o.messages) for o in rendered.outgoing] == [2000, 1]

    big = [
        message("track", event="E", message_id=f"b{i}", properties={"blob": "x" * 600_000})
        for i in range(4)
    ]
    rendered = render("mixpanel", settings(), big)
    assert [o.messages for o in rendered.outgoing] == [(0, 1, 2), (3,)]
    assert all(len(o.request.body or b"") <= 2_000_000 for o in rendered.outgoing)


def test_several_messages_share_one_import_request(receiver: Receiver) -> None:
    send(
        "mixpanel",
        settings(receiver),
        [message("track", event=f"E{i}", message_id=f"m{i}") for i in range(3)],
    )
    [request] = receiver.requests
    assert [e["properties"]["$insert_id"] for e in request.json()] == ["m0", "m1", "m2"]


def _answer(receiver: Receiver, status: int, body: Any) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    receiver.answer(Answer(status=status, body=raw))
    reply = httpx.post(receiver.url + "/import", json=[])
    return Response(reply.status_code, dict(reply.headers), reply.content)


def test_interpret_strict_import_answers(receiver: Receiver) -> None:
    interpret = get("mixpanel").interpret
    assert interpret is not None
    partial = _answer(
        receiver,
        400,
        {
            "code": 400,
            "error": "some data points in the request failed validation",
            "status": "Bad Request",
            "num_records_imported": 2,
            "failed_records": [
                {
                    "index": 1,
                    "insert_id": "m1",
                    "field": "properties.time",
                    "message": "'properties.time' is invalid: must be specified as seconds since epoch",
                },
                {
                    "index": 3,
                    "insert_id": "m3",
                    "field": "properties.distinct_id",
                    "message": "'properties.distinct_id' is invalid",
                },
            ],
        },
    )
    assert interpret(partial, 4) == [None, "400", None, "400"]
    ok = _answer(receiver, 200, {"code": 200, "num_records_imported": 4, "status": "OK"})
    assert interpret(ok, 4) is None
    unauthorized = _answer(
        receiver, 401, {"code": 401, "error": "Invalid credentials", "status": "Unauthorized"}
    )
    assert interpret(unauthorized, 2) is None
    limited = _answer(
        receiver,
        429,
        {
            "code": 429,
            "status": "Too Many Requests",
            "error": "Project exceeded rate limits. Please retry the request with exponential "
            "backoff.",
        },
    )
    assert interpret(limited, 2) is None
    too_large = _answer(
        receiver,
        413,
        {
            "code": 413,
            "status": "Request Entity Too Large",
            "error": "request exceeds max limit of 2097152 bytes",
        },
    )
    assert interpret(too_large, 2) == ["RETRY", "RETRY"]
    assert interpret(too_large, 1) is None


def test_interpret_verbose_engage_and_track_answers(receiver: Receiver) -> None:
    interpret = get("mixpanel").interpret
    assert interpret is not None
    refused = _answer(receiver, 200, {"status": 0, "error": "data, missing or empty"})
    assert interpret(refused, 2) == ["MESSAGE_REJECTED", "MESSAGE_REJECTED"]
    accepted = _answer(receiver, 200, {"status": 1, "error": None})
    assert interpret(accepted, 2) is None
    assert interpret(_answer(receiver, 200, b"1"), 1) is None


def test_settings() -> None:
    definition = get("mixpanel")
    assert definition.name == "Mixpanel"
    assert definition.secrets == {"api_secret", "gdpr_api_token"}  # the token: deletions only
    assert "group" not in definition.methods
    assert definition.batching is not None and definition.batching.max_events == 2000
    with pytest.raises(ValidationError):
        definition.parse_settings({"api_secret": SECRET})
    with pytest.raises(ValidationError):
        definition.parse_settings({"project_token": TOKEN, "people": True})
    eu = render(
        "mixpanel", settings(endpoint="https://api-eu.mixpanel.com"), [message("track", event="E")]
    )
    assert eu.outgoing[0].request.url == "https://api-eu.mixpanel.com/import?strict=1"
