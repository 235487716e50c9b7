"""Loaders' steps for materialized tables (Profiles Sync): read rows back by key, replace the
rows of some keys, and remake a view — the same behaviour on DuckDB and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from headwater.errors import WarehouseError
from headwater.warehouse.columns import ColumnType, TableRows
from headwater.warehouse.loaders import Loader

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
S = "space_one"
TYPES: dict[str, ColumnType] = {
    "id": "varchar",
    "canonical_segment_id": "varchar",
    "name": "varchar",
    "value": "varchar",
    "timestamp": "timestamp",
}


def traits(*rows: tuple[str, str, str], at: datetime = T0) -> TableRows:
    return TableRows(
        "user_traits",
        [
            {"id": f"{c}/{n}", "canonical_segment_id": c, "name": n, "value": v, "timestamp": at}
            for c, n, v in rows
        ],
        types=dict(TYPES),
    )


def held(loader: Loader) -> list[tuple[Any, ...]]:
    return sorted(
        loader.query(f"SELECT id, canonical_segment_id, name, value FROM {S}.user_traits")[1]
    )


def test_replace_keeps_other_keys_and_swaps_the_rows_of_the_given_ones(loader: Loader) -> None:
    loader.replace(
        S, traits(("a", "plan", "free"), ("b", "city", "Oslo")), "canonical_segment_id", []
    )
    result = loader.replace(
        S, traits(("a", "plan", "pro"), ("a", "city", "Oslo")), "canonical_segment_id", ["a", "b"]
    )

    assert result == (2, [])
    assert held(loader) == [("a/city", "a", "city", "Oslo"), ("a/plan", "a", "plan", "pro")]


def test_replace_deletes_rows_whose_id_comes_again_under_another_key(loader: Loader) -> None:
    loader.replace(S, traits(("a", "plan", "free")), "canonical_segment_id", [])
    moved = TableRows(
        "user_traits",
        [{"id": "a/plan", "canonical_segment_id": "z", "name": "plan", "value": "free"}],
        types=dict(TYPES),
    )

    loader.replace(S, moved, "canonical_segment_id", ["z"])

    assert held(loader) == [("a/plan", "z", "plan", "free")]


def test_replace_with_no_rows_only_deletes(loader: Loader) -> None:
    assert loader.replace(S, traits(), "canonical_segment_id", ["a"]) == (0, [])
    assert loader.columns(S) == {}  # no table made for nothing

    loader.replace(
        S, traits(("a", "plan", "free"), ("b", "plan", "pro")), "canonical_segment_id", []
    )
    assert loader.replace(S, traits(), "canonical_segment_id", ["a"]) == (0, [])
    assert held(loader) == [("b/plan", "b", "plan", "pro")]


def test_replace_adds_new_columns_and_casts_like_a_load(loader: Loader) -> None:
    loader.replace(S, traits(("a", "plan", "free")), "canonical_segment_id", [])
    rows = traits(("a", "plan", "pro"))
    rows.rows[0]["seq"] = "7"  # text into a new integer column: cast
    rows.types["seq"] = "integer"

    loader.replace(S, rows, "canonical_segment_id", ["a"])

    assert loader.columns(S)["user_traits"]["seq"] == "integer"
    assert loader.query(f"SELECT value, seq FROM {S}.user_traits")[1] == [("pro", 7)]


def test_fetch_reads_the_rows_of_some_keys_as_dicts(loader: Loader) -> None:
    assert loader.fetch(S, "user_traits", "canonical_segment_id", ["a"]) == []  # no table yet
    later = T0 + timedelta(hours=1)
    loader.replace(
        S, traits(("a", "plan", "free"), ("b", "plan", "pro"), at=later), "canonical_segment_id", []
    )
    loader.replace(S, traits(("c", "it's", "quoted")), "canonical_segment_id", ["c"])

    found = loader.fetch(S, "user_traits", "canonical_segment_id", ["a", "c", "nobody"])

    assert sorted(found, key=lambda r: str(r["id"])) == [
        {"id": "a/plan", "canonical_segment_id": "a", "name": "plan", "value": "free",
         "timestamp": later},
        {"id": "c/it's", "canonical_segment_id": "c", "name": "it's", "value": "quoted",
         "timestamp": T0},
    ]  # fmt: skip
    assert loader.fetch(S, "user_traits", "canonical_segment_id", []) == []


def test_replace_view_changes_its_columns(loader: Loader) -> None:
    loader.replace(S, traits(("a", "plan", "free")), "canonical_segment_id", [])
    loader.replace_view(S, "names", f"SELECT canonical_segment_id FROM {S}.user_traits")
    assert loader.query(f"SELECT * FROM {S}.names")[1] == [("a",)]

    # PostgreSQL's CREATE OR REPLACE VIEW cannot drop or rename columns: the view is remade.
    loader.replace_view(S, "names", f"SELECT name, value FROM {S}.user_traits")

    assert loader.query(f"SELECT * FROM {S}.names") == (["name", "value"], [("plan", "free")])
    assert "names" not in loader.columns(S)  # a view, not a table


def test_a_bad_view_is_a_warehouse_error_and_keeps_the_old_one(loader: Loader) -> None:
    loader.replace(S, traits(("a", "plan", "free")), "canonical_segment_id", [])
    loader.replace_view(S, "names", f"SELECT name FROM {S}.user_traits")

    with pytest.raises(WarehouseError):
        loader.replace_view(S, "names", f"SELECT nothing_here FROM {S}.user_traits")

    assert loader.query(f"SELECT * FROM {S}.names")[1] == [("plan",)]
