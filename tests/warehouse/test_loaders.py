"""Warehouse loaders: the same behaviour on DuckDB and PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from headwater.errors import WarehouseError
from headwater.warehouse.columns import ColumnType, TableRows
from headwater.warehouse.loaders import Loader, open_loader
from headwater.warehouse.loaders.duckdb import DuckDBLoader
from headwater.warehouse.loaders.postgres import PostgresLoader
from headwater.warehouse.rows import column_type

T0 = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
S = "web_app"


def table(
    name: str,
    *rows: dict[str, Any],
    types: dict[str, ColumnType] | None = None,
) -> TableRows:
    """Rows as the rows module hands them over: types from each column's latest value."""
    inferred: dict[str, ColumnType] = {}
    for row in rows:
        inferred.update({k: column_type(v) for k, v in row.items() if v is not None})
    return TableRows(name, [dict(r) for r in rows], {**inferred, **(types or {})})


def select(loader: Loader, sql: str) -> list[tuple[Any, ...]]:
    return loader.query(sql)[1]


def test_creates_schema_and_table_with_the_five_types(loader: Loader) -> None:
    row = {
        "id": "m1",
        "received_at": T0,
        "quantity": 3,
        "price": 9.99,
        "gift": True,
        "currency": "EUR",
    }
    result = loader.load(S, table("order_completed", row))

    assert result == (1, [])
    assert loader.columns(S) == {
        "order_completed": {
            "id": "varchar",
            "received_at": "timestamp",
            "quantity": "integer",
            "price": "float",
            "gift": "boolean",
            "currency": "varchar",
        }
    }
    names, rows = loader.query(
        f"SELECT id, received_at, quantity, price, gift, currency FROM {S}.order_completed"
    )
    assert names == ["id", "received_at", "quantity", "price", "gift", "currency"]
    assert rows == [("m1", T0, 3, 9.99, True, "EUR")]
    assert rows[0][1].utcoffset() == timedelta(0)  # timestamps come back in UTC


def test_sql_types_per_database(loader: Loader) -> None:
    loader.load(S, table("t", {"id": "m1", "ts": T0, "n": 1, "f": 1.5, "b": False, "s": "x"}))
    _, rows = loader.query(
        "SELECT column_name, data_type, character_maximum_length FROM information_schema.columns "
        f"WHERE table_schema = '{S}' AND table_name = 't' ORDER BY ordinal_position"
    )
    found = {name: (str(kind).lower(), length) for name, kind, length in rows}
    if isinstance(loader, DuckDBLoader):
        assert found == {
            "id": ("varchar", None),
            "ts": ("timestamp with time zone", None),
            "n": ("bigint", None),
            "f": ("double", None),
            "b": ("boolean", None),
            "s": ("varchar", None),
        }
    else:
        assert found == {
            "id": ("character varying", 512),
            "ts": ("timestamp with time zone", None),
            "n": ("bigint", None),
            "f": ("double precision", None),
            "b": ("boolean", None),
            "s": ("character varying", 512),
        }


def test_a_later_batch_adds_a_column(loader: Loader) -> None:
    loader.load(S, table("signed_up", {"id": "m1", "plan": "free"}))
    # A column whose values are all null is not created (AC-127).
    loader.load(S, table("signed_up", {"id": "m2", "plan": "pro", "referrer": None}))
    assert loader.columns(S)["signed_up"] == {"id": "varchar", "plan": "varchar"}

    result = loader.load(S, table("signed_up", {"id": "m3", "plan": "pro", "seats": 5}))

    assert result.rows == 1
    assert loader.columns(S)["signed_up"] == {
        "id": "varchar",
        "plan": "varchar",
        "seats": "integer",
    }
    assert select(loader, f"SELECT id, plan, seats FROM {S}.signed_up ORDER BY id") == [
        ("m1", "free", None),
        ("m2", "pro", None),
        ("m3", "pro", 5),
    ]


def test_values_of_another_type_are_cast_best_effort(loader: Loader) -> None:
    loader.load(
        S, table("cart", {"id": "m1", "price": 5, "paid": True, "paid_at": T0, "note": "x"})
    )

    # 5.5 into an integer column: truncated (AC-126); "abc": NULL and a notice.
    later = [
        {"id": "m2", "price": 5.5, "paid": "false", "paid_at": "2024-03-02T00:00:00Z", "note": 42},
        {"id": "m3", "price": "abc", "paid": 1, "paid_at": "not a time", "note": 2.5},
        {"id": "m4", "price": "7", "paid": "maybe", "paid_at": T0, "note": True},
    ]
    result = loader.load(S, table("cart", *later))

    assert result.rows == 3
    assert loader.columns(S)["cart"] == {
        "id": "varchar",
        "price": "integer",
        "paid": "boolean",
        "paid_at": "timestamp",
        "note": "varchar",
    }
    assert select(loader, f"SELECT id, price, paid, paid_at, note FROM {S}.cart ORDER BY id") == [
        ("m1", 5, True, T0, "x"),
        ("m2", 5, False, datetime(2024, 3, 2, tzinfo=UTC), "42"),
        ("m3", None, True, None, "2.5"),
        ("m4", 7, None, T0, "true"),
    ]
    assert sorted(result.notices) == [
        "cart.paid: 1 value(s) could not be cast to boolean and were loaded as NULL "
        "(first: 'maybe')",
        "cart.paid_at: 1 value(s) could not be cast to timestamp and were loaded as NULL "
        "(first: 'not a time')",
        "cart.price: 1 value(s) could not be cast to integer and were loaded as NULL "
        "(first: 'abc')",
    ]


def test_numbers_never_become_timestamps(loader: Loader) -> None:
    loader.load(S, table("t", {"id": "m1", "seen_at": T0}))
    result = loader.load(
        S,
        table(
            "t",
            {"id": "m2", "seen_at": 1_700_000_000},
            {"id": "m3", "seen_at": "2024-03-01T12:00:00Z"},
        ),
    )
    assert select(loader, f"SELECT id, seen_at FROM {S}.t ORDER BY id") == [
        ("m1", T0),
        ("m2", None),
        ("m3", T0),
    ]
    assert result.notices == [
        "t.seen_at: 1 value(s) could not be cast to timestamp and were "
        "loaded as NULL (first: 1700000000)"
    ]


def test_columns_missing_from_types_are_still_loaded(loader: Loader) -> None:
    rows = TableRows("t", [{"id": "m1", "a": 1, "zeta": "z", "beta": 2.5}], {"a": "integer"})
    assert loader.load(S, rows).rows == 1
    assert loader.columns(S)["t"] == {
        "id": "varchar",
        "a": "integer",
        "beta": "float",
        "zeta": "varchar",
    }


def test_dedupe_on_id_across_loads_and_within_a_batch(loader: Loader) -> None:
    first = loader.load(S, table("tracks", {"id": "a", "event": "x"}, {"id": "b", "event": "x"}))
    # b again (30 h later, past the API's dedupe window: AC-129), c twice in one batch.
    second = loader.load(
        S,
        table(
            "tracks",
            {"id": "b", "event": "y"},
            {"id": "c", "event": "first"},
            {"id": "c", "event": "second"},
        ),
    )

    assert (first.rows, second.rows) == (2, 1)
    assert select(loader, f"SELECT id, event FROM {S}.tracks ORDER BY id") == [
        ("a", "x"),
        ("b", "x"),
        ("c", "first"),
    ]
    assert loader.load(S, table("tracks", {"id": "a", "event": "z"})).rows == 0


def test_rows_without_an_id_are_skipped_with_a_notice(loader: Loader) -> None:
    result = loader.load(S, table("tracks", {"id": "a", "event": "x"}, {"event": "y"}))
    assert result == (1, ["tracks: 1 row(s) without an id were skipped"])
    assert loader.load(S, table("pages", {"name": "Home"})) == (
        0,
        ["pages: 1 row(s) without an id were skipped"],
    )
    assert "pages" not in loader.columns(S)


def test_users_are_upserted_with_the_latest_traits(loader: Loader) -> None:
    identifies = [
        {"id": "m1", "user_id": "u1", "timestamp": T0, "plan": "free", "email": "a@x.io"},
        {"id": "m2", "user_id": "u1", "timestamp": T0 + timedelta(hours=1), "plan": "premium"},
    ]
    users = [
        {"id": "u1", "timestamp": T0, "plan": "free", "email": "a@x.io"},
        {"id": "u1", "timestamp": T0 + timedelta(hours=1), "plan": "premium"},
    ]
    loader.load(S, table("identifies", *identifies))
    result = loader.load(S, table("users", *users))

    # AC-128: two identifies rows, one users row with the newest plan; email kept.
    assert result.rows == 1
    assert select(loader, f"SELECT count(*) FROM {S}.identifies") == [(2,)]
    assert select(loader, f"SELECT id, plan, email, timestamp FROM {S}.users") == [
        ("u1", "premium", "a@x.io", T0 + timedelta(hours=1))
    ]

    # An older identify arriving late fills a gap but does not override newer traits.
    late = {"id": "u1", "timestamp": T0 - timedelta(days=1), "plan": "trial", "age": 41}
    assert loader.load(S, table("users", late)).rows == 1
    # A newer one overrides what it carries and keeps the rest.
    newer = {"id": "u1", "timestamp": T0 + timedelta(days=1), "email": "b@x.io"}
    loader.load(S, table("users", newer, {"id": "u2", "timestamp": T0, "plan": "free"}))

    assert select(loader, f"SELECT id, plan, email, age, timestamp FROM {S}.users ORDER BY id") == [
        ("u1", "premium", "b@x.io", 41, T0 + timedelta(days=1)),
        ("u2", "free", None, None, T0),
    ]


def test_accounts_are_upserted_on_the_group_id(loader: Loader) -> None:
    loader.load(
        S, table("accounts", {"id": "g1", "received_at": T0, "name": "Initech", "employees": 10})
    )
    loader.load(
        S, table("accounts", {"id": "g1", "received_at": T0 + timedelta(days=1), "employees": 12})
    )
    assert select(loader, f"SELECT id, name, employees FROM {S}.accounts") == [
        ("g1", "Initech", 12)
    ]


def test_standard_columns_are_created_without_values(loader: Loader) -> None:
    """AC-120: the columns a Segment user queries exist even when no row has a value."""
    rows = table("tracks", {"id": "m1", "received_at": T0, "event": "x"})
    rows.standard = {
        "id": "varchar",
        "received_at": "timestamp",
        "sent_at": "timestamp",
        "original_timestamp": "timestamp",
        "event": "varchar",
    }
    assert loader.load(S, rows) == (1, [])
    assert loader.columns(S)["tracks"] == {
        "id": "varchar",
        "received_at": "timestamp",
        "sent_at": "timestamp",
        "original_timestamp": "timestamp",
        "event": "varchar",
    }
    assert select(loader, f"SELECT sent_at, original_timestamp FROM {S}.tracks") == [(None, None)]
    # A property with only nulls still makes no column (AC-127).
    rows = table("tracks", {"id": "m2", "received_at": T0, "coupon": None})
    rows.standard = {"sent_at": "timestamp", "uuid_ts": "timestamp"}
    loader.load(S, rows)
    assert set(loader.columns(S)["tracks"]) == {
        "id",
        "received_at",
        "sent_at",
        "original_timestamp",
        "event",
        "uuid_ts",
    }


def test_an_upsert_without_timestamps_orders_by_received_at(loader: Loader) -> None:
    """``timestamp`` is a standard column of ``users``, but a batch where it is NULL
    everywhere cannot say which row is newer: ``received_at`` does."""
    standard: dict[str, ColumnType] = {"timestamp": "timestamp", "received_at": "timestamp"}
    # A new table, and a batch whose newer row comes first.
    batch = table(
        "users",
        {"id": "u0", "received_at": T0 + timedelta(hours=1), "plan": "pro"},
        {"id": "u0", "received_at": T0, "plan": "free"},
    )
    batch.standard = dict(standard)
    loader.load(S, batch)
    assert select(loader, f"SELECT plan, timestamp FROM {S}.users") == [("pro", None)]
    first = table("users", {"id": "u1", "timestamp": T0, "received_at": T0, "plan": "free"})
    first.standard = dict(standard)
    loader.load(S, first)
    later = table("users", {"id": "u1", "received_at": T0 + timedelta(days=1), "plan": "pro"})
    later.standard = dict(standard)
    loader.load(S, later)
    assert select(loader, f"SELECT id, plan FROM {S}.users ORDER BY id") == [
        ("u0", "pro"),
        ("u1", "pro"),
    ]


def test_a_table_of_objects_is_upserted_whatever_its_name(loader: Loader) -> None:
    """Objects a source function sets (AC-110's ``products``): a later set of an id updates
    its row, keeping the properties it did not name."""
    first = table("products", {"id": "p1", "received_at": T0, "name": "Air Max", "size": 11})
    first.upsert = True
    loader.load(S, first)
    later = table("products", {"id": "p1", "received_at": T0 + timedelta(hours=1), "size": 12})
    later.upsert = True
    loader.load(S, later)
    assert select(loader, f"SELECT id, name, size FROM {S}.products") == [("p1", "Air Max", 12)]
    # Without the flag a table keeps the first row of an id (events are never updated).
    kept = table("orders", {"id": "o1", "received_at": T0, "total": 1})
    loader.load(S, kept)
    loader.load(S, table("orders", {"id": "o1", "received_at": T0, "total": 2}))
    assert select(loader, f"SELECT id, total FROM {S}.orders") == [("o1", 1)]


def test_a_segment_query_gives_the_same_answer(loader: Loader) -> None:
    """Users who completed an order twice within a week, with their latest plan."""
    orders = [
        ("o1", "u1", T0),
        ("o2", "u1", T0 + timedelta(days=3)),  # twice in 3 days
        ("o3", "u2", T0),
        ("o4", "u2", T0 + timedelta(days=10)),  # 10 days apart
        ("o5", "u3", T0),  # once
        ("o6", "u4", T0),
        ("o7", "u4", T0 + timedelta(days=6)),
        ("o8", "u4", T0 + timedelta(days=7)),
        ("o9", None, T0),
        ("o10", None, T0 + timedelta(hours=1)),  # anonymous
    ]
    events = [
        {
            "id": i,
            "user_id": u,
            "event": "order_completed",
            "event_text": "Order Completed",
            "timestamp": ts,
            "received_at": ts,
            "total": 10.0,
        }
        for i, u, ts in orders
    ]
    loader.load(S, table("tracks", *[{k: v for k, v in e.items() if k != "total"} for e in events]))
    loader.load(S, table("order_completed", *events[:5]))
    loader.load(S, table("order_completed", *events[3:]))  # overlaps: o4, o5 again
    for user, plan, ts in [
        ("u1", "free", T0),
        ("u1", "premium", T0 + timedelta(days=1)),
        ("u2", "pro", T0),
        ("u4", "team", T0),
    ]:
        loader.load(S, table("users", {"id": user, "timestamp": ts, "plan": plan}))

    names, rows = loader.query(f"""
        SELECT o.user_id, u.plan, count(DISTINCT o.id) AS orders
        FROM {S}.order_completed AS o
        JOIN {S}.order_completed AS o2
          ON o2.user_id = o.user_id AND o2.id <> o.id
         AND o2.timestamp > o.timestamp AND o2.timestamp <= o.timestamp + INTERVAL '7 days'
        LEFT JOIN {S}.users AS u ON u.id = o.user_id
        GROUP BY o.user_id, u.plan
        ORDER BY o.user_id""")

    assert names == ["user_id", "plan", "orders"]
    assert rows == [("u1", "premium", 1), ("u4", "team", 2)]
    assert select(loader, f"SELECT count(*) FROM {S}.order_completed") == [(10,)]


def test_long_strings_nulls_and_awkward_text(loader: Loader) -> None:
    awkward = 'a "quoted", comma\nnew line\t\\N é 日本 \x00end'
    result = loader.load(
        S,
        table(
            "notes",
            {"id": "m1", "body": "é" * 600, "n": None},
            {"id": "m2", "body": awkward, "n": 1},
            {"id": "m3", "body": "", "n": None},
            {"id": "m4", "n": 2},
        ),
    )
    assert result.rows == 4
    rows = select(loader, f"SELECT id, body, n FROM {S}.notes ORDER BY id")
    assert rows == [
        ("m1", "é" * 512, None),
        ("m2", awkward.replace("\x00", ""), 1),
        ("m3", "", None),
        ("m4", None, 2),
    ]


def test_query_errors_are_warehouse_errors(loader: Loader) -> None:
    loader.load(S, table("tracks", {"id": "a"}))
    with pytest.raises(WarehouseError, match="no_such_table"):
        loader.query(f"SELECT * FROM {S}.no_such_table")


# --- DuckDB: one writer, readers between syncs ---------------------------------------------------

READER = textwrap.dedent("""
    import sys, time
    from headwater.errors import WarehouseError
    from headwater.warehouse.loaders.duckdb import DuckDBLoader
    path, hold, timeout = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    reader = DuckDBLoader(path, lock_timeout=timeout)
    try:
        if hold:
            with reader._reader() as conn:  # keep the file open read-only for a while
                print("open", flush=True)
                time.sleep(hold)
        print(reader.query("SELECT count(*) FROM web_app.tracks")[1][0][0], flush=True)
    except WarehouseError as exc:
        print("error:", exc, flush=True)
""")


def _reader(
    path: Path,
    *,
    hold: float = 0.0,
    timeout: float = 0.3,
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", READER, str(path), str(hold), str(timeout)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_duckdb_is_readable_by_another_process_between_loads(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    loader = DuckDBLoader(path, lock_timeout=10)
    loader.load(S, table("tracks", {"id": "a"}, {"id": "b"}))

    # During the sync the file is the loader's: a reader waits, then gives up clearly.
    out, _ = _reader(path, timeout=0.3).communicate(timeout=60)
    assert out.startswith("error:") and "in use" in out

    loader.close()  # the sync is over: readers get in
    out, err = _reader(path).communicate(timeout=60)
    assert out.strip() == "2", err

    # A reader holding the file delays the next load instead of failing it.
    holder = _reader(path, hold=1.0, timeout=5)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
    assert loader.load(S, table("tracks", {"id": "c"})).rows == 1
    holder.communicate(timeout=60)
    assert holder.returncode == 0
    loader.close()

    out, err = _reader(path).communicate(timeout=60)
    assert out.strip() == "3", err


def test_duckdb_query_opens_read_only(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with DuckDBLoader(path) as loader:
        loader.load(S, table("tracks", {"id": "a"}))
    reader = DuckDBLoader(path)
    with pytest.raises(WarehouseError, match="read-only"):
        reader.query(f"DELETE FROM {S}.tracks")
    assert reader.query(f"SELECT id FROM {S}.tracks") == (["id"], [("a",)])
    assert reader.columns("other_schema") == {}


def test_duckdb_ping_failures_say_why(tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match="does not exist"):
        DuckDBLoader(tmp_path / "missing" / "w.duckdb").ping()
    (tmp_path / "not.duckdb").write_text("hello")
    with pytest.raises(WarehouseError, match="not a valid DuckDB database"):
        DuckDBLoader(tmp_path / "not.duckdb").ping()
    with pytest.raises(WarehouseError, match="nothing loaded yet"):
        DuckDBLoader(tmp_path / "new.duckdb").query("SELECT 1")
    assert DuckDBLoader(tmp_path / "new.duckdb").columns(S) == {}


# --- PostgreSQL --------------------------------------------------------------------------------


@pytest.mark.postgres
def test_postgres_ping_failures_say_why(postgres_url: str) -> None:
    host, port = "127.0.0.1", postgres_url.rsplit(":", 1)[1].split("/")[0]
    PostgresLoader(postgres_url).ping()
    with pytest.raises(WarehouseError, match='database "nope" does not exist'):
        PostgresLoader(f"postgresql://postgres@{host}:{port}/nope").ping()
    with pytest.raises(WarehouseError, match='role "nobody" does not exist'):
        PostgresLoader(f"postgres://nobody:secret@{host}:{port}/postgres").ping()
    with pytest.raises(WarehouseError, match=r"no-such-host\.invalid"):
        PostgresLoader("postgresql://postgres@no-such-host.invalid/db").ping()
    with pytest.raises(WarehouseError, match=r"(?i)connection refused") as refused:
        PostgresLoader("postgresql+psycopg://postgres:secret@127.0.0.1:1/db").ping()
    assert "secret" not in str(refused.value)


@pytest.mark.postgres
def test_postgres_cuts_long_names_as_postgres_does(pg_database: str) -> None:
    long = "a_very_long_property_name_that_goes_on_and_on_past_sixty_three_bytes_x"
    with PostgresLoader(pg_database) as loader:
        assert loader.load(S, table("t", {"id": "m1", long: 1})).rows == 1
        assert loader.load(S, table("t", {"id": "m2", long: 2})).rows == 1
        assert loader.columns(S)["t"] == {"id": "varchar", long[:63]: "integer"}


@pytest.mark.postgres
def test_postgres_query_is_read_only(pg_database: str) -> None:
    with PostgresLoader(pg_database) as loader:
        loader.load(S, table("tracks", {"id": "a"}))
        with pytest.raises(WarehouseError, match="read-only transaction"):
            loader.query(f"DELETE FROM {S}.tracks")
        assert select(loader, f"SELECT id FROM {S}.tracks") == [("a",)]


def test_open_loader_refuses_unknown_kinds(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown warehouse kind"):
        open_loader("redshift", "x")
    assert isinstance(open_loader("duckdb", str(tmp_path / "w.duckdb")), DuckDBLoader)
