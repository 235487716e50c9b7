"""Mixpanel (Actions): each action's requests against Mixpanel's Ingestion API, Segment's default
mappings, checks on save, and one event through two mappings end to end."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from headwater.delivery.engine import DELIVERED, FAILED_DELIVERY
from headwater.destinations.actions import Mappings, check_mappings
from headwater.destinations.definition import Rendered, Response
from headwater.destinations.registry import get
from headwater.errors import ListError
from tests.delivery.conftest import Pipeline, pipeline  # noqa: F401 (the fixture)
from tests.destinations.test_mixpanel import SECRET, T0, T0_MS, TOKEN, basic
from tests.support.receiver import Answer, Received, Receiver

TYPE = "mixpanel-actions"
ANONYMOUS = "507f191e-810c-4f6a-b0a2-2ad7c4b5c7a4"
CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
WEB_CONTEXT = {
    "ip": "8.8.8.8",
    "userAgent": CHROME,
    "locale": "en-US",
    "library": {"name": "analytics.js", "version": "next-1.64.0"},
    "page": {"url": "https://example.com/p/1", "referrer": "https://google.com/"},
    "campaign": {
        "name": "Spring",
        "source": "Newsletter",
        "medium": "email",
        "term": "shoes",
        "content": "image link",
    },
    "screen": {"width": 1440, "height": 900, "density": 2},
}


def settings(receiver: Receiver | None = None, **extra: Any) -> dict[str, Any]:
    found: dict[str, Any] = {"project_token": TOKEN, "api_secret": SECRET, **extra}
    if receiver is not None:
        found["endpoint"] = receiver.url
    return found


def event(kind: str, *, message_id: str = "msg-1", **extra: Any) -> dict[str, Any]:
    return {
        "type": kind,
        "messageId": message_id,
        "timestamp": T0,
        "receivedAt": "2024-03-05T10:00:00.100Z",
        "context": {},
        "integrations": {},
        **extra,
    }


def render(
    action: str,
    messages: Sequence[dict[str, Any]],
    raw_settings: Mapping[str, Any],
    fields: Mapping[str, Any] | None = None,
) -> Rendered:
    """The messages through one saved mapping (``fields`` over the defaults) of the action."""
    definition = get(TYPE)
    mapping = {
        "name": "m",
        "enabled": True,
        "trigger": 'type = "track"',
        "action": action,
        "fields": dict(fields or {}),
    }
    saved = check_mappings(definition.actions, [mapping], new_id=lambda: "m1")
    return Mappings.compile(definition.actions, saved).render(
        ["m1"] * len(messages), messages, definition.parse_settings(raw_settings)
    )


def send(receiver: Receiver, rendered: Rendered) -> list[Received]:
    with httpx.Client(timeout=10) as client:
        for outgoing in rendered.outgoing:
            r = outgoing.request
            client.request(r.method, r.url, headers=dict(r.headers), content=r.body)
    return receiver.requests


def form_data(request: Received) -> Any:
    """The JSON of a ``data=`` form post."""
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in request.headers
    [data] = request.form()["data"]
    return json.loads(data)


# --- trackEvent -------------------------------------------------------------------------------


def test_track_event_with_the_default_mapping(receiver: Receiver) -> None:
    track = event(
        "track",
        event="Product Viewed",
        userId="019mr8mf4r",
        anonymousId=ANONYMOUS,
        context=WEB_CONTEXT,
        properties={
            "product_id": "p1",
            "price": 9.99,
            "time": 1,
            "distinct_id": "x",
            "$current_url": "https://example.com/mine",
        },
    )
    send(receiver, render("trackEvent", [track], settings(receiver)))
    [request] = receiver.requests
    assert (request.method, request.path, request.query) == ("POST", "/import", {"strict": ["1"]})
    assert request.headers["content-type"] == "application/json"
    assert request.headers["authorization"] == basic(SECRET)
    assert request.json() == [
        {
            "event": "Product Viewed",
            "properties": {
                "time": T0_MS,
                "ip": "8.8.8.8",
                "id": "019mr8mf4r",
                "$anon_id": ANONYMOUS,
                "distinct_id": "019mr8mf4r",
                "$browser": "Chrome",
                "$browser_version": "120.0.0.0",
                "$current_url": "https://example.com/mine",  # a mapped property wins unless reserved
                "$device_id": ANONYMOUS,
                "$identified_id": "019mr8mf4r",
                "$insert_id": "msg-1",
                "$lib_version": "next-1.64.0",
                "$locale": "en-US",
                "$referrer": "https://google.com/",
                "$screen_height": 900,
                "$screen_width": 1440,
                "$screen_density": 2,
                "$source": "segment",
                "$user_id": "019mr8mf4r",
                "mp_lib": "Segment Actions: analytics.js",
                "utm_campaign": "Spring",
                "utm_content": "image link",
                "utm_medium": "email",
                "utm_source": "Newsletter",
                "utm_term": "shoes",
                "event_original_name": "Product Viewed",
                "product_id": "p1",
                "price": 9.99,
            },
        }
    ]


def test_track_event_mobile_context_and_project_token_auth(receiver: Receiver) -> None:
    context = {
        "app": {"name": "Shop", "version": "3.1", "build": "310", "namespace": "com.shop"},
        "os": {"name": "iOS", "version": "17.1"},
        "device": {
            "manufacturer": "Apple",
            "model": "iPhone15,2",
            "type": "ios",
            "name": "Jo's phone",
            "advertisingId": "ad-1",
            "adTrackingEnabled": True,
        },
        "network": {"wifi": True, "cellular": False, "carrier": "Orange"},
        "location": {"country": "France"},
        "timezone": "Europe/Paris",
    }
    track = event("track", event="Opened", anonymousId=ANONYMOUS, context=context)
    send(
        receiver,
        render(
            "trackEvent",
            [track],
            {"project_token": TOKEN, "endpoint": receiver.url, "source_name": "ios-app"},
        ),
    )
    [request] = receiver.requests
    assert request.headers["authorization"] == basic(TOKEN)
    properties = request.json()[0]["properties"]
    assert properties == {
        "time": T0_MS,
        "id": ANONYMOUS,
        "$anon_id": ANONYMOUS,
        "distinct_id": ANONYMOUS,
        "$app_build_number": "310",
        "$app_version_string": "3.1",
        "$app_namespace": "com.shop",
        "$app_name": "Shop",
        "$cellular_enabled": False,
        "$carrier": "Orange",
        "$device": "Jo's phone",
        "$device_id": ANONYMOUS,
        "$device_type": "ios",
        "$device_name": "Jo's phone",
        "$insert_id": "msg-1",
        "$ios_ifa": "ad-1",
        "$manufacturer": "Apple",
        "$model": "iPhone15,2",
        "$os": "iOS",
        "$os_version": "17.1",
        "$source": "segment",
        "$wifi_enabled": True,
        "mp_country_code": "France",
        "segment_source_name": "ios-app",
        "advertising_id": "ad-1",
        "ad_tracking_enabled": "true",
        "timezone": "Europe/Paris",
        "event_original_name": "Opened",
    }


def test_page_calls_with_segment_preset_event_name(receiver: Receiver) -> None:
    page = event("page", name="Pricing", userId="u1", properties={"path": "/pricing"})
    send(
        receiver,
        render(
            "trackEvent", [page], settings(receiver), {"event": {"@template": "Viewed {{name}}"}}
        ),
    )
    [record] = receiver.requests[0].json()
    assert record["event"] == "Viewed Pricing"
    assert record["properties"]["event_original_name"] == "Pricing"
    assert record["properties"]["path"] == "/pricing"


def test_track_event_batches() -> None:
    tracks = [event("track", event="E", userId="u", message_id=f"m{i}") for i in range(5)]
    assert [o.messages for o in render("trackEvent", tracks, settings()).outgoing] == [
        (0, 1, 2, 3, 4)
    ]
    assert [
        o.messages for o in render("trackEvent", tracks, settings(), {"batch_size": 2}).outgoing
    ] == [(0, 1), (2, 3), (4,)]
    assert [
        o.messages
        for o in render("trackEvent", tracks, settings(), {"enable_batching": False}).outgoing
    ] == [(0,), (1,), (2,), (3,), (4,)]
    many = [event("track", event="E", userId="u", message_id=f"n{i}") for i in range(2001)]
    rendered = render("trackEvent", many, settings(), {"batch_size": 5000})
    assert [len(o.messages) for o in rendered.outgoing] == [2000, 1]


def test_events_mixpanel_would_refuse_for_size_are_rejected() -> None:
    huge = event("track", event="E", userId="u", properties={"blob": "x" * 1_000_000})
    fine = event("track", event="E", userId="u", message_id="m2")
    rendered = render("trackEvent", [huge, fine], settings())
    assert list(rendered.rejected) == [0] and rendered.rejected[0][0] == "MESSAGE_REJECTED"
    assert [o.messages for o in rendered.outgoing] == [(1,)]
    unnamed = render("trackEvent", [event("track", userId="u")], settings())
    assert unnamed.rejected == {
        0: ("MESSAGE_REJECTED", "event: is required but the mapping gave nothing")
    }


def test_a_missing_insert_id_is_the_same_on_every_attempt() -> None:
    track = event("track", event="E", userId="u")
    fields = {"insert_id": {"@path": "$.properties.nothing"}}

    def insert_id() -> str:
        body = render("trackEvent", [track], settings(), fields).outgoing[0].request.body
        value = json.loads(body or b"")[0]["properties"]["$insert_id"]
        assert isinstance(value, str)
        return value

    first = insert_id()
    assert len(first) == 32 and first == insert_id()  # Mixpanel takes up to 36 characters


# --- trackPurchase ----------------------------------------------------------------------------

ORDER = event(
    "track",
    event="Order Completed",
    userId="u1",
    properties={
        "order_id": "o-1",
        "checkout_id": "c-1",
        "total": 27.5,
        "revenue": 25,
        "currency": "USD",
        "products": [
            {"product_id": "p1", "sku": "S-1", "price": 10, "quantity": 2, "colour": "red"},
            {"product_id": "p2", "name": "Socks", "price": 7.5},
        ],
    },
)


def test_track_purchase_sends_the_order_and_each_product(receiver: Receiver) -> None:
    rendered = render("trackPurchase", [ORDER], settings(receiver))
    assert [o.messages for o in rendered.outgoing] == [(0, 0, 0)]  # one position per record
    send(receiver, rendered)
    [request] = receiver.requests
    assert (request.path, request.query) == ("/import", {"strict": ["1"]})
    order, first, second = request.json()
    assert order["event"] == "Order Completed"
    assert order["properties"]["total"] == 27.5
    common = {
        "id": "u1",
        "distinct_id": "u1",
        "$identified_id": "u1",
        "$user_id": "u1",
        "$source": "segment",
        "event_original_name": "Order Completed",
        "order_id": "o-1",
        "checkout_id": "c-1",
    }
    assert first == {
        "event": "Product Purchased",
        "properties": {
            **common,
            "time": T0_MS - 1,
            "$insert_id": "0msg-1",
            "product_id": "p1",
            "sku": "S-1",
            "price": 10,
            "quantity": 2,
        },
    }
    assert second == {
        "event": "Product Purchased",
        "properties": {
            **common,
            "time": T0_MS - 2,
            "$insert_id": "1msg-1",
            "product_id": "p2",
            "name": "Socks",
            "price": 7.5,
        },
    }
    only_order = render(
        "trackPurchase", [ORDER], settings(), {"generatePurchaseEventPerProduct": False}
    )
    assert [o.messages for o in only_order.outgoing] == [(0,)]


def test_a_failed_record_fails_the_message_it_belongs_to(receiver: Receiver) -> None:
    rendered = render("trackPurchase", [ORDER, {**ORDER, "messageId": "msg-2"}], settings())
    [outgoing] = rendered.outgoing
    assert outgoing.messages == (0, 0, 0, 1, 1, 1)
    interpret = get(TYPE).interpret
    assert interpret is not None and interpret is get("mixpanel").interpret
    receiver.answer(
        Answer(
            status=400,
            body=json.dumps(
                {
                    "code": 400,
                    "error": "some data points in the request failed validation",
                    "status": "Bad Request",
                    "num_records_imported": 5,
                    "failed_records": [
                        {
                            "index": 4,
                            "insert_id": "0msg-2",
                            "field": "properties.time",
                            "message": "'properties.time' is invalid",
                        }
                    ],
                }
            ).encode(),
        )
    )
    reply = httpx.post(receiver.url + "/import", json=[])
    verdicts = interpret(Response(reply.status_code, dict(reply.headers), reply.content), 6)
    assert verdicts is not None
    assert {p for p, v in zip(outgoing.messages, verdicts, strict=True) if v} == {1}


# --- identifyUser -----------------------------------------------------------------------------


def test_identify_user_links_the_ids_and_sets_the_profile(receiver: Receiver) -> None:
    identify = event(
        "identify",
        userId="019mr8mf4r",
        anonymousId=ANONYMOUS,
        context={"ip": "1.2.3.4"},
        traits={
            "firstName": "Michael",
            "lastName": "Bolton",
            "plan": "Enterprise",
            "email": "mbolton@example.com",
            "createdAt": "2024-01-01",
            "username": "mb",
            "phone": "+1 555",
            "friends": 42,
        },
    )
    send(receiver, render("identifyUser", [identify], settings(receiver)))
    track, engage = receiver.requests
    assert (track.method, track.path, track.query) == ("POST", "/track", {"verbose": ["1"]})
    assert form_data(track) == {
        "event": "$identify",
        "properties": {"$identified_id": "019mr8mf4r", "$anon_id": ANONYMOUS, "token": TOKEN},
    }
    assert (engage.method, engage.path) == ("POST", "/engage")
    assert engage.query == {"verbose": ["1"], "ip": ["0"]}
    assert form_data(engage) == {
        "$token": TOKEN,
        "$distinct_id": "019mr8mf4r",
        "$ip": "1.2.3.4",
        "$set": {
            "plan": "Enterprise",
            "friends": 42,
            "$created": "2024-01-01",
            "$email": "mbolton@example.com",
            "$first_name": "Michael",
            "$last_name": "Bolton",
            "$name": "Michael Bolton",
            "$username": "mb",
            "$phone": "+1 555",
        },
    }


def test_identify_user_with_one_id_or_no_traits(receiver: Receiver) -> None:
    anonymous = event("identify", anonymousId=ANONYMOUS, traits={"name": "Ian"})
    known = event("identify", userId="u1", anonymousId=ANONYMOUS, message_id="m2")
    send(receiver, render("identifyUser", [anonymous, known], settings(receiver)))
    engage, track = receiver.requests
    assert form_data(engage) == {
        "$token": TOKEN,
        "$distinct_id": ANONYMOUS,
        "$set": {"$name": "Ian"},
    }
    assert form_data(track)["event"] == "$identify"
    nobody = render("identifyUser", [event("identify", traits={"a": 1})], settings())
    assert list(nobody.rejected) == [0] and not nobody.outgoing


# --- groupIdentifyUser ------------------------------------------------------------------------


def test_group_identify_user(receiver: Receiver) -> None:
    group = event(
        "group",
        userId="u1",
        groupId="0e8c78ea9d97a7b8185e8632",
        traits={"name": "Initech", "employees": 329, "created_at": "2020-01-01"},
    )
    keyed = event(
        "group",
        userId="u1",
        groupId="0e8c78ea9d97a7b8185e8632",
        message_id="m2",
        traits={"company": "initech", "plan": "enterprise"},
    )
    send(receiver, render("groupIdentifyUser", [group], settings(receiver)))
    send(
        receiver, render("groupIdentifyUser", [keyed], settings(receiver), {"group_key": "company"})
    )
    default, custom = receiver.requests
    assert (default.method, default.path, default.query) == ("POST", "/groups", {"verbose": ["1"]})
    assert form_data(default) == {
        "$token": TOKEN,
        "$group_key": "$group_id",
        "$group_id": "0e8c78ea9d97a7b8185e8632",
        "$set": {"employees": 329, "$name": "Initech", "$created": "2020-01-01"},
    }
    # A trait named like the group key gives the group ID (the classic destination's way).
    assert form_data(custom) == {
        "$token": TOKEN,
        "$group_key": "company",
        "$group_id": "initech",
        "$set": {"company": "initech", "plan": "enterprise"},
    }
    no_traits = render("groupIdentifyUser", [event("group", groupId="g")], settings())
    assert list(no_traits.rejected) == [0] and not no_traits.outgoing


# --- alias ------------------------------------------------------------------------------------


def test_alias_creates_an_alias(receiver: Receiver) -> None:
    alias = event("alias", userId="12345", previousId="92fh49fqh9849hf")
    send(receiver, render("alias", [alias], settings(receiver, source_name="web")))
    [request] = receiver.requests
    assert (request.method, request.path, request.query) == ("POST", "/track", {"verbose": ["1"]})
    assert form_data(request) == {
        "event": "$create_alias",
        "properties": {
            "distinct_id": "92fh49fqh9849hf",
            "alias": "12345",
            "token": TOKEN,
            "segment_source_name": "web",
        },
    }
    no_previous = render("alias", [event("alias", userId="12345")], settings())
    assert list(no_previous.rejected) == [0] and not no_previous.outgoing


# --- mappings and settings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"action": "trackEvent", "fields": {"event": ""}}, "event: is required"),
        ({"action": "groupIdentifyUser", "fields": {"group_id": None}}, "group_id: is required"),
        (
            {"action": "trackEvent", "fields": {"batch_size": "many"}},
            "batch_size: should be a number",
        ),
        ({"action": "identifyUser", "fields": {"traits": "plan"}}, "traits: should be an object"),
        (
            {"action": "alias", "fields": {"previous_id": {"@path": "$.previousId"}}},
            "previous_id: is not a field",
        ),
        ({"action": "incrementProperties"}, "unknown action"),
    ],
)
def test_mappings_are_checked_on_save(mapping: dict[str, Any], message: str) -> None:
    actions = get(TYPE).actions
    with pytest.raises(ListError, match=message) as raised:
        check_mappings(actions, [{"name": "m", "trigger": 'type = "track"', **mapping}])
    assert raised.value.field.startswith("mappings.0.")


def test_every_action_takes_segment_default_mapping() -> None:
    definition = get(TYPE)
    assert definition.name == "Mixpanel (Actions)"
    assert list(definition.actions) == [
        "trackEvent",
        "trackPurchase",
        "identifyUser",
        "groupIdentifyUser",
        "alias",
    ]
    saved = check_mappings(
        definition.actions,
        [
            {"name": a, "trigger": action.default_trigger or 'type = "alias"', "action": a}
            for a, action in definition.actions.items()
        ],
    )
    assert [m.fields for m in saved] == [{}] * 5
    assert {
        a: [n for n, f in action.fields.items() if f.required]
        for a, action in definition.actions.items()
    } == {
        "trackEvent": ["event"],
        "trackPurchase": ["event"],
        "identifyUser": [],
        "groupIdentifyUser": ["group_id"],
        "alias": [],
    }


def test_settings() -> None:
    definition = get(TYPE)
    assert definition.secrets == {"api_secret"}
    with pytest.raises(ValidationError):
        definition.parse_settings({"api_secret": SECRET})
    with pytest.raises(ValidationError):
        definition.parse_settings({"project_token": TOKEN, "api_region": "EU"})
    eu = render(
        "alias",
        [event("alias", userId="a", previousId="b")],
        settings(endpoint="https://api-eu.mixpanel.com/"),
    )
    assert eu.outgoing[0].request.url == "https://api-eu.mixpanel.com/track?verbose=1"


# --- end to end -------------------------------------------------------------------------------


def test_one_identify_through_two_mappings(
    pipeline: Pipeline,  # noqa: F811 (the imported fixture)
    receiver: Receiver,
) -> None:
    mixpanel = pipeline.add(
        "mixpanel",
        TYPE,
        settings=settings(receiver),
        mappings=[
            {
                "name": "Identify Calls",
                "enabled": True,
                "trigger": 'type = "identify"',
                "action": "identifyUser",
            },
            {
                "name": "Identify as event",
                "enabled": True,
                "trigger": 'type = "identify"',
                "action": "trackEvent",
                "fields": {"event": "Identified", "event_properties": {"@path": "$.traits"}},
            },
        ],
    )
    pipeline.send(
        {
            "type": "identify",
            "userId": "u-42",
            "messageId": "id-1",
            "traits": {"email": "jo@example.com"},
        }
    )
    pipeline.deliver()
    engage, imported = sorted(receiver.requests, key=lambda r: r.path)
    assert (engage.path, imported.path) == ("/engage", "/import")
    assert form_data(engage) == {
        "$token": TOKEN,
        "$distinct_id": "u-42",
        "$set": {"$email": "jo@example.com"},
    }
    [record] = imported.json()
    assert record["event"] == "Identified"
    assert record["properties"]["email"] == "jo@example.com"
    assert record["properties"]["$insert_id"] == "id-1"
    assert pipeline.totals(mixpanel) == {(DELIVERED, ""): 2}


def test_a_refused_event_fails_alone(
    pipeline: Pipeline,  # noqa: F811 (the imported fixture)
    receiver: Receiver,
) -> None:
    mixpanel = pipeline.add(
        "mixpanel",
        TYPE,
        settings=settings(receiver),
        mappings=[
            {
                "name": "Track Calls",
                "enabled": True,
                "trigger": 'type = "track"',
                "action": "trackEvent",
            }
        ],
    )
    receiver.answer(
        Answer(
            status=400,
            body=json.dumps(
                {
                    "code": 400,
                    "status": "Bad Request",
                    "num_records_imported": 1,
                    "failed_records": [
                        {
                            "index": 1,
                            "insert_id": "t-2",
                            "field": "properties.time",
                            "message": "'properties.time' is invalid",
                        }
                    ],
                }
            ).encode(),
        )
    )
    pipeline.send(
        *({"type": "track", "event": "E", "userId": "u", "messageId": f"t-{i}"} for i in (1, 2))
    )
    pipeline.deliver()
    assert [r.path for r in receiver.requests] == ["/import"]
    assert pipeline.totals(mixpanel) == {
        (DELIVERED, ""): 1,
        (FAILED_DELIVERY, "errors.discarded.400"): 1,
    }
