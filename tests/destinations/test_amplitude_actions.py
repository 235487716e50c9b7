"""Amplitude (Actions): Segment's actions and default mappings, Amplitude's request formats,
ID rules, batching, per-event answers, and a mapping end to end."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import ValidationError

from headwater.destinations.actions import Mappings, check_mappings
from headwater.destinations.definition import Rendered, Response
from headwater.destinations.registry import get
from headwater.errors import ListError
from tests.delivery.conftest import Pipeline, pipeline  # noqa: F401 (the fixture)
from tests.support.receiver import Received, Receiver

T0 = "2024-03-05T10:00:00.000Z"
T0_MS = 1_709_632_800_000
API_KEY = "0123456789abcdef0123456789abcdef"
DEFINITION = get("amplitude-actions")

MOBILE_CONTEXT: dict[str, Any] = {
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
        "latitude": 37.7672319,
        "longitude": -122.4021353,
    },
    "locale": "en-US",
    "library": {"name": "analytics-ios", "version": "4.1.0"},
}
WEB_CONTEXT: dict[str, Any] = {
    "ip": "1.2.3.4",
    "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
    "library": {"name": "analytics.js", "version": "2.11.1"},
    "page": {"referrer": "https://www.google.com/", "url": "https://example.com/pricing"},
    "campaign": {"source": "newsletter", "medium": "email", "name": "spring-sale"},
}


# What Amplitude gets from MOBILE_CONTEXT through the default mappings.
MOBILE_FIELDS: dict[str, Any] = {
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
}


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
        "context": {},
        "integrations": {},
        **extra,
    }
    if user is not None:
        found["userId"] = user
    if anonymous is not None:
        found["anonymousId"] = anonymous
    return found


def mapping(action: str, trigger: str = 'type = "track"', **fields: Any) -> dict[str, Any]:
    return {"name": action, "enabled": True, "trigger": trigger, "action": action, "fields": fields}


def render(
    action: str,
    messages: Sequence[dict[str, Any]],
    *,
    settings_: dict[str, Any] | None = None,
    **fields: Any,
) -> Rendered:
    """The requests one mapping makes for these messages, as the delivery engine renders them."""
    [checked] = check_mappings(DEFINITION.actions, [mapping(action, **fields)], new_id=lambda: "m1")
    compiled = Mappings.compile(DEFINITION.actions, [checked])
    parsed = DEFINITION.parse_settings(settings_ or settings())
    return compiled.render(["m1"] * len(messages), messages, parsed)


def send(
    receiver: Receiver,
    action: str,
    messages: Sequence[dict[str, Any]],
    *,
    extra_settings: dict[str, Any] | None = None,
    **fields: Any,
) -> Rendered:
    """Render and send every request to the receiver."""
    rendered = render(
        action, messages, settings_=settings(receiver, **(extra_settings or {})), **fields
    )
    with httpx.Client(timeout=10) as client:
        for outgoing in rendered.outgoing:
            request = outgoing.request
            reply = client.request(
                request.method, request.url, headers=dict(request.headers), content=request.body
            )
            assert reply.status_code == 200
    return rendered


def form(request: Received) -> dict[str, Any]:
    """A form-encoded Identify / Group Identify body, its JSON parameters decoded."""
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    fields = {name: values for name, values in parse_qs(request.body.decode()).items()}
    assert all(len(values) == 1 for values in fields.values())
    decoded: dict[str, Any] = {name: values[0] for name, values in fields.items()}
    for name in ("identification", "options"):
        if name in decoded:
            decoded[name] = json.loads(decoded[name])
    return decoded


# --- logEvent --------------------------------------------------------------------------------


def test_log_event_default_mapping_sends_a_mobile_track_as_an_http_v2_event(
    receiver: Receiver,
) -> None:
    track = message(
        "track",
        event="Song Played",
        context=MOBILE_CONTEXT,
        properties={"title": "Blue", "revenue": 1.99},
        traits={"plan": "free"},
        integrations={"Actions Amplitude": {"session_id": 1_709_632_700_000}},
    )
    rendered = send(receiver, "logEvent", [track])
    assert rendered.rejected == {}
    [request] = receiver.requests
    assert (request.method, request.path, request.query) == ("POST", "/2/httpapi", {})
    assert request.headers["content-type"] == "application/json"
    assert "authorization" not in request.headers
    assert request.json() == {
        "api_key": API_KEY,
        "events": [
            {
                "user_id": "user-123",
                "device_id": "2b6f0cc904d137be2e1730235f5664094b831186",  # context.device.id first
                "event_type": "Song Played",
                "event_properties": {"title": "Blue", "revenue": 1.99},
                "user_properties": {"plan": "free"},
                "time": T0_MS,
                "session_id": 1_709_632_700_000,
                "app_version": "3.5.1",
                "platform": "iOS",  # Segment capitalizes ios and android
                **MOBILE_FIELDS,
                "location_lat": 37.7672319,
                "location_lng": -122.4021353,
                "ip": "8.8.8.8",
                "idfa": "AEBE52E7-03EE-455A-B3C4-E57283966239",
                "idfv": "2b6f0cc904d137be2e1730235f5664094b831186",
                "adid": "AEBE52E7-03EE-455A-B3C4-E57283966239",
                "library": "analytics-ios",  # library2: use_mapping, the source's library
            }
        ],
    }


def test_log_event_from_the_browser_sets_campaign_and_referrer_user_properties(
    receiver: Receiver,
) -> None:
    track = message(
        "track", event="Signed Up", user=None, context=WEB_CONTEXT, properties={"plan": "pro"}
    )
    send(
        receiver, "logEvent", [track], includeRawUserAgent=True, insert_id={"@path": "$.messageId"}
    )
    [event] = receiver.requests[0].json()["events"]
    assert event == {
        "device_id": "anon-456",
        "event_type": "Signed Up",
        "event_properties": {"plan": "pro"},
        "time": T0_MS,
        "ip": "1.2.3.4",
        "platform": "Web",  # analytics.js without a device type
        "insert_id": "msg-1",
        "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
        "user_properties": {
            "$set": {
                "utm_source": "newsletter",
                "utm_medium": "email",
                "utm_campaign": "spring-sale",
                "referrer": "https://www.google.com/",
            },
            "$setOnce": {
                "initial_utm_source": "newsletter",
                "initial_utm_medium": "email",
                "initial_utm_campaign": "spring-sale",
                "initial_referrer": "https://www.google.com/",
            },
        },
        "library": "analytics.js",
    }


def test_log_event_leaves_out_revenue_as_segments_action_does() -> None:
    track = message(
        "track",
        event="Order Completed",
        properties={
            "revenue": 30,
            "price": 10,
            "quantity": 3,
            "productId": "sku",
            "products": [{"productId": "p1", "price": 10}],
        },
    )
    [outgoing] = render("logEvent", [track]).outgoing
    [event] = json.loads(outgoing.request.body or b"")["events"]
    assert not {
        "revenue",
        "price",
        "quantity",
        "productId",
        "revenueType",
        "products",
        "use_batch_endpoint",
    } & set(event)
    assert event["event_properties"]["revenue"] == 30


def test_log_event_mapped_fields_and_the_batch_endpoint(receiver: Receiver) -> None:
    page = message(
        "page",
        name="Pricing",
        properties={"url": "https://example.com/pricing"},
        context={"library": {"name": "analytics.js"}},
    )
    send(
        receiver,
        "logEvent",
        [page],
        event_type={"@template": "Viewed {{name}}"},
        use_batch_endpoint=True,
        min_id_length=3,
        groups={"company": "Acme"},
        library2={"behavior": "auto"},
    )
    [request] = receiver.requests
    assert request.path == "/batch"
    body = request.json()
    assert body["options"] == {"min_id_length": 3}
    [event] = body["events"]
    assert (event["event_type"], event["groups"], event["library"]) == (
        "Viewed Pricing",
        {"company": "Acme"},
        "segment",
    )


def test_a_track_without_an_event_name_is_rejected_by_the_required_field() -> None:
    rendered = render("logEvent", [message("page", name="Home")])
    assert rendered.outgoing == []
    assert rendered.rejected[0][0] == "MESSAGE_REJECTED"
    assert "event_type" in rendered.rejected[0][1]


def test_messages_without_an_acceptable_id_are_rejected_not_sent() -> None:
    short = message("track", event="A", user="u1", anonymous=None)
    placeholder = message("track", event="B", user="null", anonymous="undefined")
    falls_back = message("track", event="C", user="u1", anonymous="anon-456")
    fine = message("track", event="D")
    rendered = render("logEvent", [short, placeholder, falls_back, fine])
    assert set(rendered.rejected) == {0, 1}
    assert {code for code, _ in rendered.rejected.values()} == {"MESSAGE_REJECTED"}
    assert "at least 5 characters" in rendered.rejected[0][1]
    [outgoing] = rendered.outgoing
    assert outgoing.messages == (2, 3)
    events = json.loads(outgoing.request.body or b"")["events"]
    assert [(e.get("user_id"), e.get("device_id")) for e in events] == [
        (None, "anon-456"),
        ("user-123", "anon-456"),
    ]


def test_min_id_length_from_the_mapping_or_the_settings() -> None:
    short = message("track", event="A", user="u1", anonymous=None)
    by_mapping = render("logEvent", [short], min_id_length=2)
    by_settings = render("logEvent", [short], settings_=settings(min_id_length=1))
    for rendered, length in ((by_mapping, 2), (by_settings, 1)):
        [outgoing] = rendered.outgoing
        body = json.loads(outgoing.request.body or b"")
        assert body["options"] == {"min_id_length": length}
        assert body["events"][0]["user_id"] == "u1"


def test_events_share_requests_within_amplitudes_limits() -> None:
    many = [message("track", event="E", message_id=f"m{i}") for i in range(1001)]
    rendered = render("logEvent", many)
    assert [len(o.messages) for o in rendered.outgoing] == [1000, 1]
    assert rendered.outgoing[1].messages == (1000,)

    big = [
        message("track", event="E", message_id=f"b{i}", properties={"blob": "x" * 300_000})
        for i in range(4)
    ]
    rendered = render("logEvent", big)
    assert [o.messages for o in rendered.outgoing] == [(0, 1, 2), (3,)]
    assert all(len(o.request.body or b"") < 1_000_000 for o in rendered.outgoing)

    huge = message("track", event="E", properties={"blob": "x" * 1_000_000})
    rendered = render("logEvent", [huge])
    assert rendered.outgoing == []
    assert rendered.rejected[0][0] == "MESSAGE_REJECTED"


# --- logEventV2 and logPurchase --------------------------------------------------------------


def test_log_event_v2_sets_user_properties_with_operations(receiver: Receiver) -> None:
    track = message("track", event="Upgraded", context=WEB_CONTEXT, properties={"seats": 3})
    send(receiver, "logEventV2", [track], add={"seats": {"@path": "$.properties.seats"}})
    [event] = receiver.requests[0].json()["events"]
    assert event["user_properties"] == {
        "$setOnce": {
            "initial_referrer": "https://www.google.com/",
            "initial_utm_source": "newsletter",
            "initial_utm_medium": "email",
            "initial_utm_campaign": "spring-sale",
        },
        "$set": {
            "referrer": "https://www.google.com/",
            "utm_source": "newsletter",
            "utm_medium": "email",
            "utm_campaign": "spring-sale",
        },
        "$add": {"seats": 3},
    }


ORDER = {
    "order_id": "o-1",
    "revenue": 25,
    "currency": "USD",
    "products": [
        {"productId": "p1", "price": 10, "quantity": 2, "name": "Mug"},
        {"productId": "p2", "revenue": 5, "revenueType": "tip"},
    ],
}


def test_log_purchase_sends_the_order_and_one_event_per_product(receiver: Receiver) -> None:
    order = message("track", event="Order Completed", properties=ORDER)
    rendered = send(receiver, "logPurchase", [order, order], insert_id={"@path": "$.messageId"})
    assert [o.messages for o in rendered.outgoing] == [(0,), (1,)]  # one request per message
    events = receiver.requests[0].json()["events"]
    shared = {"user_id": "user-123", "device_id": "anon-456", "time": T0_MS}
    assert events == [  # no library: the message names none (library2 maps it)
        {
            **shared,
            "event_type": "Order Completed",
            "event_properties": ORDER,
            "insert_id": "msg-1",
            "revenue": 25,
            "revenueType": "Purchase",
        },
        {
            **shared,
            "event_type": "Product Purchased",
            "insert_id": "msg-1-2",
            "event_properties": {"productId": "p1", "price": 10, "quantity": 2},
        },
        {
            **shared,
            "event_type": "Product Purchased",
            "insert_id": "msg-1-3",
            "event_properties": {"productId": "p2", "revenue": 5, "revenueType": "tip"},
        },
    ]


def test_log_purchase_can_put_the_revenue_on_each_product() -> None:
    order = message("track", event="Order Completed", properties=ORDER)
    [outgoing] = render("logPurchase", [order], trackRevenuePerProduct=True).outgoing
    events = json.loads(outgoing.request.body or b"")["events"]
    revenue = [
        {k: e[k] for k in ("revenue", "price", "quantity", "productId", "revenueType") if k in e}
        for e in events
    ]
    assert revenue == [
        {},
        {"revenue": 20, "price": 10, "quantity": 2, "productId": "p1", "revenueType": "Purchase"},
        {"revenue": 5, "productId": "p2", "revenueType": "tip"},
    ]


# --- identifyUser ----------------------------------------------------------------------------


def test_identify_user_default_mapping_posts_a_form_to_the_identify_api(receiver: Receiver) -> None:
    identify = message(
        "identify",
        context=MOBILE_CONTEXT,
        traits={"email": "derek@example.com", "name": "Derek Sivers"},
    )
    send(receiver, "identifyUser", [identify])
    [request] = receiver.requests
    assert (request.method, request.path, request.query) == ("POST", "/identify", {})
    assert form(request) == {
        "api_key": API_KEY,
        "identification": [
            {
                "user_id": "user-123",
                "device_id": "2b6f0cc904d137be2e1730235f5664094b831186",
                "user_properties": {"email": "derek@example.com", "name": "Derek Sivers"},
                "app_version": "3.5.1",
                "platform": "iOS",
                **MOBILE_FIELDS,
                "library": "segment",
            }
        ],
    }


def test_identify_user_campaign_properties_win_and_options_are_sent(receiver: Receiver) -> None:
    first = message(
        "identify",
        user="u-1",
        anonymous=None,
        context=WEB_CONTEXT,
        traits={"plan": "pro", "$set": {"utm_source": "mine", "team": "a"}},
    )
    second = message("identify", user="u-2", anonymous=None, traits={"plan": "free"})
    unusable = message("identify", user="u", anonymous=None)
    rendered = send(
        receiver, "identifyUser", [first, second, unusable], min_id_length=3, paying=True
    )
    assert rendered.rejected[2][0] == "MESSAGE_REJECTED"
    [request] = receiver.requests  # the identifies of a claim share a request
    body = form(request)
    assert body["options"] == {"min_id_length": 3}
    one, two = body["identification"]
    assert one["user_properties"] == {
        "plan": "pro",
        "$set": {
            "team": "a",
            "utm_source": "newsletter",
            "utm_medium": "email",
            "utm_campaign": "spring-sale",
            "referrer": "https://www.google.com/",
        },
        "$setOnce": {
            "initial_utm_source": "newsletter",
            "initial_utm_medium": "email",
            "initial_utm_campaign": "spring-sale",
            "initial_referrer": "https://www.google.com/",
        },
    }
    assert (one["platform"], one["paying"]) == ("Web", True)
    assert two == {
        "user_id": "u-2",
        "user_properties": {"plan": "free"},
        "paying": True,
        "library": "segment",
    }


# --- groupIdentifyUser -----------------------------------------------------------------------

GROUP_FIELDS: dict[str, Any] = {"group_type": "Company", "group_value": {"@path": "$.groupId"}}


def test_group_identify_user_sets_group_properties_and_associates_the_user(
    receiver: Receiver,
) -> None:
    group = message(
        "group", groupId="acme-inc", anonymous=None, traits={"name": "Acme, Inc.", "employees": 120}
    )
    rendered = send(
        receiver, "groupIdentifyUser", [group], trigger='type = "group"', **GROUP_FIELDS
    )
    assert [o.messages for o in rendered.outgoing] == [(0,), (0,)]
    association, properties = receiver.requests
    assert (association.method, association.path) == ("POST", "/identify")
    assert form(association) == {
        "api_key": API_KEY,
        "identification": [
            {
                "user_id": "user-123",
                "groups": {"Company": "acme-inc"},
                "user_properties": {"Company": "acme-inc"},
                "library": "segment",
                "time": T0_MS,
            }
        ],
    }
    assert (properties.method, properties.path) == ("POST", "/groupidentify")
    assert form(properties) == {
        "api_key": API_KEY,
        "identification": [
            {
                "group_properties": {"name": "Acme, Inc.", "employees": 120},
                "group_value": "acme-inc",
                "group_type": "Company",
                "library": "segment",
            }
        ],
    }


def test_group_identify_without_a_user_only_sets_the_group() -> None:
    group = message("group", groupId="acme-inc", user=None, anonymous=None)
    rendered = render("groupIdentifyUser", [group], **GROUP_FIELDS)
    assert rendered.rejected == {}
    [outgoing] = rendered.outgoing
    assert outgoing.request.url.endswith("/groupidentify")


# --- settings, mappings on save, answers -----------------------------------------------------


def test_settings_and_catalog_entry() -> None:
    assert DEFINITION.name == "Actions Amplitude"
    assert DEFINITION.render is None
    assert DEFINITION.secrets == {"api_key", "secret_key"}
    assert set(DEFINITION.actions) == {
        "logEvent",
        "logEventV2",
        "logPurchase",
        "identifyUser",
        "groupIdentifyUser",
    }
    assert DEFINITION.actions["identifyUser"].default_trigger == 'type = "identify"'
    with pytest.raises(ValidationError):
        DEFINITION.parse_settings({})
    with pytest.raises(ValidationError):
        DEFINITION.parse_settings({"api_key": API_KEY, "min_id_length": 0})
    DEFINITION.parse_settings({"api_key": API_KEY, "secret_key": "s3cret"})
    track = message("track", event="E")
    identify = message("identify")
    urls = [
        (
            render("logEvent", [track], settings_=s).outgoing[0].request.url,
            render("identifyUser", [identify], settings_=s).outgoing[0].request.url,
        )
        for s in (
            settings(),
            settings(eu_residency=True),
            settings(endpoint="https://proxy.example.com/amplitude/"),
        )
    ]
    assert urls == [
        ("https://api2.amplitude.com/2/httpapi", "https://api2.amplitude.com/identify"),
        ("https://api.eu.amplitude.com/2/httpapi", "https://api.eu.amplitude.com/identify"),
        (
            "https://proxy.example.com/amplitude/2/httpapi",
            "https://proxy.example.com/amplitude/identify",
        ),
    ]


def test_default_mappings_need_nothing_but_a_trigger_and_an_action() -> None:
    saved = check_mappings(
        DEFINITION.actions,
        [
            {"name": n, "trigger": 'type = "track"', "action": n}
            for n in ("logEvent", "logEventV2", "logPurchase", "identifyUser")
        ],
    )
    assert [m.fields for m in saved] == [{}, {}, {}, {}]


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        (mapping("groupIdentifyUser", group_type="Company"), "mappings.0.fields", "group_value"),
        (mapping("logEvent", event_type=None), "mappings.0.fields", "event_type"),
        (mapping("logEvent", nosuch=1), "mappings.0.fields", "nosuch"),
        (mapping("logEvent", min_id_length="five"), "mappings.0.fields", "min_id_length"),
        (mapping("mapUser"), "mappings.0.action", "identifyUser"),
    ],
)
def test_mappings_are_checked_on_save(raw: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(ListError) as raised:
        check_mappings(DEFINITION.actions, [raw])
    assert raised.value.field == field
    assert words in str(raised.value)


def test_amplitudes_per_event_answer_is_judged_per_message() -> None:
    interpret = DEFINITION.interpret
    assert interpret is not None
    invalid = json.dumps(
        {
            "code": 400,
            "error": "Invalid field values on some events",
            "events_with_invalid_fields": {"time": [1]},
        }
    ).encode()
    assert interpret(Response(400, {}, invalid), 3) == ["RETRY", "400", "RETRY"]
    # A purchase's product event (index 2 of a one-message request) fails the request.
    assert interpret(Response(400, {}, invalid.replace(b"[1]", b"[2]")), 1) is None
    assert interpret(Response(200, {}, b"success"), 2) is None
    assert interpret(Response(400, {}, b"missing_identification"), 2) is None


# --- end to end ------------------------------------------------------------------------------


def test_one_track_matching_two_mappings_makes_two_requests(
    pipeline: Pipeline,  # noqa: F811 (the fixture)
    receiver: Receiver,
) -> None:
    pipeline.add(
        "amplitude",
        "amplitude-actions",
        settings=settings(receiver),
        mappings=[
            {
                "name": "Track Calls",
                "enabled": True,
                "trigger": 'type = "track"',
                "action": "logEvent",
            },
            {
                "name": "Users on orders",
                "enabled": True,
                "trigger": 'type = "track" and event = "Order Completed"',
                "action": "identifyUser",
                "fields": {"user_properties": {"@path": "$.context.traits"}},
            },
        ],
    )
    order = message(
        "track",
        event="Order Completed",
        message_id="order-1",
        properties={"order_id": "o-9", "total": 27.5},
        context={"traits": {"email": "jo@example.com"}},
    )
    pipeline.send(order)
    pipeline.deliver()
    by_path = {r.path: r for r in receiver.requests}
    assert sorted(by_path) == ["/2/httpapi", "/identify"]
    [event] = by_path["/2/httpapi"].json()["events"]
    assert (event["event_type"], event["user_id"], event["event_properties"]) == (
        "Order Completed",
        "user-123",
        {"order_id": "o-9", "total": 27.5},
    )
    assert form(by_path["/identify"])["identification"] == [
        {
            "user_id": "user-123",
            "device_id": "anon-456",
            "user_properties": {"email": "jo@example.com"},
            "library": "segment",
        }
    ]
