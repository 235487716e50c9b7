"""Segment's rules for a SQL trait's result (§6; A-UE-64's refusals), on rows as the warehouses
hand them over."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import pytest

from headwater.engage.sql_traits.results import (
    MAX_COLUMNS,
    Reader,
    Record,
    canonical,
    decoded,
    shape_of,
    trait_value,
)
from headwater.errors import QueryError


def read(columns: list[str], rows: list[tuple[Any, ...]], level: str = "users") -> list[Record]:
    return list(Reader(shape_of(columns, level)).read(rows))


def test_the_identifier_column() -> None:
    shape = shape_of(["USER_ID", "email", "plan"], "users")
    assert (shape.identifier, shape.id_index) == ("user_id", 0)
    assert shape.trait_names == ["email", "plan"]  # email beside user_id is a trait
    assert shape_of(["Anonymous_Id", "email", "x"], "users").identifier == "anonymous_id"
    assert shape_of(["x", "email"], "users").identifier == "email"
    assert shape_of(["user_id", "group_id"], "users").trait_names == ["group_id"]

    accounts = shape_of(["plan", "user_id", "group_id", "seats"], "accounts")
    assert (accounts.identifier, accounts.id_index, accounts.user_index) == ("group_id", 2, 1)
    assert accounts.trait_names == ["plan", "seats"]


@pytest.mark.parametrize(
    ("columns", "level", "message"),
    [
        (
            ["user_id", *(f"c{i}" for i in range(MAX_COLUMNS))],
            "users",
            "maximum columns exceeded: the query returns 26 columns",
        ),
        (["user_id", "anonymous_id", "x"], "users", "cannot include both user_id and anonymous_id"),
        (["id", "x"], "users", "must return a user_id, email or anonymous_id column"),
        (["user_id"], "users", "at least one trait column besides user_id"),
        (["user_id", "x"], "accounts", "must return a group_id column"),
        (["group_id", "user_id"], "accounts", "at least one trait column besides group_id"),
        (["user_id", "x", "x"], "users", "two columns named 'x'"),
        (["user_id", "USER_ID", "x"], "users", "two user_id columns"),
    ],
)
def test_refused_columns(columns: list[str], level: str, message: str) -> None:
    with pytest.raises(QueryError, match=message):
        shape_of(columns, level)
    assert len(["user_id", *(f"c{i}" for i in range(MAX_COLUMNS - 1))]) == 25
    shape_of(["user_id", *(f"c{i}" for i in range(MAX_COLUMNS - 1))], "users")  # 25: fine


def test_rows_null_and_duplicate_identifiers() -> None:
    with pytest.raises(QueryError, match=r"duplicate user_id 'u1' \(rows 1 and 3\)"):
        read(["user_id", "n"], [("u1", 1), ("u2", 2), ("u1", 3)])
    with pytest.raises(QueryError, match="row 2: user_id is null"):
        read(["user_id", "n"], [("u1", 1), (None, 2)])
    with pytest.raises(QueryError, match="row 1: email is null"):
        read(["email", "n"], [("", 1)])
    with pytest.raises(QueryError, match=r"duplicate group_id '7' .* a different account"):
        read(["group_id", "n"], [(7, 1), (7.0, 2)], "accounts")
    with pytest.raises(QueryError, match="row 1: user_id must be text or a number, not bool"):
        read(["user_id", "n"], [(True, 1)])


def test_too_many_rows() -> None:
    reader = Reader(shape_of(["user_id", "n"], "users"), max_rows=2)
    with pytest.raises(QueryError, match="more than 2 rows"):
        list(reader.read([("a", 1), ("b", 2), ("c", 3)]))


def test_large_records_and_long_identifiers_are_discarded_and_counted() -> None:
    reader = Reader(shape_of(["user_id", "note"], "users"))
    rows = [("u1", "x" * 16_000), ("u2", "x" * 16_500), ("u" * 501, "x"), ("u" * 500, "x")]
    records = list(reader.read(rows))
    assert [r.text is None for r in records] == [False, True, True, False]
    assert (reader.rows, reader.discarded) == (4, 2)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (3, 3),
        (8.0, 8),  # JavaScript's 8
        (2.5, 2.5),
        (Decimal("8.0000000000000000"), 8),
        (Decimal("0.125"), 0.125),
        (float("nan"), None),  # JSON.stringify(NaN) is null
        (float("inf"), None),
        (Decimal("NaN"), None),
        ("text", "text"),
        (None, None),
        (datetime(2024, 1, 2, 3, 4, 5, 678900, tzinfo=UTC), "2024-01-02T03:04:05.678Z"),
        (datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05.000Z"),  # naive: UTC
        (date(2024, 1, 2), "2024-01-02"),
        (time(3, 4, 5), "03:04:05"),
        (["a", "b", 3, 1.5, True, None], "a,b,3,1.5,true,"),
        ((1, 2), "1,2"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
    ],
)
def test_values_as_segment_messages_carry_them(value: Any, expected: Any) -> None:
    converted = trait_value(value, "c", 1)
    assert converted == expected
    assert type(converted) is type(expected)


@pytest.mark.parametrize(
    ("value", "what"),
    [({"a": 1}, "an object"), (b"\x00", "a binary value"), ([{"a": 1}], "an object")],
)
def test_objects_and_binary_are_refused(value: Any, what: str) -> None:
    with pytest.raises(
        QueryError, match=f"column 'c', row 4: {what}.*cast it to text in the query"
    ):
        trait_value(value, "c", 4)


def test_canonical_text_is_one_per_value() -> None:
    assert canonical({"b": 1, "a": "é"}, None) == canonical({"a": "é", "b": 1}, None)
    assert canonical({"a": 1}, None) != canonical({"a": 1}, "u1")
    assert decoded(canonical({"a": 1, "b": None}, "u1")) == ({"a": 1, "b": None}, "u1")
    [record] = read(["user_id", "avg"], [(42, 8.0)])
    assert (record.identifier, record.traits) == ("42", {"avg": 8})
