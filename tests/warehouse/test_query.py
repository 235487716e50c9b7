"""WarehouseQueries: a user's query on a real DuckDB file or PostgreSQL database — rows
streamed in batches, read-only, cut off from the machine's files, refusals told apart from
outages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest

from headwater.errors import NotFoundError, QueryError, WarehouseError
from headwater.store.database import database_url, open_engine
from headwater.store.migrations import migrate
from headwater.store.workspace import WorkspaceStore
from headwater.warehouse.query import BATCH_ROWS, WarehouseQueries
from headwater.warehouse.store import WarehouseStore
from tests.support.clock import Clock
from tests.support.ports import free_port
from tests.support.sql_traits import Warehouse, add_warehouse


def fetch(queries: WarehouseQueries, warehouse_id: str, query: str, **options: Any) -> list[Any]:
    with queries.rows(warehouse_id, query, **options) as found:
        return list(found[1])


@pytest.fixture
def store(tmp_path: Path) -> WorkspaceStore:
    engine = open_engine(database_url(tmp_path / "state", None))
    migrate(engine)
    made = WorkspaceStore(engine, clock=Clock())
    made.ensure_workspace("acme")
    return made


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def warehouse(request: pytest.FixtureRequest, store: WorkspaceStore, tmp_path: Path) -> Warehouse:
    url = request.getfixturevalue("pg_database") if request.param == "postgres" else None
    return add_warehouse(store, request.param, "dw", tmp_path, url)


@pytest.fixture
def queries(store: WorkspaceStore, tmp_path: Path) -> WarehouseQueries:
    return WarehouseQueries(WarehouseStore(store), tmp_path, lock_timeout=1.0)


def test_rows_stream_past_a_batch_and_stop_at_the_limit(
    warehouse: Warehouse, queries: WarehouseQueries
) -> None:
    total = BATCH_ROWS * 2 + 7
    warehouse.execute(
        "CREATE TABLE numbers AS SELECT CAST(n AS BIGINT) AS n, 'u' || n AS user_id "
        + (
            f"FROM range({total}) AS t(n)"
            if warehouse.kind == "duckdb"
            else f"FROM generate_series(0, {total - 1}) AS n"
        )
    )
    with queries.rows(warehouse.id, "select user_id, n from numbers order by n;") as found:
        columns, rows = found
        got = list(rows)
    assert columns == ["user_id", "n"]
    assert len(got) == total
    assert got[0] == ("u0", 0) and got[-1] == (f"u{total - 1}", total - 1)
    with queries.rows(warehouse.id, "select n from numbers order by n", limit=3) as found:
        assert list(found[1]) == [(0,), (1,), (2,)]


def test_queries_cannot_write(warehouse: Warehouse, queries: WarehouseQueries) -> None:
    warehouse.execute("CREATE TABLE kept (n INTEGER)")
    for statement in ("insert into kept values (1)", "drop table kept", "create table x (n int)"):
        with pytest.raises(QueryError):
            fetch(queries, warehouse.id, statement)
    with queries.rows(warehouse.id, "select count(*) from kept") as found:
        assert list(found[1]) == [(0,)]


def test_duckdb_queries_cannot_read_the_machines_files(
    store: WorkspaceStore, queries: WarehouseQueries, tmp_path: Path
) -> None:
    warehouse = add_warehouse(store, "duckdb", "dw", tmp_path)
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    for query in (
        f"select * from read_csv('{secret}')",
        f"attach '{tmp_path / 'state' / 'state.db'}' as state",
    ):
        with pytest.raises(QueryError, match=r"disabled by configuration|Permission"):
            fetch(queries, warehouse.id, query)


def test_refusals_and_outages_are_told_apart(
    warehouse: Warehouse, queries: WarehouseQueries, store: WorkspaceStore, tmp_path: Path
) -> None:
    with pytest.raises(QueryError, match="no_such_table"):
        fetch(queries, warehouse.id, "select * from no_such_table")
    with pytest.raises(QueryError, match=r"syntax|Parser"):
        fetch(queries, warehouse.id, "selec 1")
    with pytest.raises(QueryError, match="empty"):
        fetch(queries, warehouse.id, " ;; ")
    with pytest.raises(NotFoundError):
        fetch(queries, "wh_gone", "select 1")

    warehouses = WarehouseStore(store)
    if warehouse.kind == "duckdb":  # a sync writing the file: the query waits, then gives up
        writer = duckdb.connect(warehouse.target)
        try:
            with pytest.raises(WarehouseError, match="in use"):
                fetch(queries, warehouse.id, "select 1")
        finally:
            writer.close()
    if warehouse.kind == "duckdb":
        warehouses.update(warehouse.id, settings={"path": str(tmp_path / "missing.duckdb")})
        with pytest.raises(QueryError, match="the warehouse has no tables yet"):
            fetch(queries, warehouse.id, "select 1")
    else:
        current = warehouses.require(warehouse.id).settings
        warehouses.update(warehouse.id, settings={**current, "port": free_port()})
        with pytest.raises(WarehouseError, match="cannot connect to PostgreSQL"):
            fetch(queries, warehouse.id, "select 1")

    lake = warehouses.create("lake", "data-lake", settings={"location": "lake"})
    with pytest.raises(QueryError, match="data-lake"), queries.rows(lake.id, "select 1"):
        pass


def test_a_slow_query_is_stopped(warehouse: Warehouse, queries: WarehouseQueries) -> None:
    slow = (
        "select count(*) from range(100000000000) a"
        if warehouse.kind == "duckdb"
        else "select pg_sleep(5)"
    )
    with pytest.raises(QueryError, match=r"ran longer than 0\.3 seconds"):
        fetch(queries, warehouse.id, slow, timeout=0.3)
