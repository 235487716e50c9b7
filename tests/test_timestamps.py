"""Timestamps: lenient parsing of what clients send, one exact stored form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from headwater.timestamps import format_timestamp, normalize_timestamp, parse_timestamp


def utc(
    year: int,
    month: int,
    day: int,
    hour: int = 0,
    minute: int = 0,
    second: int = 0,
    microsecond: int = 0,
) -> datetime:
    return datetime(year, month, day, hour, minute, second, microsecond, tzinfo=UTC)


# --- parse_timestamp ---------------------------------------------------------------------------


def test_parses_the_stored_form() -> None:
    parsed = parse_timestamp("2015-12-12T19:11:01.152Z")
    assert parsed == utc(2015, 12, 12, 19, 11, 1, 152000)
    assert parsed is not None and parsed.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Segment's own HTTP API example, month without zero padding.
        ("2015-2-02T00:30:08.276Z", utc(2015, 2, 2, 0, 30, 8, 276000)),
        ("2015-2-2T0:30:8.276Z", utc(2015, 2, 2, 0, 30, 8, 276000)),
        ("2012-12-02T00:30:08.276Z", utc(2012, 12, 2, 0, 30, 8, 276000)),
        # Fractions of any length: none, 1, 3, 6, 7 (.NET's "o" format), 9 digits.
        ("2015-12-12T19:11:01Z", utc(2015, 12, 12, 19, 11, 1)),
        ("2015-12-12T19:11:01.1Z", utc(2015, 12, 12, 19, 11, 1, 100000)),
        ("2015-12-12T19:11:01.123456Z", utc(2015, 12, 12, 19, 11, 1, 123456)),
        ("2015-12-12T19:11:01.1234567+00:00", utc(2015, 12, 12, 19, 11, 1, 123456)),
        ("2015-12-12T19:11:01.123456789Z", utc(2015, 12, 12, 19, 11, 1, 123456)),
        ("2015-2-2T19:11:01.1234567Z", utc(2015, 2, 2, 19, 11, 1, 123456)),
        # Offsets are converted to UTC.
        ("2015-12-12T20:11:01.152+01:00", utc(2015, 12, 12, 19, 11, 1, 152000)),
        ("2015-12-12T14:11:01.152-0500", utc(2015, 12, 12, 19, 11, 1, 152000)),
        ("2015-12-12T20:11:01+01", utc(2015, 12, 12, 19, 11, 1)),
        ("2015-2-2T20:11:01.152+01:00", utc(2015, 2, 2, 19, 11, 1, 152000)),
        ("2015-1-1T00:30:00-01:30", utc(2015, 1, 1, 2, 0, 0)),
        # Date only, no zone, lower case, space separator, surrounding blanks.
        ("2015-12-12", utc(2015, 12, 12)),
        ("2015-2-2", utc(2015, 2, 2)),
        ("2015-12-12T19:11:01", utc(2015, 12, 12, 19, 11, 1)),
        ("2015-12-12t19:11:01.152z", utc(2015, 12, 12, 19, 11, 1, 152000)),
        ("2015-12-12 19:11:01.152Z", utc(2015, 12, 12, 19, 11, 1, 152000)),
        (" 2015-12-12T19:11:01.152Z ", utc(2015, 12, 12, 19, 11, 1, 152000)),
        ("2015-12-12T19:11", utc(2015, 12, 12, 19, 11)),
        # JavaScript's Date#toISOString for a date past 9999 is not representable; near it is.
        ("9999-12-31T23:59:59.999Z", utc(9999, 12, 31, 23, 59, 59, 999000)),
    ],
)
def test_parses_leniently(text: str, expected: datetime) -> None:
    parsed = parse_timestamp(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "yesterday",
        "12/12/2015",
        "2015-13-01T00:00:00Z",
        "2015-02-30T00:00:00Z",
        "2015-12-12T25:00:00Z",
        "2015-12-12T19:61:00Z",
        "2015-12-12T19:11:60Z",
        "2015-12-12T19:11:01.152+25:00",
        "2015-12-12T19:11:01.152Q",
        "2015-12-12T19:11:1.x",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "2015-12-12T19:11:01.152Z trailing",
        "\uff12\uff10\uff11\uff15-12-12T19:11:01.152Z",  # full-width digits
    ],
)
def test_unparseable_strings_give_none(value: str) -> None:
    assert parse_timestamp(value) is None


@pytest.mark.parametrize(
    "value",
    [
        None,
        1449947461152,
        1449947461.152,
        True,
        ["2015-12-12T19:11:01.152Z"],
        {"at": "2015-12-12T19:11:01.152Z"},
        b"2015-12-12T19:11:01.152Z",
    ],
)
def test_non_strings_give_none(value: object) -> None:
    assert parse_timestamp(value) is None


# --- format_timestamp --------------------------------------------------------------------------


def test_formats_with_milliseconds_and_z() -> None:
    assert format_timestamp(utc(2015, 12, 12, 19, 11, 1, 152000)) == "2015-12-12T19:11:01.152Z"


def test_formats_whole_seconds_with_zero_milliseconds() -> None:
    assert format_timestamp(utc(2015, 2, 2, 0, 30, 8)) == "2015-02-02T00:30:08.000Z"


def test_format_cuts_microseconds_rather_than_rounding() -> None:
    assert format_timestamp(utc(2015, 12, 31, 23, 59, 59, 999999)) == "2015-12-31T23:59:59.999Z"


def test_format_converts_other_zones_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    dt = datetime(2016, 1, 1, 1, 30, 0, 5000, tzinfo=plus_two)
    assert format_timestamp(dt) == "2015-12-31T23:30:00.005Z"


def test_format_takes_naive_datetimes_as_utc() -> None:
    assert format_timestamp(datetime(2015, 12, 12, 19, 11, 1, 152000)) == "2015-12-12T19:11:01.152Z"


def test_format_pads_small_years() -> None:
    assert format_timestamp(utc(999, 1, 2, 3, 4, 5, 6000)) == "0999-01-02T03:04:05.006Z"


@pytest.mark.parametrize(
    "text",
    ["2015-12-12T19:11:01.152Z", "2024-02-29T00:00:00.000Z", "1970-01-01T00:00:00.001Z"],
)
def test_stored_form_round_trips(text: str) -> None:
    parsed = parse_timestamp(text)
    assert parsed is not None
    assert format_timestamp(parsed) == text


# --- normalize_timestamp -----------------------------------------------------------------------


def test_normalize_keeps_the_stored_form_as_sent() -> None:
    text = "2015-12-12T19:11:01.152Z"
    result = normalize_timestamp(text)
    assert result is not None
    assert result == (utc(2015, 12, 12, 19, 11, 1, 152000), text)
    assert result[1] is text  # reused, not formatted again


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("2015-2-02T00:30:08.276Z", "2015-02-02T00:30:08.276Z"),
        ("2015-12-12T20:11:01.152+01:00", "2015-12-12T19:11:01.152Z"),
        ("2015-12-12T19:11:01.152789Z", "2015-12-12T19:11:01.152Z"),
        ("2015-12-12T19:11:01Z", "2015-12-12T19:11:01.000Z"),
        ("2015-12-12", "2015-12-12T00:00:00.000Z"),
        ("2015-12-12t19:11:01.152z", "2015-12-12T19:11:01.152Z"),
        # Same length and separators as the stored form, but not the stored form.
        ("2015-W50-6T19:11:01.152Z", "2015-12-12T19:11:01.152Z"),
        ("2015-12-12T19:11:01.15 Z", "2015-12-12T19:11:01.150Z"),
    ],
)
def test_normalize_gives_the_stored_form(text: str, stored: str) -> None:
    result = normalize_timestamp(text)
    assert result is not None
    assert result[1] == stored
    assert format_timestamp(result[0]) == stored


def test_normalize_rejects_what_parse_rejects() -> None:
    assert normalize_timestamp("not a date") is None
    assert normalize_timestamp(1449947461152) is None
    assert normalize_timestamp(None) is None
