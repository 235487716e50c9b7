"""Events as Segment's warehouse rows (spec §12.2–12.6, §21.5, AC-120 … AC-128)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from headwater.warehouse.columns import ColumnType
from headwater.warehouse.naming import POSTGRES, REDSHIFT
from headwater.warehouse.rows import (
    _UUID_NAMESPACE,
    cast,
    column_type,
    group_rows,
    is_timestamp_text,
    merge_by_id,
    rows_for,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
T0 = "2015-02-23T22:28:55.111Z"
T0_DT = datetime(2015, 2, 23, 22, 28, 55, 111000, tzinfo=UTC)


def message(kind: str, **fields: Any) -> dict[str, Any]:
    """A message as the Tracking API stores it."""
    base: dict[str, Any] = {
        "type": kind,
        "messageId": "m-1",
        "anonymousId": "anon-1",
        "userId": "u1",
        "receivedAt": "2015-02-23T22:28:55.387Z",
        "sentAt": T0,
        "timestamp": T0,
        "originalTimestamp": T0,
        "context": {"ip": "8.8.8.8"},
        "integrations": {},
        "channel": "server",
        "version": "1.1",
    }
    base.update(fields)
    return base


def track(event: str, properties: dict[str, Any], **fields: Any) -> dict[str, Any]:
    return message("track", event=event, properties=properties, **fields)


def tables(event: dict[str, Any], **kwargs: Any) -> dict[str, dict[str, Any]]:
    pairs = rows_for(event, now=NOW, **kwargs)
    found = dict(pairs)
    assert len(found) == len(pairs), "one row per table per event"
    return found


def own_row(event: dict[str, Any]) -> dict[str, Any]:
    """The row of a track's event table."""
    pairs = rows_for(event, now=NOW)
    assert len(pairs) == 2 and pairs[0][0] == "tracks"
    return pairs[1][1]


STANDARD = {
    "id",
    "anonymous_id",
    "user_id",
    "received_at",
    "sent_at",
    "timestamp",
    "original_timestamp",
    "uuid",
    "uuid_ts",
    "context_ip",
}


# --- AC-120: track → tracks + <event> ----------------------------------------------------------


def test_ac120_track_register() -> None:
    found = tables(track("Register", {"plan": "Pro Annual", "accountType": "Facebook"}))
    assert set(found) == {"tracks", "register"}
    tracks, register = found["tracks"], found["register"]
    assert tracks["event"] == "register"
    assert tracks["event_text"] == "Register"
    assert set(tracks) == STANDARD | {"event", "event_text"}  # standard columns only
    assert register["plan"] == "Pro Annual"
    assert register["account_type"] == "Facebook"
    assert set(register) == STANDARD | {"event", "event_text", "plan", "account_type"}
    assert register["id"] == tracks["id"] == "m-1"
    assert register["user_id"] == "u1" and register["anonymous_id"] == "anon-1"
    assert register["received_at"] == datetime(2015, 2, 23, 22, 28, 55, 387000, tzinfo=UTC)
    for column in ("sent_at", "timestamp", "original_timestamp"):
        assert register[column] == T0_DT
    assert register["context_ip"] == "8.8.8.8"


def test_spec_track_fixture() -> None:
    event = {
        "anonymousId": "23adfd82-aa0f-45a7-a756-24f2a7a4c895",
        "context": {
            "library": {"name": "analytics.js", "version": "2.11.1"},
            "page": {
                "path": "/academy/",
                "referrer": "",
                "search": "",
                "title": "Analytics Academy",
                "url": "https://segment.com/academy/",
            },
            "userAgent": "Mozilla/5.0 (Macintosh)",
            "ip": "108.0.78.21",
        },
        "event": "Course Clicked",
        "integrations": {},
        "messageId": "ajs-f8ca1e4de5024d9430b3928bd8ac6b96",
        "properties": {"title": "Intro to Analytics"},
        "receivedAt": "2015-12-12T19:11:01.266Z",
        "sentAt": "2015-12-12T19:11:01.169Z",
        "timestamp": "2015-12-12T19:11:01.249Z",
        "type": "track",
        "userId": "AiUGstSDIg",
        "originalTimestamp": "2015-12-12T19:11:01.152Z",
    }
    found = tables(event)
    assert set(found) == {"tracks", "course_clicked"}
    assert found["tracks"]["event"] == "course_clicked"
    assert found["tracks"]["event_text"] == "Course Clicked"
    assert found["course_clicked"]["title"] == "Intro to Analytics"
    context = {c for c in found["tracks"] if c.startswith("context_")}
    assert context == {
        "context_library_name",
        "context_library_version",
        "context_page_path",
        "context_page_referrer",
        "context_page_search",
        "context_page_title",
        "context_page_url",
        "context_user_agent",
        "context_ip",
    }
    assert found["tracks"]["context_page_referrer"] == ""  # empty strings are values
    assert not any("integrations" in c for c in found["course_clicked"])


# --- AC-121 … AC-123: flattening ---------------------------------------------------------------


def test_ac121_nested_traits_and_context() -> None:
    found = tables(
        message(
            "identify",
            traits={"address": {"street": "6th Street"}},
            context={"app": {"version": "1.0.0"}},
        )
    )
    assert found["identifies"]["address_street"] == "6th Street"
    assert found["identifies"]["context_app_version"] == "1.0.0"


def test_ac122_nested_properties() -> None:
    assert own_row(track("Viewed", {"product_id": {"sku": "G-32"}}))["product_id_sku"] == "G-32"


def test_nested_keys_are_snake_cased_as_a_whole() -> None:
    row = own_row(
        track(
            "X",
            {"cartInfo": {"itemCount": 2, "Deep": {"nestedA": {"x": 1}}}},
            context={"field": {"nestedA": {"nestedB": "v"}}},
        )
    )
    assert row["cart_info_item_count"] == 2
    assert row["cart_info_deep_nested_a_x"] == 1
    assert row["context_field_nested_a_nested_b"] == "v"


def test_ac123_arrays_are_compact_json() -> None:
    row = own_row(
        track(
            "Viewed",
            {"product_id": ["507f1", "505bd"], "mixed": [1, {"a": None}, "é"], "empty": []},
        )
    )
    assert row["product_id"] == '["507f1","505bd"]'
    assert row["mixed"] == '[1,{"a":null},"é"]'
    assert row["empty"] == "[]"
    assert column_type(row["product_id"]) == "varchar"
    ctx = tables(track("X", {}, context={"tags": ["a", "b"]}))["tracks"]
    assert ctx["context_tags"] == '["a","b"]'


def test_empty_objects_make_no_columns() -> None:
    row = own_row(track("X", {"meta": {}, "a": 1}))
    assert "meta" not in row and row["a"] == 1


# --- AC-124: collisions with reserved columns --------------------------------------------------


@pytest.mark.parametrize("key", ["user_id", "userId", "UserID", "user-id"])
def test_ac124_user_id_property_is_dropped(key: str) -> None:
    row = own_row(track("Signed Up", {key: "evil"}))
    assert row["user_id"] == "u1"


def test_ac124_event_property_is_dropped_type_survives() -> None:
    row = own_row(track("selected gift", {"event": "birthday", "type": "cake"}))
    assert row["event"] == "selected_gift"
    assert row["event_text"] == "selected gift"
    assert row["type"] == "cake"  # not a warehouse column, so an ordinary property


@pytest.mark.parametrize(
    "key",
    [
        "id",
        "anonymousId",
        "anonymous_id",
        "receivedAt",
        "sent_at",
        "timestamp",
        "originalTimestamp",
        "uuid",
        "uuid_ts",
        "loaded_at",
        "event_text",
        "eventText",
    ],
)
def test_ac124_reserved_columns_keep_the_message_values(key: str) -> None:
    event = track("X", {key: "evil"})
    row = own_row(event)
    assert "evil" not in row.values()


def test_ac124_context_prefixed_properties_are_dropped() -> None:
    row = own_row(
        track(
            "X",
            {
                "context_ip": "1.1.1.1",
                "contextPage": "p",
                "context": {"ip": "2.2.2.2"},
                "contexts": 3,
            },
        )
    )
    assert row["context_ip"] == "8.8.8.8"
    assert "context_page" not in row
    assert row["contexts"] == 3


def test_reserved_sets_depend_on_the_table() -> None:
    # group_id is a standard column of groups only; elsewhere it is a property.
    assert own_row(track("X", {"group_id": "g9"}))["group_id"] == "g9"
    groups = tables(message("group", groupId="g1", traits={"groupId": "evil", "name": "A"}))
    assert groups["groups"]["group_id"] == "g1"
    # traits are filtered like properties
    identify = tables(message("identify", traits={"userId": "evil", "id": "x", "email": "e"}))
    assert identify["identifies"]["user_id"] == "u1"
    assert identify["identifies"]["id"] == "m-1"
    assert identify["users"]["id"] == "u1"
    assert identify["users"]["email"] == "e"


def test_later_keys_win_when_two_give_one_column() -> None:
    row = own_row(track("X", {"accountType": "first", "account_type": "second"}))
    assert row["account_type"] == "second"


def test_keys_without_letters_or_digits_are_dropped() -> None:
    row = own_row(track("X", {"$$": 1, "•": 2, "ok": 3}))
    assert row["ok"] == 3
    assert "" not in row


# --- AC-125: 512 characters --------------------------------------------------------------------


def test_ac125_strings_are_cut_at_512_characters() -> None:
    long = "é" * 600
    row = own_row(track("X", {"bio": long, "list": ["x" * 600]}, context={"userAgent": "a" * 700}))
    assert row["bio"] == "é" * 512
    assert len(row["list"]) == 512
    assert len(row["context_user_agent"]) == 512
    assert row["event_text"] == "X"
    assert len(own_row(track("Y", {"ok": "y" * 512}))["ok"]) == 512


# --- AC-126: types and casts -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "boolean"),
        (False, "boolean"),
        (5, "integer"),
        (-(2**63), "integer"),
        (2**63, "float"),
        (5.5, "float"),
        (5.0, "float"),
        ("abc", "varchar"),
        ("", "varchar"),
        ("2015-12-12T19:11:01.266Z", "timestamp"),
        ("2015-12-12T19:11:01Z", "timestamp"),
        ("2015-12-12T19:11:01+02:00", "timestamp"),
        ("2015-12-12t19:11:01.1234567-05:30", "timestamp"),
        ("2015-12-12", "varchar"),  # a date alone
        ("2015-12-12T19:11:01", "varchar"),  # no zone: not RFC 3339
        ("2015-12-12 19:11:01Z", "varchar"),  # space separator: be conservative
        ("2015-13-12T19:11:01Z", "varchar"),  # month 13
        ("2015-02-30T19:11:01Z", "varchar"),
        ("12/12/2015", "varchar"),
        (datetime(2020, 1, 1, tzinfo=UTC), "timestamp"),
    ],
)
def test_column_type(value: Any, expected: ColumnType) -> None:
    assert column_type(value) == expected


def test_is_timestamp_text() -> None:
    assert is_timestamp_text("2024-01-01T00:00:00.000Z")
    assert not is_timestamp_text("2024-01-01T00:00:00.000")
    assert not is_timestamp_text("not a timestamp at all, but long enough")


def test_ac126_first_value_types_the_column_then_values_are_cast() -> None:
    first = group_rows(rows_for(track("Bought", {"price": 5}), now=NOW))
    assert first["bought"].types["price"] == "integer"
    later = own_row(track("Bought", {"price": 5.5}))
    assert later["price"] == 5.5  # the row keeps what was sent; the loader casts
    assert cast(later["price"], first["bought"].types["price"]) == 5  # precision lost


def test_types_come_from_the_latest_non_null_value_in_a_batch() -> None:
    pairs = [
        *rows_for(track("Bought", {"price": 5}, messageId="a"), now=NOW),
        *rows_for(track("Bought", {"price": 5.5}, messageId="b"), now=NOW),
        *rows_for(track("Bought", {"price": None}, messageId="c"), now=NOW),
    ]
    grouped = group_rows(pairs)
    assert grouped["bought"].types["price"] == "float"
    assert [r["id"] for r in grouped["bought"].rows] == ["a", "b", "c"]
    assert len(grouped["tracks"].rows) == 3


def test_group_rows_tolerates_explicit_nulls() -> None:
    grouped = group_rows(
        [("t", {"id": "1", "a": 1}), ("t", {"id": "2", "a": None}), ("t", {"id": "3", "b": None})]
    )
    assert grouped["t"].types == {"id": "varchar", "a": "integer"}


def test_every_table_names_segments_columns_even_when_the_event_lacks_them() -> None:
    """AC-120: a message without sentAt, originalTimestamp or context (a plain HTTP client)
    still names every standard column of its tables, for the loaders to create."""
    bare = {"sentAt": None, "originalTimestamp": None, "context": None, "anonymousId": None}
    common = {
        "id",
        "anonymous_id",
        "user_id",
        "received_at",
        "sent_at",
        "timestamp",
        "original_timestamp",
        "uuid",
        "uuid_ts",
        "context_library_name",
        "context_library_version",
    }
    entity = {"id", "received_at", "sent_at", "timestamp", "original_timestamp", "uuid", "uuid_ts"}
    pairs = [
        *rows_for(track("Signed Up", {"plan": "pro"}, **bare), now=NOW),
        *rows_for(message("identify", traits={"email": "a@x.io"}, **bare), now=NOW),
        *rows_for(message("page", **bare), now=NOW),
        *rows_for(message("screen", **bare), now=NOW),
        *rows_for(message("group", groupId="g1", **bare), now=NOW),
        *rows_for(message("alias", previousId="a0", **bare), now=NOW),
    ]
    grouped = group_rows(pairs)
    own = {
        "tracks": {"event", "event_text"},
        "signed_up": {"event", "event_text"},
        "identifies": set(),
        "pages": {"name", "category"},
        "screens": {"name", "category"},
        "groups": {"group_id"},
        "aliases": {"previous_id"},
    }
    for table, extra in own.items():
        assert set(grouped[table].standard) == common | extra, table
        assert "sent_at" not in grouped[table].rows[0]  # NULL: no value, but a column
        assert grouped[table].standard["sent_at"] == "timestamp"
    assert set(grouped["users"].standard) == entity
    assert set(grouped["accounts"].standard) == entity
    assert "plan" not in grouped["signed_up"].standard  # properties stay data-driven


def test_dropping_a_column_removes_its_values_type_and_standard_entry() -> None:
    grouped = group_rows(rows_for(track("X", {"plan": "pro"}), now=NOW))
    grouped["x"].drop(["sent_at", "plan"])
    assert "sent_at" not in grouped["x"].standard and "sent_at" not in grouped["x"].types
    assert all("sent_at" not in row and "plan" not in row for row in grouped["x"].rows)


def test_standard_columns_have_fixed_types() -> None:
    event = track(
        "2015-12-12T19:11:01Z",
        {"when": "2015-12-12T19:11:01Z"},
        userId="2015-12-12T19:11:01Z",
        messageId="2015-12-12T19:11:01Z",
    )
    grouped = group_rows(rows_for(event, now=NOW))
    assert grouped["tracks"].types["user_id"] == "varchar"
    assert grouped["tracks"].types["id"] == "varchar"
    assert grouped["tracks"].types["event_text"] == "varchar"
    own = next(t for t in grouped if t != "tracks")
    assert grouped[own].types["when"] == "timestamp"
    assert grouped[own].types["received_at"] == "timestamp"
    page = group_rows(rows_for(message("page", name="2015-12-12T19:11:01Z"), now=NOW))
    assert page["pages"].types["name"] == "varchar"


@pytest.mark.parametrize(
    ("value", "target", "expected"),
    [
        # into integer: floats truncate toward zero
        (5.5, "integer", 5),
        (-5.5, "integer", -5),
        (5, "integer", 5),
        (True, "integer", 1),
        ("42", "integer", 42),
        (" -7 ", "integer", -7),
        ("5.9", "integer", 5),
        ("1e3", "integer", 1000),
        ("abc", "integer", None),
        ("nan", "integer", None),
        ("1_000", "integer", None),
        (float("inf"), "integer", None),
        (1e30, "integer", None),  # outside bigint
        (datetime(2020, 1, 1, tzinfo=UTC), "integer", None),
        # into float
        (5, "float", 5.0),
        (True, "float", 1.0),
        ("2.5", "float", 2.5),
        ("abc", "float", None),
        ("inf", "float", None),
        (2.5, "float", 2.5),
        # into boolean
        (True, "boolean", True),
        (1, "boolean", True),
        (0, "boolean", False),
        (0.0, "boolean", False),
        (2, "boolean", None),
        ("true", "boolean", True),
        ("F", "boolean", False),
        ("1", "boolean", True),
        ("yes", "boolean", None),
        # into varchar: its text
        ("abc", "varchar", "abc"),
        (5, "varchar", "5"),
        (5.5, "varchar", "5.5"),
        (True, "varchar", "true"),
        (False, "varchar", "false"),
        (
            datetime(2015, 2, 23, 22, 28, 55, 111000, tzinfo=UTC),
            "varchar",
            "2015-02-23T22:28:55.111Z",
        ),
        ("x" * 600, "varchar", "x" * 512),
        # into timestamp: strings parse leniently, numbers never
        ("2015-02-23T22:28:55.111Z", "timestamp", T0_DT),
        ("2015-02-23", "timestamp", datetime(2015, 2, 23, tzinfo=UTC)),
        ("2015-02-23T23:28:55.111+01:00", "timestamp", T0_DT),
        ("soon", "timestamp", None),
        (1424730535, "timestamp", None),
        (True, "timestamp", None),
        (T0_DT, "timestamp", T0_DT),
        (datetime(2015, 2, 23, 22, 28, 55, 111000), "timestamp", T0_DT),
        # null stays null
        (None, "varchar", None),
        (None, "integer", None),
    ],
)
def test_cast(value: Any, target: ColumnType, expected: Any) -> None:
    result = cast(value, target)
    assert result == expected
    assert type(result) is type(expected)


def test_cast_to_timestamp_gives_utc() -> None:
    out = cast(datetime(2015, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))), "timestamp")
    assert out == datetime(2015, 1, 1, tzinfo=UTC) and out.tzinfo is UTC


def test_cast_rejects_unknown_types() -> None:
    with pytest.raises(ValueError, match="unknown column type"):
        cast(1, "json")  # type: ignore[arg-type]


def test_values_that_are_not_json_friendly() -> None:
    row = own_row(
        track(
            "X", {"big": 2**70, "nan": float("nan"), "inf": float("inf"), "ok": 1.25, "flag": False}
        )
    )
    assert row["big"] == float(2**70)
    assert "nan" not in row and "inf" not in row
    assert row["ok"] == 1.25
    assert row["flag"] is False


# --- AC-127: nulls -----------------------------------------------------------------------------


def test_ac127_null_values_make_no_column() -> None:
    row = own_row(track("X", {"coupon": None, "nested": {"a": None}}))
    assert "coupon" not in row and "nested_a" not in row
    assert None not in row.values()
    grouped = group_rows(rows_for(track("X", {"coupon": None}), now=NOW))
    assert "coupon" not in grouped["x"].types
    grouped = group_rows(
        [
            *rows_for(track("X", {"coupon": None}, messageId="a"), now=NOW),
            *rows_for(track("X", {"coupon": "C1"}, messageId="b"), now=NOW),
        ]
    )
    assert grouped["x"].types["coupon"] == "varchar"


def test_missing_envelope_fields_are_missing_columns() -> None:
    event = {
        "type": "track",
        "event": "X",
        "anonymousId": "a",
        "userId": None,
        "receivedAt": "2024-01-01T00:00:00.000Z",
        "sentAt": "garbage",
    }
    row = own_row(event)
    assert "user_id" not in row and "sent_at" not in row and "timestamp" not in row
    assert "id" not in row and "uuid" not in row
    assert row["anonymous_id"] == "a"
    assert row["uuid_ts"] == NOW


# --- AC-128: identifies and users --------------------------------------------------------------


def test_spec_identify_fixture() -> None:
    event = {
        "anonymousId": "507f191e810c19729de860ea",
        "channel": "browser",
        "context": {"ip": "8.8.8.8", "userAgent": "Mozilla/5.0 (Macintosh)"},
        "integrations": {"All": False, "Mixpanel": True, "Salesforce": True},
        "messageId": "022bb90c-bbac-11e4-8dfc-aa07a5b093db",
        "receivedAt": "2015-02-23T22:28:55.387Z",
        "sentAt": "2015-02-23T22:28:55.111Z",
        "timestamp": "2015-02-23T22:28:55.111Z",
        "traits": {
            "name": "Peter Gibbons",
            "email": "peter@example.com",
            "plan": "premium",
            "logins": 5,
            "address": {
                "street": "6th St",
                "city": "San Francisco",
                "state": "CA",
                "postalCode": "94103",
                "country": "USA",
            },
        },
        "type": "identify",
        "userId": "97980cfea0067",
        "version": "1.1",
    }
    found = tables(event)
    assert set(found) == {"identifies", "users"}
    row = found["identifies"]
    assert row["id"] == "022bb90c-bbac-11e4-8dfc-aa07a5b093db"
    assert row["anonymous_id"] == "507f191e810c19729de860ea"
    assert row["user_id"] == "97980cfea0067"
    assert row["context_ip"] == "8.8.8.8"
    assert row["context_user_agent"] == "Mozilla/5.0 (Macintosh)"
    assert (row["name"], row["email"], row["plan"]) == (
        "Peter Gibbons",
        "peter@example.com",
        "premium",
    )
    assert row["logins"] == 5 and column_type(row["logins"]) == "integer"
    assert row["address_street"] == "6th St"
    assert row["address_postal_code"] == "94103"
    assert {"address_city", "address_state", "address_country"} <= set(row)
    assert not any(c.startswith("integrations") or c in ("channel", "version", "type") for c in row)
    users = found["users"]
    assert users["id"] == "97980cfea0067"
    assert users["email"] == "peter@example.com"
    assert users["address_street"] == "6th St"
    assert "anonymous_id" not in users and "user_id" not in users
    assert not any(c.startswith("context_") for c in users)
    assert users["received_at"] == row["received_at"]
    assert users["uuid_ts"] == NOW


def test_ac128_two_identifies_one_user() -> None:
    pairs = [
        *rows_for(
            message(
                "identify",
                messageId="a",
                traits={"plan": "free", "age": 30},
                timestamp="2024-01-01T00:00:00.000Z",
            ),
            now=NOW,
        ),
        *rows_for(
            message(
                "identify",
                messageId="b",
                traits={"plan": "premium"},
                timestamp="2024-01-02T00:00:00.000Z",
            ),
            now=NOW,
        ),
    ]
    grouped = group_rows(pairs)
    assert [r["plan"] for r in grouped["identifies"].rows] == ["free", "premium"]
    users = grouped["users"].rows
    assert len(users) == 1
    assert users[0]["id"] == "u1"
    assert users[0]["plan"] == "premium"
    assert users[0]["age"] == 30  # a trait sent once stays
    assert "anonymous_id" not in users[0] and "anonymous_id" not in grouped["users"].types


def test_users_merge_keeps_the_newest_timestamp_not_the_last_arrival() -> None:
    newer = {"id": "u1", "plan": "premium", "timestamp": datetime(2024, 1, 2, tzinfo=UTC)}
    older = {"id": "u1", "plan": "free", "seats": 3, "timestamp": datetime(2024, 1, 1, tzinfo=UTC)}
    assert merge_by_id([newer, older]) == [
        {"id": "u1", "plan": "premium", "seats": 3, "timestamp": datetime(2024, 1, 2, tzinfo=UTC)}
    ]
    # without timestamps the later row wins
    assert merge_by_id([{"id": "u1", "plan": "a"}, {"id": "u1", "plan": "b"}]) == [
        {"id": "u1", "plan": "b"}
    ]
    # rows without id are kept as they are
    assert merge_by_id([{"plan": "a"}]) == [{"plan": "a"}]


def test_identify_without_user_id_has_no_users_row() -> None:
    found = tables(message("identify", userId=None, traits={"email": "x@y"}))
    assert set(found) == {"identifies"}
    assert found["identifies"]["email"] == "x@y"


# --- page, screen, group, alias ----------------------------------------------------------------


def test_page() -> None:
    found = tables(
        message(
            "page",
            name="Home",
            category="Docs",
            properties={
                "title": "Welcome | Initech",
                "url": "http://x",
                "name": "ignored",
                "path": "/",
            },
        )
    )
    assert set(found) == {"pages"}
    row = found["pages"]
    assert row["name"] == "Home" and row["category"] == "Docs"
    assert row["title"] == "Welcome | Initech" and row["url"] == "http://x"
    assert row["path"] == "/"
    assert set(row) >= STANDARD


def test_page_without_name_keeps_a_name_property() -> None:
    row = tables(message("page", properties={"name": "From props"}))["pages"]
    assert row["name"] == "From props"
    assert "category" not in row


def test_screen() -> None:
    found = tables(message("screen", name="Home", properties={"variation": "blue signup button"}))
    assert set(found) == {"screens"}
    assert found["screens"]["name"] == "Home"
    assert found["screens"]["variation"] == "blue signup button"


def test_group_and_accounts() -> None:
    found = tables(
        message(
            "group",
            groupId="0e8c78ea9d97a7b8185e8632",
            traits={
                "name": "Initech",
                "industry": "Technology",
                "employees": 329,
                "plan": "enterprise",
                "total billed": 830,
            },
        )
    )
    assert set(found) == {"groups", "accounts"}
    row = found["groups"]
    assert row["group_id"] == "0e8c78ea9d97a7b8185e8632"
    assert row["user_id"] == "u1"
    assert row["employees"] == 329 and column_type(row["employees"]) == "integer"
    assert row["total_billed"] == 830
    account = found["accounts"]
    assert account["id"] == "0e8c78ea9d97a7b8185e8632"
    assert account["name"] == "Initech"
    assert "anonymous_id" not in account and "group_id" not in account


def test_group_without_group_id_has_no_accounts_row() -> None:
    assert set(tables(message("group", traits={"name": "x"}))) == {"groups"}


def test_alias() -> None:
    found = tables(message("alias", previousId="39239-239239-239239-23923", userId="507f191e81"))
    assert set(found) == {"aliases"}
    assert found["aliases"]["previous_id"] == "39239-239239-239239-23923"
    assert found["aliases"]["user_id"] == "507f191e81"


@pytest.mark.parametrize("kind", ["delete", "batch", "", None, 5])
def test_other_types_make_no_rows(kind: Any) -> None:
    assert rows_for(message("track", event="X", properties={}) | {"type": kind}, now=NOW) == []


# --- event tables and naming ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "table"),
    [
        ("Tracks", "_tracks"),
        ("Users", "_users"),
        ("identifies", "_identifies"),
        ("Order Completed", "order_completed"),
    ],
)
def test_event_tables_never_mix_with_standard_tables(event: str, table: str) -> None:
    found = tables(track(event, {"a": 1}))
    assert set(found) == {"tracks", table}
    assert found["tracks"]["event"] == table
    assert found["tracks"]["event_text"] == event


def test_event_without_letters_or_digits_only_goes_to_tracks() -> None:
    found = tables(track("???", {"a": 1}))
    assert set(found) == {"tracks"}
    assert "event" not in found["tracks"]
    assert found["tracks"]["event_text"] == "???"


def test_redshift_naming_in_rows() -> None:
    found = tables(
        track("101 Account Update", {"open": True, "user": "x", "plan": "p"}), naming=REDSHIFT
    )
    assert set(found) == {"tracks", "_101_account_update"}
    assert found["tracks"]["event"] == "_101_account_update"
    row = found["_101_account_update"]
    assert row["_open"] is True and row["_user"] == "x" and row["plan"] == "p"
    assert row["timestamp"] == T0_DT  # standard columns are never renamed
    redshift_open = tables(track("Open", {}), naming=REDSHIFT)
    assert set(redshift_open) == {"tracks", "_open"}


def test_postgres_naming_cuts_long_columns() -> None:
    row = dict(rows_for(track("X", {"a" * 100: 1}), now=NOW, naming=POSTGRES))["x"]
    assert row["a" * 63] == 1


# --- timestamps, uuid -------------------------------------------------------------------------


def test_timestamps_are_aware_utc_datetimes() -> None:
    row = tables(
        message("page", timestamp="2015-02-23T23:28:55.111+01:00", sentAt="2015-2-23T22:28:55.111Z")
    )["pages"]
    assert row["timestamp"] == T0_DT and row["timestamp"].tzinfo is UTC
    assert row["sent_at"] == T0_DT
    for column in ("received_at", "sent_at", "timestamp", "original_timestamp", "uuid_ts"):
        assert row[column].tzinfo is UTC


def test_naive_now_is_taken_as_utc() -> None:
    row = rows_for(message("page"), now=datetime(2024, 5, 1, 12))[0][1]
    assert row["uuid_ts"] == NOW and row["uuid_ts"].tzinfo is UTC


def test_uuid_is_a_deterministic_uuid3_of_the_message_id() -> None:
    found = tables(message("identify", messageId="022bb90c-bbac-11e4-8dfc-aa07a5b093db"))
    expected = str(uuid.uuid3(_UUID_NAMESPACE, "022bb90c-bbac-11e4-8dfc-aa07a5b093db"))
    assert found["identifies"]["uuid"] == expected
    assert found["users"]["uuid"] == expected
    for message_id in ("a", "ajs-f8ca1e4de5024d9430b3928bd8ac6b96", "é" * 40):
        row = rows_for(message("page", messageId=message_id), now=NOW)[0][1]
        assert row["uuid"] == str(uuid.uuid3(_UUID_NAMESPACE, message_id))


def test_ids_are_text() -> None:
    row = tables(message("page", userId=12345, anonymousId=9.5))["pages"]
    assert row["user_id"] == "12345" and row["anonymous_id"] == "9.5"
