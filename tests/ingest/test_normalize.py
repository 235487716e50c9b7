"""Per-message validation and enrichment: Segment's ingest rules, one function."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from headwater import reasons
from headwater.ingest.normalize import (
    MOBILE_LIBRARIES,
    Discard,
    RequestInfo,
    normalize,
)
from headwater.timestamps import format_timestamp, parse_timestamp

# The server's clock in the Spec's worked example (/spec/track/).
RECEIVED = datetime(2015, 12, 12, 19, 11, 1, 266000, tzinfo=UTC)
RECEIVED_ISO = "2015-12-12T19:11:01.266Z"
CLIENT_IP = "203.0.113.7"
AJS = {"library": {"name": "analytics.js", "version": "2.11.1"}}


def request(
    *, received_at: datetime = RECEIVED, client_ip: str | None = CLIENT_IP, **batch: Any
) -> RequestInfo:
    return RequestInfo(
        received_at=received_at,
        received_at_iso=format_timestamp(received_at),
        client_ip=client_ip,
        **batch,
    )


def accepted(
    item: object, route_type: str | None = "track", req: RequestInfo | None = None
) -> dict[str, Any]:
    result = normalize(item, req or request(), route_type=route_type)
    assert not isinstance(result, Discard), result
    return result


def dropped(
    item: object, route_type: str | None = "track", req: RequestInfo | None = None
) -> Discard:
    result = normalize(item, req or request(), route_type=route_type)
    assert isinstance(result, Discard), result
    assert result.code in reasons.ALL_CODES
    assert result.detail
    return result


def code(item: object, route_type: str | None = "track", req: RequestInfo | None = None) -> str:
    return dropped(item, route_type, req).code


def track(**fields: Any) -> dict[str, Any]:
    return {"type": "track", "userId": "u1", "event": "Clicked", **fields}


# --- shape and type ----------------------------------------------------------------------------


@pytest.mark.parametrize("item", [[], ["a"], "track", 7, None, True])
@pytest.mark.parametrize("route_type", ["track", None])
def test_not_an_object_is_bad_request(item: object, route_type: str | None) -> None:
    assert code(item, route_type) == reasons.BAD_REQUEST


def test_edits_and_returns_the_given_dict() -> None:
    item = track()
    assert normalize(item, request(), route_type="track") is item


def test_write_key_is_removed_from_kept_and_dropped_messages() -> None:
    kept = accepted(track(writeKey="WK"))
    assert "writeKey" not in kept
    bad = {"writeKey": "WK", "event": "Clicked"}
    assert code(bad) == reasons.NO_USER_ANON_ID
    assert "writeKey" not in bad


def test_route_type_is_authoritative() -> None:
    assert accepted({"type": "identify", "userId": "u", "event": "E"}, "track")["type"] == "track"
    assert accepted({"userId": "u"}, "page")["type"] == "page"


@pytest.mark.parametrize("kind", ["identify", "track", "page", "screen", "group", "alias"])
def test_batch_items_of_each_type_are_accepted(kind: str) -> None:
    item = {"type": kind, "userId": "u", "event": "E", "groupId": "g", "previousId": "p"}
    assert accepted(item, None)["type"] == kind


@pytest.mark.parametrize("kind", [None, "", "Track", "TRACK", "event", "batch", 3, ["track"], {}])
def test_batch_item_without_a_valid_type_is_dropped(kind: object) -> None:
    item: dict[str, Any] = {"userId": "u", "event": "E"}
    if kind is not None:
        item["type"] = kind
    assert code(item, None) == reasons.INVALID_TYPE


def _item_of_size(size: int) -> dict[str, Any]:
    item = track(properties={"pad": ""})
    overhead = len(msgspec.json.encode(item))
    item["properties"]["pad"] = "x" * (size - overhead)
    assert len(msgspec.json.encode(item)) == size
    return item


def test_batch_item_of_exactly_32_kb_is_accepted() -> None:
    accepted(_item_of_size(32 * 1024), None)


def test_batch_item_over_32_kb_is_dropped() -> None:
    assert code(_item_of_size(32 * 1024 + 1), None) == reasons.MESSAGE_TOO_LARGE


def test_item_size_is_measured_without_the_write_key() -> None:
    item = _item_of_size(32 * 1024)
    item["writeKey"] = "k" * 64
    accepted(item, None)


def test_single_calls_are_not_size_checked_here() -> None:
    # The request-level 32 KB limit (HTTP 400) covers single calls before they get here.
    accepted(_item_of_size(40 * 1024), "track")


@pytest.mark.parametrize(
    ("field", "value"),
    [("context", "ctx"), ("context", [1]), ("integrations", "all"), ("integrations", [])],
)
def test_context_and_integrations_must_be_objects(field: str, value: object) -> None:
    assert code(track(**{field: value})) == reasons.BAD_REQUEST


def test_null_context_and_integrations_become_empty_objects() -> None:
    message = accepted(track(context=None, integrations=None), req=request(client_ip=None))
    assert message["context"] == {}
    assert message["integrations"] == {}


# --- identities (AC-007) -----------------------------------------------------------------------


def test_ac007_no_ids_is_no_user_anon_id() -> None:
    assert code({"type": "track", "event": "X"}) == reasons.NO_USER_ANON_ID


def test_null_ids_count_as_absent() -> None:
    assert code({"event": "X", "userId": None, "anonymousId": None}) == reasons.NO_USER_ANON_ID
    # /spec/best-practices-identify: an anonymous page with an explicit null userId.
    page = accepted({"userId": None, "anonymousId": "507f191e810c19729de860ea"}, "page")
    assert page["anonymousId"] == "507f191e810c19729de860ea"
    assert page["userId"] is None


def test_either_id_alone_is_enough() -> None:
    accepted({"event": "X", "userId": "u"})
    accepted({"event": "X", "anonymousId": "a"})


@pytest.mark.parametrize(
    ("value", "expected"),
    [(123, "123"), (0, "0"), (-5, "-5"), (12.0, "12"), (1.5, "1.5"), (2**70, str(2**70))],
)
def test_numeric_ids_become_strings(value: object, expected: str) -> None:
    assert accepted({"event": "X", "userId": value})["userId"] == expected
    assert accepted({"event": "X", "anonymousId": value})["anonymousId"] == expected


@pytest.mark.parametrize("value", ["", True, False, {}, {"id": 1}, [], ["u"]])
@pytest.mark.parametrize("field", ["userId", "anonymousId"])
def test_unusable_ids_are_id_not_string(field: str, value: object) -> None:
    assert code({"event": "X", field: value}) == reasons.ID_NOT_STRING


def test_a_bad_id_is_dropped_even_next_to_a_good_one() -> None:
    assert code({"event": "X", "userId": "u", "anonymousId": ""}) == reasons.ID_NOT_STRING
    assert code({"event": "X", "userId": {}, "anonymousId": "a"}) == reasons.ID_NOT_STRING


# --- track, properties, traits (AC-008, AC-009) ------------------------------------------------


@pytest.mark.parametrize("event", [None, ""])
def test_ac008_track_without_event_name(event: object) -> None:
    assert code({"userId": "u", "event": event}) == reasons.EVENT_NOT_DEFINED
    assert code({"userId": "u"}) == reasons.EVENT_NOT_DEFINED


@pytest.mark.parametrize("event", [123, 1.5, True, ["E"], {"name": "E"}])
def test_ac008_track_event_not_a_string(event: object) -> None:
    assert code({"userId": "u", "event": event}) == reasons.EVENT_NOT_STRING


def test_event_is_only_required_on_track() -> None:
    accepted({"userId": "u"}, "identify")


def test_ac009_identify_traits_not_an_object() -> None:
    assert code({"userId": "u", "traits": "vip"}, "identify") == reasons.TRAITS_NOT_OBJECT
    assert code({"userId": "u", "groupId": "g", "traits": [1]}, "group") == (
        reasons.TRAITS_NOT_OBJECT
    )


def test_traits_may_be_absent_or_null() -> None:
    accepted({"userId": "u"}, "identify")
    accepted({"userId": "u", "traits": None}, "identify")


def test_ac009_properties_not_an_object() -> None:
    assert code(track(properties=[1, 2])) == reasons.PROPERTIES_NOT_OBJECT
    assert code({"userId": "u", "properties": "x"}, "page") == reasons.PROPERTIES_NOT_OBJECT
    accepted(track(properties=None))


# --- page and screen (AC-010) ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["page", "screen"])
def test_ac010_name_and_category(kind: str) -> None:
    assert code({"userId": "u", "name": ""}, kind) == reasons.NAME_NOT_STRING
    assert code({"userId": "u", "name": 5}, kind) == reasons.NAME_NOT_STRING
    assert code({"userId": "u", "category": 5}, kind) == reasons.CATEGORY_NOT_STRING
    assert code({"userId": "u", "category": ""}, kind) == reasons.CATEGORY_NOT_STRING
    accepted({"userId": "u"}, kind)  # no name is fine
    accepted({"userId": "u", "name": None, "category": None}, kind)  # analytics.js sends nulls
    accepted({"userId": "u", "name": "Home", "category": "Docs"}, kind)


# --- group and alias ---------------------------------------------------------------------------


@pytest.mark.parametrize("group_id", [None, "", {}, True])
def test_group_needs_a_group_id(group_id: object) -> None:
    item: dict[str, Any] = {"userId": "u", "groupId": group_id}
    assert code(item, "group") == reasons.GROUP_ID_REQUIRED
    assert code({"userId": "u"}, "group") == reasons.GROUP_ID_REQUIRED


def test_numeric_group_id_becomes_a_string() -> None:
    assert accepted({"userId": "u", "groupId": 42}, "group")["groupId"] == "42"


@pytest.mark.parametrize("previous_id", [None, "", [], False])
def test_alias_needs_a_previous_id(previous_id: object) -> None:
    assert code({"userId": "u", "previousId": previous_id}, "alias") == (
        reasons.PREVIOUS_ID_REQUIRED
    )
    assert code({"userId": "u"}, "alias") == reasons.PREVIOUS_ID_REQUIRED


def test_numeric_previous_id_becomes_a_string() -> None:
    assert accepted({"userId": "u", "previousId": 7}, "alias")["previousId"] == "7"


# --- consent -----------------------------------------------------------------------------------

CONSENT = "Segment Consent Preference Updated"


def consent_event(context: dict[str, Any] | None) -> dict[str, Any]:
    item: dict[str, Any] = {"anonymousId": "a", "event": CONSENT}
    if context is not None:
        item["context"] = context
    return item


def test_consent_event_from_the_docs_is_accepted() -> None:
    # privacy/consent-management/consent-in-unify.
    item = {
        "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
        "type": "track",
        "event": CONSENT,
        "userId": "u123",
        "traits": {"email": "peter@example.com", "phone": "555-555-5555"},
        "timestamp": "2023-01-01T00:00:00.000Z",
        "context": {
            "consent": {
                "categoryPreferences": {
                    "Advertising": True,
                    "Analytics": False,
                    "Functional": True,
                    "DataSharing": False,
                }
            }
        },
    }
    message = accepted(item, None)
    assert message["context"]["consent"]["categoryPreferences"]["Advertising"] is True


@pytest.mark.parametrize(
    "context",
    [
        None,
        {},
        {"consent": None},
        {"consent": {}},
        {"consent": "yes"},
        {"consent": {"categoryPreferences": None}},
    ],
)
def test_consent_preferences_must_exist(context: dict[str, Any] | None) -> None:
    assert code(consent_event(context)) == reasons.CONSENT_CATEGORYPREFERENCES_SHOULD_EXIST


@pytest.mark.parametrize("preferences", [[], "Advertising", True, 1])
def test_consent_preferences_must_be_an_object(preferences: object) -> None:
    context = {"consent": {"categoryPreferences": preferences}}
    assert code(consent_event(context)) == reasons.CONSENT_CATEGORYPREFERENCES_SHOULD_BE_OBJECT


@pytest.mark.parametrize("value", ["true", 1, 0, None, {}])
def test_consent_preferences_must_be_booleans(value: object) -> None:
    context = {"consent": {"categoryPreferences": {"Advertising": True, "Analytics": value}}}
    assert code(consent_event(context)) == (
        reasons.CONSENT_CATEGORYPREFERENCES_FIELDS_SHOULD_BE_BOOL
    )


def test_empty_consent_preferences_are_accepted() -> None:
    accepted(consent_event({"consent": {"categoryPreferences": {}}}))


def test_consent_version_must_be_a_number_on_the_consent_event() -> None:
    preferences = {"categoryPreferences": {"Ads": True}}
    assert code(consent_event({"consent": {**preferences, "version": "2"}})) == (
        reasons.CONSENT_VERSION_SHOULD_BE_NUMBER
    )
    accepted(consent_event({"consent": {**preferences, "version": 2}}))
    accepted(consent_event({"consent": {**preferences, "version": 2.1}}))


def test_advertising_id_must_be_a_string_on_the_consent_event() -> None:
    context = {
        "consent": {"categoryPreferences": {"Ads": True}},
        "device": {"advertisingId": 12345},
    }
    assert code(consent_event(context)) == reasons.DEVICE_ADVERTISINGID_SHOULD_BE_STRING
    context["device"] = {"advertisingId": "7A3CBEA0-BDF5-11E4-8DFC-AA07A5B093DB"}
    accepted(consent_event(context))


def test_consent_checks_apply_only_to_the_consent_event() -> None:
    # Segment's table scopes these codes to "Segment Consent Preference" events.
    context = {
        "consent": {"categoryPreferences": {"Ads": "yes"}, "version": "2"},
        "device": {"advertisingId": 12345},
    }
    accepted(track(context=context))
    accepted({"userId": "u", "context": context}, "identify")


def test_consent_preferences_may_come_from_the_batch_context() -> None:
    req = request(batch_context={"consent": {"categoryPreferences": {"Ads": True}}})
    message = accepted({"type": "track", "anonymousId": "a", "event": CONSENT}, None, req)
    assert message["context"]["consent"] == {"categoryPreferences": {"Ads": True}}


# --- messageId (AC-020) ------------------------------------------------------------------------


def test_ac020_missing_message_id_is_generated() -> None:
    first = accepted(track())["messageId"]
    second = accepted(track())["messageId"]
    assert first != second
    for message_id in (first, second):
        assert message_id.startswith("api-")
        assert len(message_id) <= 100
        assert uuid.UUID(message_id[4:]).version == 4


@pytest.mark.parametrize("value", [None, ""])
def test_null_or_empty_message_id_is_generated(value: object) -> None:
    assert accepted(track(messageId=value))["messageId"].startswith("api-")


def test_client_message_id_is_kept() -> None:
    assert accepted(track(messageId="ajs-f8ca1e4de5024d9430b3928bd8ac6b96"))["messageId"] == (
        "ajs-f8ca1e4de5024d9430b3928bd8ac6b96"
    )
    assert accepted(track(messageId="m" * 100))["messageId"] == "m" * 100


def test_numeric_message_id_becomes_a_string() -> None:
    assert accepted(track(messageId=42))["messageId"] == "42"


@pytest.mark.parametrize("value", ["m" * 101, True, {}, ["id"]])
def test_unusable_message_id_is_dropped(value: object) -> None:
    assert code(track(messageId=value)) == reasons.MESSAGE_ID_INVALID


# --- batch merges (AC-014, AC-015) -------------------------------------------------------------


def test_ac015_batch_context_is_merged_into_the_item() -> None:
    req = request(batch_context={"device": {"type": "phone", "name": "Apple iPhone 6"}})
    item = {"type": "identify", "userId": "u", "context": {"locale": "en-US"}}
    context = accepted(item, None, req)["context"]
    assert context["device"] == {"type": "phone", "name": "Apple iPhone 6"}
    assert context["locale"] == "en-US"


def test_batch_context_merges_deeply_and_the_item_wins() -> None:
    req = request(
        batch_context={
            "library": {"name": "analytics-python", "version": "2.3.0"},
            "device": {"type": "phone", "name": "Apple iPhone 6"},
            "locale": "nl-NL",
        }
    )
    item = {
        "type": "track",
        "userId": "u",
        "event": "E",
        "context": {"device": {"name": "Pixel 8"}, "locale": "en-US"},
    }
    context = accepted(item, None, req)["context"]
    assert context["device"] == {"type": "phone", "name": "Pixel 8"}
    assert context["locale"] == "en-US"
    assert context["library"] == {"name": "analytics-python", "version": "2.3.0"}


def test_item_value_replaces_a_batch_object_when_it_is_not_an_object() -> None:
    req = request(batch_context={"device": {"type": "phone"}})
    item = {"type": "track", "userId": "u", "event": "E", "context": {"device": None}}
    assert accepted(item, None, req)["context"]["device"] is None


def test_ac015_batch_integrations_merge_shallowly_and_the_item_wins() -> None:
    req = request(
        batch_integrations={"All": False, "Mixpanel": True, "Amplitude": {"session_id": 1}}
    )
    item = {
        "type": "identify",
        "userId": "u",
        "integrations": {"Salesforce": True, "Amplitude": {"device_id": "d"}},
    }
    assert accepted(item, None, req)["integrations"] == {
        "All": False,
        "Mixpanel": True,
        "Salesforce": True,
        "Amplitude": {"device_id": "d"},
    }


def test_batch_level_objects_are_never_edited_nor_shared() -> None:
    batch_context = {"device": {"type": "phone"}, "tags": ["a"]}
    batch_integrations = {"All": True}
    before = copy.deepcopy((batch_context, batch_integrations))
    req = request(batch_context=batch_context, batch_integrations=batch_integrations)
    first = accepted(
        {
            "type": "track",
            "userId": "u",
            "event": "E",
            "context": {"device": {"name": "x"}, **AJS},
            "integrations": {"Mixpanel": False},
        },
        None,
        req,
    )
    second = accepted({"type": "track", "userId": "u", "event": "E"}, None, req)
    assert (batch_context, batch_integrations) == before
    assert first["context"]["ip"] == CLIENT_IP  # set on the item's own copy only
    first["context"]["device"]["type"] = "tablet"
    first["context"]["tags"].append("b")
    first["integrations"]["All"] = False
    assert second["context"] == {"device": {"type": "phone"}, "tags": ["a"]}
    assert second["integrations"] == {"All": True}
    assert (batch_context, batch_integrations) == before


def test_ac014_batch_sent_at_applies_to_items_without_one() -> None:
    req = request(batch_sent_at="2024-01-01T00:00:10.000Z")
    a = accepted({"type": "track", "userId": "u", "event": "A"}, None, req)
    b = accepted({"type": "page", "userId": "u", "name": "B"}, None, req)
    assert a["sentAt"] == b["sentAt"] == "2024-01-01T00:00:10.000Z"
    assert a["receivedAt"] == b["receivedAt"] == RECEIVED_ISO


def test_item_sent_at_wins_over_the_batch_sent_at() -> None:
    req = request(batch_sent_at="2024-01-01T00:00:10.000Z")
    item = {"type": "track", "userId": "u", "event": "A", "sentAt": "2024-01-01T00:00:09.000Z"}
    assert accepted(item, None, req)["sentAt"] == "2024-01-01T00:00:09.000Z"


# --- timestamps (AC-001, AC-016, AC-017, AC-018) -----------------------------------------------


def test_ac001_http_api_track() -> None:
    item = {
        "userId": "019mr8mf4r",
        "event": "Item Purchased",
        "properties": {"name": "Leap to Conclusions Mat", "revenue": 14.99},
        "context": {"ip": "24.5.68.47"},
        "timestamp": "2012-12-02T00:30:12.984Z",
        "writeKey": "WK",
    }
    message = accepted(item, "track")
    assert message["type"] == "track"
    assert message["receivedAt"] == RECEIVED_ISO
    assert message["messageId"].startswith("api-")
    assert message["originalTimestamp"] == "2012-12-02T00:30:12.984Z"
    assert message["timestamp"] == "2012-12-02T00:30:12.984Z"  # no sentAt: no correction
    assert "sentAt" not in message
    assert message["context"]["ip"] == "24.5.68.47"
    assert "writeKey" not in message


def test_ac016_clock_skew_correction_worked_example() -> None:
    message = accepted(
        track(timestamp="2015-12-12T19:11:01.152Z", sentAt="2015-12-12T19:11:01.169Z")
    )
    assert message["originalTimestamp"] == "2015-12-12T19:11:01.152Z"
    assert message["sentAt"] == "2015-12-12T19:11:01.169Z"
    assert message["receivedAt"] == "2015-12-12T19:11:01.266Z"
    assert message["timestamp"] == "2015-12-12T19:11:01.249Z"


def test_ac017_client_clock_an_hour_ahead_is_corrected() -> None:
    ahead = format_timestamp(RECEIVED + timedelta(hours=1))
    message = accepted(track(timestamp=ahead, sentAt=ahead))
    assert message["timestamp"] == RECEIVED_ISO
    assert message["originalTimestamp"] == ahead


def test_ac017_future_event_time_with_a_correct_clock_is_kept() -> None:
    future = format_timestamp(RECEIVED + timedelta(hours=1))
    message = accepted(track(timestamp=future, sentAt=RECEIVED_ISO))
    assert message["timestamp"] == future


def test_ac018_no_timestamps_means_received_at() -> None:
    message = accepted(track())
    assert message["timestamp"] == message["receivedAt"] == RECEIVED_ISO
    assert "originalTimestamp" not in message
    assert "sentAt" not in message


def test_sent_at_alone_gives_received_at() -> None:
    message = accepted(track(sentAt="2015-12-12T19:11:01.100Z"))
    assert message["timestamp"] == RECEIVED_ISO
    assert message["sentAt"] == "2015-12-12T19:11:01.100Z"


def test_timestamps_are_stored_in_one_form() -> None:
    message = accepted(
        track(timestamp="2015-12-12T20:11:01.152+01:00", sentAt="2015-12-12T19:11:01.169123Z")
    )
    assert message["originalTimestamp"] == "2015-12-12T19:11:01.152Z"
    assert message["sentAt"] == "2015-12-12T19:11:01.169Z"


def test_unpadded_timestamp_from_the_http_api_docs() -> None:
    message = accepted(
        {"type": "identify", "userId": "019mr8mf4r", "timestamp": "2015-2-02T00:30:08.276Z"}, None
    )
    assert message["originalTimestamp"] == "2015-02-02T00:30:08.276Z"
    assert message["timestamp"] == "2015-02-02T00:30:08.276Z"


@pytest.mark.parametrize("bad", ["yesterday", 1449947461152, {"t": 1}, ""])
def test_unparseable_timestamp_counts_as_absent(bad: object) -> None:
    message = accepted(track(timestamp=bad, sentAt="2015-12-12T19:11:01.169Z"))
    assert message["timestamp"] == RECEIVED_ISO
    assert "originalTimestamp" not in message


def test_unparseable_sent_at_is_dropped_and_not_used() -> None:
    message = accepted(track(timestamp="2015-12-12T19:11:01.152Z", sentAt="soon"))
    assert "sentAt" not in message
    assert message["timestamp"] == "2015-12-12T19:11:01.152Z"


def test_client_original_timestamp_is_used_when_there_is_no_timestamp() -> None:
    message = accepted(
        track(originalTimestamp="2015-12-12T19:11:01.152Z", sentAt="2015-12-12T19:11:01.169Z")
    )
    assert message["originalTimestamp"] == "2015-12-12T19:11:01.152Z"
    assert message["timestamp"] == "2015-12-12T19:11:01.249Z"


def test_timestamp_wins_over_a_client_original_timestamp() -> None:
    message = accepted(
        track(timestamp="2015-12-12T19:11:01.152Z", originalTimestamp="2001-01-01T00:00:00.000Z")
    )
    assert message["originalTimestamp"] == "2015-12-12T19:11:01.152Z"


def test_bad_original_timestamp_is_removed() -> None:
    message = accepted(track(originalTimestamp="never"))
    assert "originalTimestamp" not in message
    assert message["timestamp"] == RECEIVED_ISO


def test_client_received_at_is_overwritten() -> None:
    assert accepted(track(receivedAt="2001-01-01T00:00:00.000Z"))["receivedAt"] == RECEIVED_ISO


def test_skew_outside_datetime_range_falls_back_to_the_event_time() -> None:
    message = accepted(
        track(timestamp="9999-12-31T00:00:00.000Z", sentAt="0001-01-01T00:00:00.000Z")
    )
    assert message["timestamp"] == "9999-12-31T00:00:00.000Z"


def test_received_at_keeps_microseconds_out_of_the_stored_form() -> None:
    received = datetime(2024, 5, 6, 7, 8, 9, 123999, tzinfo=UTC)
    message = accepted(
        track(timestamp="2024-05-06T07:08:09.000Z", sentAt="2024-05-06T07:08:09.100Z"),
        req=request(received_at=received),
    )
    assert message["receivedAt"] == "2024-05-06T07:08:09.123Z"
    assert message["timestamp"] == "2024-05-06T07:08:09.023Z"


# --- context.ip (AC-022) -----------------------------------------------------------------------


def test_ac022_browser_event_gets_the_client_ip() -> None:
    assert accepted(track(context=copy.deepcopy(AJS)))["context"]["ip"] == CLIENT_IP


@pytest.mark.parametrize("library", sorted(MOBILE_LIBRARIES))
def test_mobile_events_get_the_client_ip(library: str) -> None:
    context = {"library": {"name": library, "version": "1.0.0"}}
    assert accepted(track(context=context))["context"]["ip"] == CLIENT_IP


@pytest.mark.parametrize(
    "context",
    [
        {},
        {"library": {"name": "analytics-python", "version": "2.3.0"}},
        {"library": {"name": "@segment/analytics-node"}},
        {"library": "analytics.js"},
        {"library": {"name": ["analytics.js"]}},
        {"library": {"name": {"n": 1}}},
        {"direct": "true"},
        {"direct": 1},
    ],
)
def test_ac022_server_side_events_get_no_ip(context: dict[str, Any]) -> None:
    assert "ip" not in accepted(track(context=context))["context"]


def test_ac022_direct_http_call_gets_the_client_ip() -> None:
    assert accepted(track(context={"direct": True}))["context"]["ip"] == CLIENT_IP


def test_ac022_ipv6_clients_get_no_ip() -> None:
    message = accepted(track(context=copy.deepcopy(AJS)), req=request(client_ip="2001:db8::1"))
    assert "ip" not in message["context"]


def test_ipv4_mapped_ipv6_address_is_unwrapped() -> None:
    message = accepted(
        track(context=copy.deepcopy(AJS)), req=request(client_ip="::ffff:203.0.113.9")
    )
    assert message["context"]["ip"] == "203.0.113.9"


def test_unknown_client_address_sets_nothing() -> None:
    assert (
        "ip"
        not in accepted(track(context=copy.deepcopy(AJS)), req=request(client_ip=None))["context"]
    )
    assert (
        "ip"
        not in accepted(track(context=copy.deepcopy(AJS)), req=request(client_ip="unix-socket"))[
            "context"
        ]
    )


def test_provided_ip_is_never_overwritten() -> None:
    context = {**copy.deepcopy(AJS), "ip": "8.8.8.8", "direct": True}
    assert accepted(track(context=context))["context"]["ip"] == "8.8.8.8"


def test_ip_from_the_batch_context_is_kept() -> None:
    req = request(batch_context={"ip": "8.8.4.4", **AJS})
    assert accepted(track(), None, req)["context"]["ip"] == "8.8.4.4"


# --- version and channel -----------------------------------------------------------------------


def test_version_is_2() -> None:
    assert accepted(track())["version"] == 2
    assert accepted(track(version="1.1"))["version"] == 2


@pytest.mark.parametrize(
    ("library", "channel"),
    [
        ("analytics.js", "browser"),
        ("analytics-ios", "mobile"),
        ("analytics-kotlin", "mobile"),
        ("analytics-react-native", "mobile"),
        ("analytics-python", "server"),
        (None, "server"),
    ],
)
def test_channel_follows_the_library(library: str | None, channel: str) -> None:
    context = {"library": {"name": library}} if library else {}
    assert accepted(track(context=context))["channel"] == channel


def test_client_channel_is_kept() -> None:
    assert accepted(track(context=copy.deepcopy(AJS), channel="mobile"))["channel"] == "mobile"
    assert accepted(track(channel=""))["channel"] == "server"


# --- properties limit (AC-024) -----------------------------------------------------------------


def test_ac024_properties_past_10000_are_dropped_in_order() -> None:
    properties = {f"p{i}": i for i in range(10_001)}
    kept = accepted(track(properties=properties))["properties"]
    assert len(kept) == 10_000
    assert list(kept) == [f"p{i}" for i in range(10_000)]
    assert "p10000" not in kept


def test_10000_properties_are_all_kept() -> None:
    properties = {f"p{i}": i for i in range(10_000)}
    assert accepted(track(properties=properties))["properties"] is properties


# --- dropped messages stay as sent -------------------------------------------------------------


def test_a_dropped_message_is_left_as_sent() -> None:
    item = {"type": "track", "userId": 123, "event": 5, "context": {"library": AJS["library"]}}
    before = copy.deepcopy(item)
    req = request(batch_context={"locale": "en-US"}, batch_sent_at="2024-01-01T00:00:00.000Z")
    assert code(item, None, req) == reasons.EVENT_NOT_STRING
    assert item == before


# --- the docs' fixtures (§22) ------------------------------------------------------------------

# Verbatim from the docs (/spec/identify/, /spec/track/, /spec/page/, /spec/screen/,
# /spec/group/, /spec/alias/), whitespace aside; "…" elisions are the digest's.
FIXTURES = {
    "identify": (
        '{"anonymousId":"507f191e810c19729de860ea","channel":"browser",'
        '"context":{"ip":"8.8.8.8",'
        '"userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_9_5) AppleWebKit/537.36 (KHTML,'
        ' like Gecko) Chrome/40.0.2214.115 Safari/537.36"},"integrations":{"All":false,'
        '"Mixpanel":true,"Salesforce":true},"messageId":"022bb90c-bbac-11e4-8dfc-aa07a5b093db",'
        '"receivedAt":"2015-02-23T22:28:55.387Z","sentAt":"2015-02-23T22:28:55.111Z",'
        '"timestamp":"2015-02-23T22:28:55.111Z","traits":{"name":"Peter Gibbons",'
        '"email":"peter@example.com","plan":"premium","logins":5,"address":{"street":"6th St",'
        '"city":"San Francisco","state":"CA","postalCode":"94103","country":"USA"}},'
        '"type":"identify","userId":"97980cfea0067","version":"1.1"}'
    ),
    "track": (
        '{"anonymousId":"23adfd82-aa0f-45a7-a756-24f2a7a4c895",'
        '"context":{"library":{"name":"analytics.js","version":"2.11.1"},'
        '"page":{"path":"/academy/","referrer":"","search":"","title":"Analytics Academy",'
        '"url":"https://segment.com/academy/"},'
        '"userAgent":"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_0) AppleWebKit/537.36 (KHTML'
        ', like Gecko) Chrome/46.0.2490.86 Safari/537.36","ip":"108.0.78.21"},'
        '"event":"Course Clicked","integrations":{},'
        '"messageId":"ajs-f8ca1e4de5024d9430b3928bd8ac6b96",'
        '"properties":{"title":"Intro to Analytics"},"receivedAt":"2015-12-12T19:11:01.266Z",'
        '"sentAt":"2015-12-12T19:11:01.169Z","timestamp":"2015-12-12T19:11:01.249Z",'
        '"type":"track","userId":"AiUGstSDIg","originalTimestamp":"2015-12-12T19:11:01.152Z"}'
    ),
    "page": (
        '{"anonymousId":"507f191e810c19729de860ea","channel":"browser",'
        '"context":{"ip":"8.8.8.8","userAgent":"…"},"integrations":{"All":true,'
        '"Mixpanel":false,"Salesforce":false},'
        '"messageId":"022bb90c-bbac-11e4-8dfc-aa07a5b093db","name":"Home",'
        '"properties":{"title":"Welcome | Initech","url":"http://www.example.com"},'
        '"receivedAt":"2015-02-23T22:28:55.387Z","sentAt":"2015-02-23T22:28:55.111Z",'
        '"timestamp":"2015-02-23T22:28:55.111Z","type":"page","userId":"97980cfea0067",'
        '"version":"1.1"}'
    ),
    "screen": (
        '{"anonymousId":"3a12eab0-bca7-11e4-8dfc-aa07a5b093db","channel":"mobile",'
        '"context":{"ip":"8.8.8.8"},"integrations":{"All":true,"Mixpanel":false,'
        '"Salesforce":false},"messageId":"022bb90c-bbac-11e4-8dfc-aa07a5b093db","name":"Home",'
        '"properties":{"variation":"blue signup button"},'
        '"receivedAt":"2015-02-23T22:28:55.387Z","sentAt":"2015-02-23T22:28:55.111Z",'
        '"timestamp":"2015-02-23T22:28:55.111Z","type":"screen","userId":"97980cfea0067",'
        '"version":"1.1"}'
    ),
    "group": (
        '{"anonymousId":"507f191e810c19729de860ea","channel":"browser",'
        '"context":{"ip":"8.8.8.8","userAgent":"…"},"integrations":{"All":true,'
        '"Mixpanel":false,"Salesforce":false},'
        '"messageId":"022bb90c-bbac-11e4-8dfc-aa07a5b093db",'
        '"receivedAt":"2015-02-23T22:28:55.387Z","sentAt":"2015-02-23T22:28:55.111Z",'
        '"timestamp":"2015-02-23T22:28:55.111Z","traits":{"name":"Initech",'
        '"industry":"Technology","employees":329,"plan":"enterprise","total billed":830},'
        '"type":"group","userId":"97980cfea0067","groupId":"0e8c78ea9d97a7b8185e8632",'
        '"version":"1.1"}'
    ),
    "alias": (
        '{"anonymousId":"507f191e810c19729de860ea","channel":"browser",'
        '"context":{"ip":"8.8.8.8","userAgent":"…"},"integrations":{"All":true,'
        '"Mixpanel":false,"Salesforce":false},'
        '"messageId":"022bb90c-bbac-11e4-8dfc-aa07a5b093db",'
        '"previousId":"39239-239239-239239-23923","receivedAt":"2015-02-23T22:28:55.387Z",'
        '"sentAt":"2015-02-23T22:28:55.111Z","timestamp":"2015-02-23T22:28:55.111Z",'
        '"type":"alias","userId":"507f191e81","version":"1.1"}'
    ),
}


@pytest.mark.parametrize("kind", sorted(FIXTURES))
def test_spec_fixtures_are_accepted_as_batch_items(kind: str) -> None:
    sent = json.loads(FIXTURES[kind])
    message = accepted(json.loads(FIXTURES[kind]), None)
    assert message["type"] == kind
    assert message["messageId"] == sent["messageId"]
    assert message["userId"] == sent["userId"]
    assert message["anonymousId"] == sent["anonymousId"]
    assert message["integrations"] == sent["integrations"]
    assert message["context"]["ip"] == sent["context"]["ip"]  # never overwritten
    assert message["channel"] == sent.get("channel", "browser")
    assert message["version"] == 2
    assert message["receivedAt"] == RECEIVED_ISO
    # The client's `timestamp` becomes the original and is corrected by the sentAt skew.
    assert message["originalTimestamp"] == sent["timestamp"]
    original, sent_at = parse_timestamp(sent["timestamp"]), parse_timestamp(sent["sentAt"])
    assert original is not None and sent_at is not None
    assert message["timestamp"] == format_timestamp(RECEIVED - (sent_at - original))


def test_track_fixture_reingested_keeps_its_payload() -> None:
    message = accepted(json.loads(FIXTURES["track"]), None)
    assert message["event"] == "Course Clicked"
    assert message["properties"] == {"title": "Intro to Analytics"}
    assert message["context"]["page"]["title"] == "Analytics Academy"
    # Its stored `timestamp` (.249) is taken as the event time; it is 80 ms after its sentAt
    # (.169), so the corrected time is 80 ms after receipt (.266).
    assert message["originalTimestamp"] == "2015-12-12T19:11:01.249Z"
    assert message["timestamp"] == "2015-12-12T19:11:01.346Z"


def test_http_api_batch_example() -> None:
    # HTTP API docs' batch body, with its unpadded timestamps.
    body = {
        "batch": [
            {
                "type": "identify",
                "userId": "019mr8mf4r",
                "traits": {"email": "jake@yahoo.com", "name": "Jake Peterson", "age": 26},
                "timestamp": "2012-12-02T00:30:08.276Z",
            },
            {
                "type": "track",
                "userId": "019mr8mf4r",
                "event": "Song Played",
                "properties": {"name": "Fallin for You", "artist": "Dierks Bentley"},
                "timestamp": "2012-12-02T00:30:12.984Z",
            },
            {
                "type": "identify",
                "userId": "971mj8mk7p",
                "traits": {"email": "cindy@example.com"},
                "timestamp": "2015-2-02T00:30:08.276Z",
            },
        ],
        "writeKey": "YOUR_WRITE_KEY",
        "context": {"device": {"type": "phone", "name": "Apple iPhone 6"}},
    }
    req = request(batch_context=body["context"])
    messages = [accepted(item, None, req) for item in body["batch"]]
    assert [m["timestamp"] for m in messages] == [
        "2012-12-02T00:30:08.276Z",
        "2012-12-02T00:30:12.984Z",
        "2015-02-02T00:30:08.276Z",
    ]
    assert all(m["context"]["device"]["name"] == "Apple iPhone 6" for m in messages)
    assert len({m["messageId"] for m in messages}) == 3


def test_destination_function_batch_fixture() -> None:
    items = json.loads(
        '[{"type":"identify","userId":"019mr8mf4r","traits":{"email":"jake@yahoo.com",'
        '"name":"Jake Peterson","age":26}},{"type":"track","userId":"019mr8mf4r",'
        '"event":"Song Played","properties":{"name":"Fallin for You","artist":"Dierks Bentley"}},'
        '{"type":"track","userId":"971mj8mk7p","event":"Song Played","properties":'
        '{"name":"Get Right","artist":"Jennifer Lopez"}}]'
    )
    assert [accepted(item, None)["type"] for item in items] == ["identify", "track", "track"]


# --- the codes themselves ----------------------------------------------------------------------


def test_discard_codes_are_distinct_and_ours_are_apart_from_segments() -> None:
    everything = {
        name: value
        for name, value in vars(reasons).items()
        if name.isupper() and isinstance(value, str)
    }
    assert len(set(everything.values())) == len(everything)  # one name per reason
    constants = {name: value for name, value in everything.items() if value in reasons.ALL_CODES}
    assert len(constants) == len(reasons.ALL_CODES)
    assert not reasons.SEGMENT_CODES & reasons.HEADWATER_CODES
    assert all(value == name.lower() for name, value in constants.items())


def test_a_batch_item_sent_padded_is_measured_as_stored() -> None:
    # 40 KB as sent (whitespace), under 1 KB as stored: kept, as before sizes came from the
    # bytes as sent.
    item = track(properties={"pad": "x"})
    sent = len(msgspec.json.encode(item)) + 40 * 1024
    result = normalize(item, request(), route_type=None, sent_size=sent)
    assert not isinstance(result, Discard), result


def test_a_small_batch_item_is_taken_at_its_sent_size() -> None:
    # Numbers grow when stored compactly ("1e9" → "1000000000.0"), at most 8 times: an item
    # sent in 4 KB can never be over 32 KB stored.
    body = (
        b'{"type":"track","userId":"u","event":"E","properties":{"n":['
        + b",".join([b"1e9"] * 900)
        + b"]}}"
    )
    assert len(body) <= 4096
    item = msgspec.json.decode(body)
    assert len(msgspec.json.encode(item)) > len(body) * 3
    result = normalize(item, request(), route_type=None, sent_size=len(body))
    assert not isinstance(result, Discard), result


def test_a_large_batch_item_is_measured_as_stored() -> None:
    item = _item_of_size(32 * 1024 + 1)
    assert dropped(item, None).code == reasons.MESSAGE_TOO_LARGE
    item = _item_of_size(32 * 1024 + 1)
    result = normalize(item, request(), route_type=None, sent_size=32 * 1024 + 1)
    assert isinstance(result, Discard) and result.code == reasons.MESSAGE_TOO_LARGE
