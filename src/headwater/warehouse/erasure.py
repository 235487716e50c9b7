"""A regulation's deletion in a warehouse (§10.3: "warehouses via DML").

Every schema Headwater loads in the warehouse is searched: each source's, and each Profiles
Sync schema of a space syncing to it. In every table the catalog lists, the subject's rows go
by the columns the table has:

- ``user_id`` and ``anonymous_id`` (every event table, Profiles Sync's included), and
  ``previous_id`` (``aliases``: an alias from or to the subject); ``users.id`` is a user id;
- ``segment_id`` and ``canonical_segment_id``: the subject's profiles (``profile_ids``);
- Profiles Sync's identifier tables by ``(type, value)``: ``external_id_mapping_updates``
  (``external_id_type``, ``external_id_value``) and ``user_identifiers`` (``type``,
  ``value``), for every external id and user and anonymous id of the subject.

Ids go in batches (``BATCH`` per statement), and a value is also matched as the loader stored
it (cut at 512 characters, without NUL). ``accounts`` and ``account_traits`` are a group's,
not a person's, and stay. An erasure scoped to sources (``source_ids``) searches only their
schemas, and in a Profiles Sync schema only the event rows whose ``event_source_id`` is one
of them; the profile tables are not a source's, so they are left to a workspace-wide one.

The eraser holds the warehouse's sync lease (``sync.held``) from its first ``DELETE`` to the
end of ``compact``: a sync running now makes it wait (``Progress``), and no sync loads rows in
between. Rows of events the archive still holds but no sync has loaded are the archive
eraser's, which runs before this one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Final, TypeVar

from headwater.errors import SyncBusy
from headwater.privacy.erasure import Erasure, Progress, Subjects, Target
from headwater.unify.spaces import SpaceStore
from headwater.warehouse.connect import loader_for
from headwater.warehouse.loaders import VARCHAR_LIMIT, RowMatch
from headwater.warehouse.naming import default_schema_name
from headwater.warehouse.profiles_sync import (
    EXTERNAL_ID_MAPPING_UPDATES,
    USER_IDENTIFIERS,
)
from headwater.warehouse.store import WarehouseInfo, WarehouseStore
from headwater.warehouse.sync import held

_T = TypeVar("_T")

BATCH: Final = 1_000  # ids per DELETE statement
TABLE_LOADERS: Final = frozenset({"duckdb", "postgres"})  # a lake's files are the lake's eraser's
EVENT_SOURCE: Final = "event_source_id"  # a Profiles Sync event row's source
_PAIRS: Final = {
    EXTERNAL_ID_MAPPING_UPDATES: ("external_id_type", "external_id_value"),
    USER_IDENTIFIERS: ("type", "value"),
}


class WarehouseEraser:
    """Deletes a subject from one warehouse (a DuckDB file or a PostgreSQL database)."""

    def __init__(
        self,
        warehouses: WarehouseStore,
        warehouse: WarehouseInfo,
        data_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        batch: int = BATCH,
    ) -> None:
        self._warehouses = warehouses
        self._id = warehouse.id
        self._target = Target("warehouse", warehouse.id, warehouse.name)
        self._data_dir = data_dir
        self._clock = clock
        self._batch = batch

    @property
    def target(self) -> Target:
        return self._target

    def erase(self, erasure: Erasure) -> Progress | None:
        warehouse = self._warehouses.get(self._id)
        if (
            warehouse is None  # deleted since: nothing of it is Headwater's to clean
            or warehouse.workspace_id != erasure.workspace_id
            or warehouse.type not in TABLE_LOADERS
            or not erasure.subjects
        ):
            return None
        engine = self._warehouses.workspace.engine
        try:
            with held(engine, warehouse, self._clock) as beat:
                loader = loader_for(warehouse, self._data_dir)
                try:
                    for schema, within in self._schemas(warehouse, erasure.source_ids).items():
                        for table, columns in sorted(loader.columns(schema).items()):
                            for match in matches(
                                table, columns, erasure.subjects, within, self._batch
                            ):
                                loader.delete(schema, table, match)
                        beat()
                    loader.compact()
                finally:
                    loader.close()
        except SyncBusy as exc:
            return Progress(f"waiting for the warehouse's sync to end: {exc}", retry_after=30.0)
        return None

    def _schemas(
        self, warehouse: WarehouseInfo, source_ids: frozenset[str] | None
    ) -> dict[str, frozenset[str] | None]:
        """Each schema to search, with the sources its Profiles Sync rows must come from (None:
        every row of the schema is in scope)."""
        found: dict[str, frozenset[str] | None] = {}
        for space in SpaceStore(self._warehouses.workspace).list():
            sync = space.profiles_sync
            if sync is None or sync.warehouse_id != warehouse.id:
                continue
            if source_ids is None or source_ids & set(space.source_ids):
                found[default_schema_name(sync.schema)] = source_ids
        for source_id, schema in self._warehouses.schema_names(warehouse).items():
            if source_ids is None or source_id in source_ids:
                found[schema] = None  # a source's schema: all of it is the source's
        return found


def matches(
    table: str,
    columns: Collection[str],
    subjects: Subjects,
    within: Collection[str] | None,
    batch: int = BATCH,
) -> Iterator[RowMatch]:
    """The deletions that take the subject's rows from one table, ``batch`` ids at a time;
    none when the table has no column that can name the subject."""
    if within is not None and EVENT_SOURCE not in columns:
        return  # a profile table under a source-scoped erasure
    user_ids = _stored(subjects.user_ids)
    anonymous_ids = _stored(subjects.anonymous_ids)
    by_column: dict[str, list[str]] = {}
    if "user_id" in columns:
        by_column["user_id"] = user_ids
    if "anonymous_id" in columns:
        by_column["anonymous_id"] = anonymous_ids
    if "previous_id" in columns:
        by_column["previous_id"] = sorted({*user_ids, *anonymous_ids})
    if table == "users" and "id" in columns:
        by_column["id"] = user_ids
    for column in ("segment_id", "canonical_segment_id"):
        if column in columns:
            by_column[column] = sorted(subjects.profile_ids)
    pair_columns = _PAIRS.get(table)
    pairs: list[tuple[str, str]] = []
    if pair_columns is not None and all(c in columns for c in pair_columns):
        pairs = sorted(
            {
                *subjects.external_ids,
                *(("user_id", u) for u in user_ids),
                *(("anonymous_id", a) for a in anonymous_ids),
            }
        )
    scope = None if within is None else (EVENT_SOURCE, frozenset(within))
    parts = {column: _parts(values, batch) for column, values in by_column.items()}
    pair_parts = _parts(pairs, batch)
    rounds = max([len(pair_parts), *(len(p) for p in parts.values())])
    for index in range(rounds):
        paired = pair_parts[index] if index < len(pair_parts) else []
        match = RowMatch(
            any_of={c: p[index] for c, p in parts.items() if index < len(p)},
            pairs=(pair_columns[0], pair_columns[1], paired) if pair_columns and paired else None,
            within=scope,
        )
        if match:
            yield match


def _parts(values: list[_T], size: int) -> list[list[_T]]:
    return [values[start : start + size] for start in range(0, len(values), size)]


def _stored(values: Collection[str]) -> list[str]:
    """The values, and each as a loader stores it (NUL removed, cut at 512 characters)."""
    return sorted({*values, *(v.replace("\x00", "")[:VARCHAR_LIMIT] for v in values)})


def warehouse_erasers(
    warehouses: WarehouseStore, data_dir: Path, *, clock: Callable[[], float] = time.time
) -> list[WarehouseEraser]:
    """An eraser per warehouse with tables (a data lake's files are the lake's eraser's)."""
    return [
        WarehouseEraser(warehouses, warehouse, data_dir, clock=clock)
        for warehouse in warehouses.list()
        if warehouse.type in TABLE_LOADERS
    ]
