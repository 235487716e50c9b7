"""A space's Profiles Sync tables, opened for reading: what Engage's batch computation runs
its compiled queries on (``headwater.engage.batch_runs.Tables`` has this shape; the engage
package may not import this one, so the server hands one to the other).

``loaded_at`` is when the latest successful sync of the warehouse began: every event the
space had resolved by then is in the tables, which is what a seed from history waits for.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from headwater.store import schema as state
from headwater.unify.spaces import SpaceInfo
from headwater.warehouse.connect import loader_for
from headwater.warehouse.naming import Naming, default_schema_name, naming_for
from headwater.warehouse.store import WarehouseInfo, WarehouseStore
from headwater.warehouse.sync import PARTIAL, REQUESTED, RUNNING, SUCCESS, request_sync


@dataclass(frozen=True)
class ProfilesTables:
    dialect: str  # duckdb, postgresql
    schema: str
    naming: Naming
    loaded_at: int | None
    warehouse: WarehouseInfo
    data_dir: Path
    engine: sa.Engine

    def columns(self) -> Mapping[str, Mapping[str, str]]:
        with loader_for(self.warehouse, self.data_dir) as loader:
            return loader.columns(self.schema)

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        with loader_for(self.warehouse, self.data_dir) as loader:
            return loader.query(sql)[1]

    def request_sync(self, after: int, now: float) -> None:
        """Ask for a sync, unless one asked for or running began at ``after`` or later."""
        runs = state.warehouse_syncs
        with self.engine.connect() as conn:
            coming = conn.execute(
                sa.select(runs.c.id).where(
                    runs.c.warehouse_id == self.warehouse.id,
                    runs.c.status.in_((REQUESTED, RUNNING)),
                    runs.c.started_at >= after,
                )
            ).first()
        if coming is None:
            request_sync(self.engine, self.warehouse.id, now)


class ProfilesWarehouses:
    """Each space's Profiles Sync tables, when its Profiles Sync is on."""

    def __init__(self, warehouses: WarehouseStore, engine: sa.Engine, data_dir: Path) -> None:
        self._warehouses = warehouses
        self._engine = engine
        self._data_dir = data_dir

    def __call__(self, space: SpaceInfo) -> ProfilesTables | None:
        sync = space.profiles_sync
        warehouse = self._warehouses.get(sync.warehouse_id) if sync is not None else None
        if sync is None or warehouse is None or warehouse.type not in ("duckdb", "postgres"):
            return None
        runs = state.warehouse_syncs
        with self._engine.connect() as conn:
            loaded = conn.execute(
                sa.select(sa.func.max(runs.c.started_at)).where(
                    runs.c.warehouse_id == warehouse.id, runs.c.status.in_((SUCCESS, PARTIAL))
                )
            ).scalar_one_or_none()
        kind = "postgres" if warehouse.type == "postgres" else "duckdb"
        return ProfilesTables(
            dialect="postgresql" if kind == "postgres" else "duckdb",
            schema=default_schema_name(sync.schema),
            naming=naming_for(kind),
            loaded_at=int(loaded) if loaded is not None else None,
            warehouse=warehouse,
            data_dir=self._data_dir,
            engine=self._engine,
        )
