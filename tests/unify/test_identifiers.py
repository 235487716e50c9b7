"""The identifiers an event carries (§2.1, §2.2): A-UE-1, A-UE-2, A-UE-3, A-UE-4,
A-UE-5, A-UE-6, A-UE-7, A-UE-9."""

from __future__ import annotations

from typing import Any

import pytest

from headwater.unify.identifiers import Identifier, extract, key_variants
from headwater.unify.settings import (
    DEFAULT_IDENTIFIERS,
    SUGGESTED_BLOCKED,
    BlockedValue,
    IdentifierSetting,
    IdentitySettings,
)

DEFAULT = IdentitySettings()
PHONE = DEFAULT.with_identifier(IdentifierSetting(type="phone", key="phone_number"))


def ids(event: dict[str, Any], settings: IdentitySettings = DEFAULT) -> list[tuple[str, str]]:
    return [(i.type, i.value) for i in extract(event, settings).identifiers]


def test_a1_anonymous_id_and_ios_device() -> None:
    """A-UE-1: a track from an iPhone carries anonymous_id and ios.id, in priority order."""
    event = {
        "type": "track",
        "event": "App Opened",
        "anonymousId": "anon_123",
        "context": {"device": {"id": "ios_abc123", "type": "ios"}},
    }
    assert ids(event) == [("anonymous_id", "anon_123"), ("ios.id", "ios_abc123")]
    assert extract(event, DEFAULT).identifiers[0] == Identifier("users", "anonymous_id", "anon_123")


@pytest.mark.parametrize("kind", ["android", "ios"])
def test_a2_the_advertising_id_only_with_ad_tracking_enabled(kind: str) -> None:
    """A-UE-2: adTrackingEnabled false (or missing, or not a boolean) → no idfa; true → idfa."""
    device: dict[str, Any] = {"type": kind, "advertisingId": "X"}
    event = {"type": "track", "anonymousId": "a", "context": {"device": device}}
    for enabled in (False, None, "true", 1):
        device["adTrackingEnabled"] = enabled
        assert (f"{kind}.idfa", "X") not in ids(event)
    device["adTrackingEnabled"] = True
    assert (f"{kind}.idfa", "X") in ids(event)


def test_a3_push_tokens_by_device_type() -> None:
    """A-UE-3: context.device.token is ios.push_token on iOS and android.push_token on Android;
    a device of no known type gives neither."""

    def event(kind: str) -> dict[str, Any]:
        return {"type": "track", "userId": "u", "context": {"device": {"type": kind, "token": "T"}}}

    assert ("ios.push_token", "T") in ids(event("ios"))
    assert ("android.push_token", "T") in ids(event("android"))
    assert ("ios.push_token", "T") in ids(event("iOS"))  # Segment's SDKs differ in case
    assert {t for t, _ in ids(event("windows"))} == {"user_id"}


def test_a4_google_analytics_client_id() -> None:
    """A-UE-4: context.integrations["Google Analytics"].clientId (or the message's integrations
    object, where analytics.js's options put it) → ga_client_id."""
    in_context = {
        "type": "page",
        "anonymousId": "a",
        "context": {"integrations": {"Google Analytics": {"clientId": "GA1"}}},
    }
    assert ("ga_client_id", "GA1") in ids(in_context)
    in_options = {
        "type": "page",
        "anonymousId": "a",
        "integrations": {"Google Analytics": {"clientId": "GA2"}},
    }
    assert ("ga_client_id", "GA2") in ids(in_options)
    assert not any(t == "ga_client_id" for t, _ in ids({"type": "page", "anonymousId": "a"}))


def test_a5_email_from_traits_context_traits_and_properties() -> None:
    """A-UE-5: identify traits.email and track context.traits.email → email (and properties.email,
    §21 #1); the same value from two places is one identifier."""
    identify = {"type": "identify", "userId": "u", "traits": {"email": "a@b.com"}}
    assert ids(identify) == [("user_id", "u"), ("email", "a@b.com")]
    track = {"type": "track", "userId": "u", "context": {"traits": {"email": "a@b.com"}}}
    assert ids(track) == [("user_id", "u"), ("email", "a@b.com")]
    both = {
        "type": "track",
        "userId": "u",
        "context": {"traits": {"email": "a@b.com"}},
        "properties": {"email": "a@b.com"},
    }
    assert ids(both) == [("user_id", "u"), ("email", "a@b.com")]


def test_a5_a_group_calls_traits_are_the_accounts() -> None:
    """A group call's traits.email is the company's address, not the user's."""
    group = {
        "type": "group",
        "userId": "u",
        "groupId": "g1",
        "traits": {"email": "team@company.com"},
        "context": {"traits": {"email": "jane@company.com"}},
    }
    assert extract(group, DEFAULT).identifiers == (
        Identifier("users", "user_id", "u"),
        Identifier("users", "email", "jane@company.com"),
        Identifier("accounts", "group_id", "g1"),
    )


def test_a6_a_custom_identifier_from_every_place() -> None:
    """A-UE-6: phone (key phone_number) from context.externalIds, properties, context.traits,
    traits, in snake_case or camelCase."""
    value = "123-456-7890"
    external = {
        "type": "track",
        "userId": "u",
        "context": {
            "externalIds": [
                {"id": value, "type": "phone", "collection": "users", "encoding": "none"}
            ]
        },
    }
    assert ("phone", value) in ids(external, PHONE)
    for place in ("properties", "traits"):
        for key in ("phone_number", "phoneNumber"):
            assert ("phone", value) in ids(
                {"type": "identify", "userId": "u", place: {key: value}}, PHONE
            )
            event = {"type": "track", "userId": "u", "context": {"traits": {key: value}}}
            assert ("phone", value) in ids(event, PHONE)
    # The key is phone_number: a bare "phone" property is another key.
    assert ("phone", value) not in ids(
        {"type": "track", "userId": "u", "properties": {"phone": value}}, PHONE
    )
    bare = DEFAULT.with_identifier(IdentifierSetting(type="phone"))
    assert ("phone", value) in ids(
        {"type": "track", "userId": "u", "properties": {"phone": value}}, bare
    )


def test_a6_an_unconfigured_type_is_not_promoted() -> None:
    """Only configured identifiers count (§2.2: "As long as you've configured custom
    externalIDs…")."""
    event = {
        "type": "track",
        "userId": "u",
        "context": {
            "externalIds": [{"id": "1", "type": "phone", "collection": "users", "encoding": "none"}]
        },
        "properties": {"phone": "2"},
    }
    extraction = extract(event, DEFAULT)
    assert [i.type for i in extraction.identifiers] == ["user_id"]
    assert extraction.rejected == 0


@pytest.mark.parametrize(
    "element",
    [
        {"id": "1", "type": "phone", "collection": "users"},  # no encoding
        {"id": "1", "type": "phone", "encoding": "none"},  # no collection
        {"type": "phone", "collection": "users", "encoding": "none"},  # no id
        {"id": "1", "collection": "users", "encoding": "none"},  # no type
        {"id": "1", "type": "Phone", "collection": "users", "encoding": "none"},  # not lowercase
        {"id": "1", "type": "phone", "collection": "people", "encoding": "none"},
        {"id": "1", "type": "phone", "collection": "users", "encoding": "base64"},
        {"id": "", "type": "phone", "collection": "users", "encoding": "none"},
        {"id": None, "type": "phone", "collection": "users", "encoding": "none"},
        "phone:1",
    ],
)
def test_a7_an_external_id_without_its_four_fields_is_rejected(element: object) -> None:
    """A-UE-7: an element missing encoding or collection (or any of the four) is not promoted."""
    event = {"type": "track", "userId": "u", "context": {"externalIds": [element]}}
    extraction = extract(event, PHONE)
    assert [i.type for i in extraction.identifiers] == ["user_id"]
    assert extraction.rejected == 1


def test_external_ids_serve_built_in_types_and_accounts_only_on_group_calls() -> None:
    settings = DEFAULT.with_identifier(IdentifierSetting(type="crm_id", collection="accounts"))
    crm = {"id": 42, "type": "crm_id", "collection": "accounts", "encoding": "none"}
    email = {"id": "a@b.com", "type": "email", "collection": "users", "encoding": "none"}
    wrong = {"id": "x", "type": "email", "collection": "accounts", "encoding": "none"}
    track = {"type": "track", "userId": "u", "context": {"externalIds": [crm, email, wrong]}}
    assert extract(track, settings).identifiers == (
        Identifier("users", "user_id", "u"),
        Identifier("users", "email", "a@b.com"),
    )
    group = {**track, "type": "group", "groupId": "g", "traits": {"crmId": "43"}}
    assert [i for i in extract(group, settings).identifiers if i.collection == "accounts"] == [
        Identifier("accounts", "crm_id", "43"),  # crm_id ranks before group_id (alphabetical)
        Identifier("accounts", "crm_id", "42"),
        Identifier("accounts", "group_id", "g"),
    ]


def test_group_id_only_from_group_calls() -> None:
    assert ids({"type": "track", "userId": "u", "groupId": "g"}) == [("user_id", "u")]
    assert ids({"type": "track", "userId": "u", "context": {"groupId": "g"}}) == [("user_id", "u")]
    assert ("group_id", "g") in ids({"type": "group", "userId": "u", "groupId": "g"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("x", "x"),
        (" x ", " x "),
        ("Jane@Example.COM", "Jane@Example.COM"),
        (42, "42"),
        (42.0, "42"),
        (1.5, "1.5"),
        ("", None),
        (None, None),
        (True, None),
        (False, None),
        ({"a": 1}, None),
        (["a"], None),
        (float("nan"), None),
    ],
)
def test_values_are_strings_or_numbers_kept_as_sent(raw: object, expected: str | None) -> None:
    event = {"type": "identify", "userId": "u", "traits": {"email": raw}}
    emails = [v for t, v in ids(event) if t == "email"]
    assert emails == ([] if expected is None else [expected])


def test_only_configured_built_in_types_are_read() -> None:
    settings = IdentitySettings(
        identifiers=tuple(s for s in DEFAULT_IDENTIFIERS if s.type != "anonymous_id")
    )
    event = {"type": "track", "anonymousId": "a", "userId": "u"}
    assert ids(event, settings) == [("user_id", "u")]
    optional = DEFAULT.with_identifier(IdentifierSetting(type="braze_id"))
    braze = {"type": "track", "userId": "u", "context": {"Braze": {"braze_id": "b1"}}}
    assert ("braze_id", "b1") in ids(braze, optional)
    assert ("braze_id", "b1") not in ids(braze)


@pytest.mark.parametrize("user_id", ["0", "000", "0-0", "---", "-1", "null", "anonymous"])
def test_a9_blocked_values_are_left_out_and_reported(user_id: str) -> None:
    """A-UE-9: with the suggested values blocked, these userIds promote no user_id; the event keeps
    them (extraction never changes the event)."""
    settings = DEFAULT.with_identifier(
        IdentifierSetting(type="user_id", limit=1, priority=1, blocked=SUGGESTED_BLOCKED)
    )
    event = {"type": "track", "userId": user_id, "anonymousId": "a1"}
    extraction = extract(event, settings)
    assert extraction.identifiers == (Identifier("users", "anonymous_id", "a1"),)
    assert extraction.blocked == (Identifier("users", "user_id", user_id),)
    assert event["userId"] == user_id


def test_a9_a_value_the_space_adds_is_blocked() -> None:
    settings = DEFAULT.with_identifier(
        IdentifierSetting(
            type="user_id",
            limit=1,
            priority=1,
            blocked=(*SUGGESTED_BLOCKED, BlockedValue(value="abc123")),
        )
    )
    assert extract({"type": "track", "userId": "abc123"}, settings).blocked
    assert not extract({"type": "track", "userId": "abc123"}, DEFAULT).blocked


def test_key_variants() -> None:
    assert key_variants("phone_number") == ("phone_number", "phoneNumber")
    assert key_variants("phoneNumber") == ("phoneNumber", "phone_number")
    assert key_variants("phone") == ("phone",)


def test_hostile_shapes_give_no_identifiers_and_no_error() -> None:
    for event in (
        {"type": "track", "context": "x", "traits": [], "properties": 3},
        {"type": "track", "context": {"device": "ios", "externalIds": {"id": 1}}},
        {"type": "track", "context": {"device": {"type": 5, "id": "d"}, "traits": None}},
        {"type": "group", "groupId": ["g"], "traits": "t"},
        {},
    ):
        assert extract(event, PHONE).identifiers == ()
