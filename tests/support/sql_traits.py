"""A workspace with a space and a real warehouse (an embedded DuckDB file, or a PostgreSQL
database) for SQL traits: write tables into the warehouse, run traits, read Engage's outbox."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.engage.sql_traits.definitions import SqlTraitStore
from headwater.engage.sql_traits.runs import SqlTraitRuns
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore
from headwater.unify.spaces import SpaceStore
from headwater.warehouse.query import WarehouseQueries
from headwater.warehouse.store import WarehouseStore
from tests.support.clock import Clock
from tests.support.postgres import pg_settings


@dataclass
class Warehouse:
    """The warehouse a trait queries, and a door to write its tables."""

    kind: str  # duckdb, postgres
    id: str
    name: str
    target: str  # the DuckDB file, or the database URL

    def execute(self, *statements: str) -> None:
        if self.kind == "duckdb":
            conn = duckdb.connect(self.target)
            try:
                for statement in statements:
                    conn.execute(statement)
            finally:
                conn.close()
        else:
            with psycopg.connect(self.target, autocommit=True) as pg:
                for statement in statements:
                    pg.execute(statement.encode())


def add_warehouse(
    store: WorkspaceStore, kind: str, name: str, data_dir: Path, pg_url: str | None = None
) -> Warehouse:
    """A DuckDB warehouse on a file in ``data_dir``, or a PostgreSQL one on ``pg_url``."""
    warehouses = WarehouseStore(store)
    if kind == "duckdb":
        path = data_dir / f"{name}.duckdb"
        duckdb.connect(str(path)).close()
        made = warehouses.create(name, "duckdb", settings={"path": str(path)})
        return Warehouse(kind, made.id, name, str(path))
    assert pg_url is not None
    made = warehouses.create(name, "postgres", settings=pg_settings(pg_url))
    return Warehouse(kind, made.id, name, pg_url)


@dataclass
class SqlTraitWorld:
    store: WorkspaceStore
    space_id: str
    warehouse: Warehouse
    queries: WarehouseQueries
    clock: Clock

    @property
    def engine(self) -> Engine:
        return self.store.engine

    @property
    def traits(self) -> SqlTraitStore:
        return SqlTraitStore(self.store)

    def runs(self, owner: str = "test", **options: Any) -> SqlTraitRuns:
        return SqlTraitRuns(self.engine, self.queries, owner=owner, clock=self.clock, **options)

    def outbox(self) -> list[dict[str, Any]]:
        box = schema.engage_outbox
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(box).order_by(box.c.seq))
            return [msgspec.json.decode(r.body) for r in rows]

    def clear_outbox(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(schema.engage_outbox.delete())

    def values(self, trait_id: str) -> dict[tuple[str, str], str]:
        v = schema.engage_sql_trait_values
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(v).where(v.c.trait_id == trait_id))
            return {(r.id_type, r.id_value): r.row for r in rows}


def make_world(
    engine: Engine, clock: Clock, kind: str, data_dir: Path, pg_url: str | None = None
) -> SqlTraitWorld:
    store = WorkspaceStore(engine, clock=clock)
    store.ensure_workspace("acme")
    space = SpaceStore(store).create("main")
    warehouse = add_warehouse(store, kind, "dw", data_dir, pg_url)
    queries = WarehouseQueries(WarehouseStore(store), data_dir, lock_timeout=2.0)
    return SqlTraitWorld(store, space.id, warehouse, queries, clock)
