"""One warehouse sync: what each source's archive holds that the warehouse does not yet.

A run pings the warehouse, then, source by source, reads the archive's members from where the
last run stopped and loads them table by table in chunks. Positions are kept per source and
per collection (table): ``collection ""`` is the source's, and a table whose load failed keeps
a position of its own where it fell behind, so the next run loads what it missed without
reloading the others (loads also skip ids already in a table, so a repeat costs time, not
rows). Selective Sync drops disabled tables and columns while the source's position moves
on — re-enabling one loads new data only — and a disabled source does not move at all, so
re-enabling it loads everything since. Statuses are Segment's: Success (all tables, or no
data), Partial (some tables failed), Failure (the ping failed, or no table loaded).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa

from headwater.destinations.integrations import warehouse_enabled
from headwater.errors import SyncBusy, SyncStopped
from headwater.functions.objects import FunctionObjects
from headwater.protocols.transformations import Scope
from headwater.protocols.transformations.store import TransformationCache, TransformationStore
from headwater.store import schema
from headwater.store.archive import Archive, ArchiveMember, hour_key
from headwater.store.database import write_transaction
from headwater.timestamps import parse_timestamp
from headwater.warehouse.connect import LAKE, lake_seen_ids, lake_target, loader_for
from headwater.warehouse.lake import FINISHED as LAKE_FINISHED
from headwater.warehouse.lake import LakeSync
from headwater.warehouse.loaders import Loader
from headwater.warehouse.naming import Naming, naming_for
from headwater.warehouse.profiles_sync import ProfilesSyncLoad
from headwater.warehouse.rows import group_rows, object_row, rows_for
from headwater.warehouse.settings import SourceSync
from headwater.warehouse.store import WarehouseInfo, WarehouseStore

logger = logging.getLogger(__name__)

HISTORY: Final = timedelta(days=60)  # a new warehouse loads two months of history
LATE: Final = timedelta(hours=24)  # an hour file may still get events this long after
CHUNK_EVENTS: Final = 50_000
SOURCE: Final = ""  # the collection name of a source's own position
NOTIFY_AFTER: Final = (5, 20)  # consecutive failures that raise a notice (Segment's)

STALE_SECONDS: Final = 600  # a running sync silent this long has died

SUCCESS, PARTIAL, FAILURE, RUNNING = "success", "partial", "failure", "running"
REQUESTED = "requested"  # "sync now" asked for, not started yet
ERASURE = "erasure"  # the trigger of a deletion's hold on the warehouse (see ``held``)


@dataclass
class SyncResult:
    warehouse: str
    status: str = SUCCESS
    rows: dict[str, dict[str, int]] = field(default_factory=dict)  # source -> table -> rows
    notices: list[str] = field(default_factory=list)
    error: str | None = None
    failed_tables: int = 0
    loaded_tables: int = 0
    started_at: int = 0
    finished_at: int = 0
    run_id: int = 0

    def json(self) -> dict[str, Any]:
        return {
            "id": self.run_id,
            "warehouse": self.warehouse,
            "status": self.status,
            "rows": self.rows,
            "notices": self.notices,
            "error": self.error,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }


Positions = dict[str, dict[str, int]]  # collection -> hour key -> offset read up to


class WarehouseSync:
    def __init__(
        self,
        warehouses: WarehouseStore,
        archive: Archive,
        data_dir: Path,
        *,
        clock: Callable[[], float] = time.time,
        chunk_events: int = CHUNK_EVENTS,
    ) -> None:
        self._warehouses = warehouses
        self._workspace = warehouses.workspace
        self._engine = self._workspace.engine
        self._archive = archive
        self._data_dir = data_dir
        self._clock = clock
        self._chunk = chunk_events
        self._stopping = threading.Event()
        # Source-scoped transformations apply to warehouses (§24 step 8): the archive holds
        # the events untransformed, so they are applied here, as the sync reads them.
        self._transformations = TransformationCache(
            TransformationStore(self._workspace), self._workspace
        )
        self._objects = FunctionObjects(self._engine)

    def stop(self) -> None:
        self._stopping.set()

    # --- a run ---------------------------------------------------------------------------------

    def run(
        self,
        warehouse: WarehouseInfo,
        *,
        trigger: str = "manual",
        progress: Callable[[str], None] | None = None,
    ) -> SyncResult:
        """Sync now (taking up a "sync now" request of the warehouse if there is one)."""
        result = SyncResult(warehouse.name, started_at=int(self._clock()))
        run_id = self._start(warehouse, trigger, result.started_at)
        result.run_id = run_id
        try:
            schemas = self._warehouses.schema_names(warehouse)
            sources = self._sources(warehouse, schemas)
            if warehouse.type == LAKE:
                for source_id in sources:
                    self._sync_lake_source(warehouse, source_id, schemas[source_id], run_id, result)
            else:
                loader = loader_for(warehouse, self._data_dir)
                try:
                    loader.ping()
                    for source_id in sources:
                        self._sync_source(
                            warehouse,
                            loader,
                            source_id,
                            schemas[source_id],
                            result,
                            lambda: self._beat(run_id),
                            progress,
                        )
                        self._sync_objects(warehouse, loader, source_id, schemas[source_id], result)
                    self._sync_profiles(
                        warehouse,
                        loader,
                        {schemas[source_id]: source_id for source_id in sources},
                        result,
                        lambda: self._beat(run_id),
                    )
                finally:
                    loader.close()
        except Exception as exc:  # a sync records every failure; nothing escapes a run
            logger.warning("warehouse %s: sync failed: %s", warehouse.name, exc)
            result.error = f"{type(exc).__name__}: {exc}"
        result.status = _status(result)
        result.finished_at = int(self._clock())
        self._finish(warehouse, run_id, result)
        return result

    def _sources(self, warehouse: WarehouseInfo, schemas: Mapping[str, str]) -> list[str]:
        wanted = warehouse.options.sources
        chosen = [s for s in schemas if wanted is None or s in wanted]
        return [s for s in chosen if warehouse.options.selective_sync.get(s, SourceSync()).enabled]

    def _sync_source(
        self,
        warehouse: WarehouseInfo,
        loader: Loader,
        source_id: str,
        schema_name: str,
        result: SyncResult,
        beat: Callable[[], None],
        progress: Callable[[str], None] | None,
    ) -> None:
        rules = warehouse.options.selective_sync.get(source_id, SourceSync())
        naming: Naming = naming_for("postgres" if warehouse.type == "postgres" else "duckdb")
        positions = self._positions(warehouse.id, source_id)
        now = datetime.fromtimestamp(self._clock(), UTC)
        since = _since(positions, now)
        counts = result.rows.setdefault(schema_name, {})
        stalled: set[str] = set()  # tables that failed in this run: they wait for the next
        scope = self._transformations.current().for_source(source_id)
        for members in _chunks(
            self._archive.members(source_id, since, done=_lowest(positions)), self._chunk
        ):
            if self._stopping.is_set():
                raise SyncStopped("the server is stopping; the next sync continues from here")
            before = {c: dict(p) for c, p in positions.items()}
            pairs: list[tuple[str, dict[str, Any]]] = []
            loaded_now = datetime.fromtimestamp(self._clock(), UTC)
            for member in members:
                wanted = _collections_behind(positions, member)
                for archived in member.events:
                    event = archived if scope is None else scope.apply(archived, _at(archived))
                    if event is None:
                        continue  # a source-scoped transformation drops it
                    flags = event.get("integrations")
                    if isinstance(flags, dict) and not warehouse_enabled(warehouse.id, flags):
                        continue  # the integrations object's Warehouses key (AC-034)
                    for table, row in rows_for(event, now=loaded_now, naming=naming):
                        if table in rules.disabled_collections:
                            continue
                        if (wanted is not None and table not in wanted) or table in stalled:
                            continue  # that table already has this member, or waits
                        pairs.append((table, row))
                for collection, position in positions.items():
                    if collection not in stalled:
                        position[member.key] = max(position.get(member.key, 0), member.end)
            for table, rows in group_rows(pairs).items():
                rows.drop(rules.disabled_properties.get(table, []))
                try:
                    inserted, notices = loader.load(schema_name, rows)
                except Exception as exc:
                    logger.warning(
                        "warehouse %s: %s.%s failed: %s", warehouse.name, schema_name, table, exc
                    )
                    result.failed_tables += 1
                    result.notices.append(f"{schema_name}.{table}: {type(exc).__name__}: {exc}")
                    # The table stays where it was, with a position of its own, until the
                    # next run (a position cannot skip a gap within an hour file).
                    positions[table] = dict(before.get(table, before[SOURCE]))
                    stalled.add(table)
                    continue
                result.loaded_tables += 1
                counts[table] = counts.get(table, 0) + inserted
                result.notices.extend(f"{schema_name}.{table}: {n}" for n in notices)
            _drop_caught_up(positions)
            self._save_positions(warehouse.id, source_id, positions, now)
            beat()
            if progress is not None:
                progress(f"{warehouse.name}: {schema_name}: {sum(counts.values())} rows")

    def _sync_objects(
        self,
        warehouse: WarehouseInfo,
        loader: Loader,
        source_id: str,
        schema_name: str,
        result: SyncResult,
    ) -> None:
        """The objects the source's function set (``Segment.set``) since the last run, into
        ``<schema>.<collection>``; the position moves only past what loaded."""
        rules = warehouse.options.selective_sync.get(source_id, SourceSync())
        naming: Naming = naming_for("postgres" if warehouse.type == "postgres" else "duckdb")
        counts = result.rows.setdefault(schema_name, {})
        position = self._objects.position(warehouse.id, source_id)
        while objects := self._objects.after(source_id, position, self._chunk):
            now = datetime.fromtimestamp(self._clock(), UTC)
            pairs = [
                object_row(
                    o.collection,
                    o.id,
                    o.properties,
                    received_at=datetime.fromtimestamp(o.received_at, UTC),
                    now=now,
                    naming=naming,
                )
                for o in objects
            ]
            for table, rows in group_rows(
                p for p in pairs if p[0] not in rules.disabled_collections
            ).items():
                rows.drop(rules.disabled_properties.get(table, []))
                rows.upsert = True  # a later Segment.set of an id updates its row
                try:
                    inserted, notices = loader.load(schema_name, rows)
                except Exception as exc:
                    logger.warning(
                        "warehouse %s: %s.%s failed: %s", warehouse.name, schema_name, table, exc
                    )
                    result.failed_tables += 1
                    result.notices.append(f"{schema_name}.{table}: {type(exc).__name__}: {exc}")
                    return  # the objects wait where they are for the next run
                result.loaded_tables += 1
                counts[table] = counts.get(table, 0) + inserted
                result.notices.extend(f"{schema_name}.{table}: {n}" for n in notices)
            position = objects[-1].seq
            self._objects.advance(warehouse.id, source_id, position)

    def _sync_profiles(
        self,
        warehouse: WarehouseInfo,
        loader: Loader,
        source_schemas: Mapping[str, str],
        result: SyncResult,
        beat: Callable[[], None],
    ) -> None:
        """Profiles Sync: the spaces that sync to this warehouse, each into its schema (none
        into a schema of ``source_schemas``: schema → source id)."""
        load = ProfilesSyncLoad(self._workspace, clock=self._clock, stopping=self._stopping)
        for outcome in load.run(warehouse, loader, beat, source_schemas=source_schemas):
            counts = result.rows.setdefault(outcome.schema, {})
            for table, rows in outcome.rows.items():
                counts[table] = counts.get(table, 0) + rows
            result.notices.extend(outcome.notices)
            result.loaded_tables += outcome.loaded_tables
            result.failed_tables += outcome.failed_tables

    def _sync_lake_source(
        self,
        warehouse: WarehouseInfo,
        source_id: str,
        database: str,
        run_id: int,
        result: SyncResult,
    ) -> None:
        """A lake run per source: on failure the position stays, and the next run passes the
        same events again (the lake skips the ids it already wrote)."""
        positions = self._positions(warehouse.id, source_id)
        now = datetime.fromtimestamp(self._clock(), UTC)
        seen = lake_seen_ids(warehouse, self._data_dir)
        try:
            lake = LakeSync(
                lake_target(warehouse, self._data_dir),
                source_id=source_id,
                run_id=f"{run_id}",
                seen=seen,
                now=now,
                database=database,
                workspace_id=warehouse.workspace_id,
            )
            scope = self._transformations.current().for_source(source_id)
            read = self._archive.members(source_id, _since(positions, now), done=positions[SOURCE])
            for members in _chunks(read, self._chunk):
                lake.write(
                    event
                    for member in members
                    for event in _transformed(member.events, scope)
                    if not isinstance(flags := event.get("integrations"), dict)
                    or warehouse_enabled(warehouse.id, flags)
                )
                for member in members:
                    source = positions[SOURCE]
                    source[member.key] = max(source.get(member.key, 0), member.end)
                self._beat(run_id)
            run = lake.finish()
        finally:
            seen.close()
        counts = result.rows.setdefault(database, {})
        for name, table in run.tables.items():
            counts[name] = counts.get(name, 0) + table.rows
            if table.error:
                result.failed_tables += 1
                result.notices.append(f"{database}.{name}: {table.error}")
            else:
                result.loaded_tables += 1
        if run.status == LAKE_FINISHED:
            self._save_positions(warehouse.id, source_id, positions, now)
        elif not run.tables:
            raise RuntimeError(run.error or "the lake run failed")

    # --- state ---------------------------------------------------------------------------------

    def _positions(self, warehouse_id: str, source_id: str) -> Positions:
        p = schema.warehouse_positions
        with self._engine.connect() as conn:
            found: Positions = {
                row.collection: dict(row.position)
                for row in conn.execute(
                    sa.select(p.c.collection, p.c.position).where(
                        p.c.warehouse_id == warehouse_id, p.c.source_id == source_id
                    )
                )
            }
        found.setdefault(SOURCE, {})
        return found

    def _save_positions(
        self, warehouse_id: str, source_id: str, positions: Positions, now: datetime
    ) -> None:
        p = schema.warehouse_positions
        oldest = hour_key(now - LATE - HISTORY)
        with write_transaction(self._engine) as conn:
            conn.execute(
                sa.delete(p).where(p.c.warehouse_id == warehouse_id, p.c.source_id == source_id)
            )
            conn.execute(
                p.insert(),
                [
                    {
                        "warehouse_id": warehouse_id,
                        "source_id": source_id,
                        "collection": c,
                        "position": {k: v for k, v in position.items() if k >= oldest},
                        "updated_at": int(now.timestamp()),
                    }
                    for c, position in positions.items()
                ],
            )

    def _start(self, warehouse: WarehouseInfo, trigger: str, started: int) -> int:
        """Record the run, unless another process is syncing this warehouse now."""
        s = schema.warehouse_syncs
        with write_transaction(self._engine) as conn:
            _refuse_if_busy(conn, warehouse, started)
            conn.execute(
                sa.update(s)
                .where(s.c.warehouse_id == warehouse.id, s.c.status == RUNNING)
                .values(status=FAILURE, finished_at=started, error="the process running it stopped")
            )
            requested = (
                conn.execute(
                    sa.select(s.c.id)
                    .where(s.c.warehouse_id == warehouse.id, s.c.status == REQUESTED)
                    .order_by(s.c.id)
                )
                .scalars()
                .all()
            )
            if requested:  # this run answers every "sync now" waiting for it
                conn.execute(sa.delete(s).where(s.c.id.in_(requested[1:])))
                conn.execute(
                    sa.update(s)
                    .where(s.c.id == requested[0])
                    .values(status=RUNNING, started_at=started, heartbeat_at=started)
                )
                return int(requested[0])
            return _running(conn, warehouse.id, trigger, started)

    def _beat(self, run_id: int) -> None:
        s = schema.warehouse_syncs
        with write_transaction(self._engine) as conn:
            conn.execute(
                sa.update(s).where(s.c.id == run_id).values(heartbeat_at=int(self._clock()))
            )

    def _finish(self, warehouse: WarehouseInfo, run_id: int, result: SyncResult) -> None:
        s = schema.warehouse_syncs
        failures = 0
        if result.status == FAILURE:
            failures = 1 + _consecutive_failures(self._engine, warehouse.id, before=run_id)
            if failures in NOTIFY_AFTER:
                result.notices.append(
                    f"warehouse {warehouse.name}: {failures} syncs in a row have failed; "
                    "check its connection settings and the sync history"
                )
                logger.error("warehouse %s: %d consecutive sync failures", warehouse.name, failures)
        with write_transaction(self._engine) as conn:
            conn.execute(
                sa.update(s)
                .where(s.c.id == run_id)
                .values(
                    status=result.status,
                    finished_at=result.finished_at,
                    rows=result.rows,
                    notices=result.notices[:1000],
                    error=result.error,
                )
            )


def _refuse_if_busy(conn: sa.Connection, warehouse: WarehouseInfo, now: int) -> None:
    """SyncBusy while a live run holds the warehouse. Serializes the callers: SQLite has one
    writer; on PostgreSQL this locks the warehouse's row."""
    s, w = schema.warehouse_syncs, schema.warehouses
    conn.execute(sa.select(w.c.id).where(w.c.id == warehouse.id).with_for_update())
    alive = conn.execute(
        sa.select(s.c.id, s.c.trigger).where(
            s.c.warehouse_id == warehouse.id,
            s.c.status == RUNNING,
            s.c.heartbeat_at > now - STALE_SECONDS,
        )
    ).first()
    if alive is not None:
        doing = "erasing a subject" if alive.trigger == ERASURE else "already syncing"
        raise SyncBusy(f"warehouse {warehouse.name} is {doing} (run {alive.id})")


@contextmanager
def held(
    engine: sa.Engine, warehouse: WarehouseInfo, clock: Callable[[], float] = time.time
) -> Iterator[Callable[[], None]]:
    """The warehouse's sync lease for work a sync must not interleave with (a deletion: a
    sync loading rows between its ``DELETE`` and its end): a running run with the trigger
    ``erasure``, so a sync starting meanwhile gets SyncBusy and waits for its next turn.
    SyncBusy here while a sync runs. Yields a heartbeat; the run is removed at the end, so
    the sync history and the schedule do not count it (one left by a crash goes stale, as a
    dead sync's does)."""
    s = schema.warehouse_syncs
    started = int(clock())
    with write_transaction(engine) as conn:
        _refuse_if_busy(conn, warehouse, started)
        run_id = _running(conn, warehouse.id, ERASURE, started)

    def beat() -> None:
        with write_transaction(engine) as conn:
            conn.execute(sa.update(s).where(s.c.id == run_id).values(heartbeat_at=int(clock())))

    try:
        yield beat
    finally:
        with write_transaction(engine) as conn:
            conn.execute(sa.delete(s).where(s.c.id == run_id))


def request_sync(engine: sa.Engine, warehouse_id: str, now: float) -> int:
    """Ask for a sync now; whichever process runs warehouse syncs takes it up."""
    s = schema.warehouse_syncs
    with write_transaction(engine) as conn:
        waiting = conn.execute(
            sa.select(s.c.id).where(s.c.warehouse_id == warehouse_id, s.c.status == REQUESTED)
        ).scalar()
        if waiting is not None:
            return int(waiting)
        inserted = conn.execute(
            s.insert()
            .values(
                warehouse_id=warehouse_id,
                trigger="manual",
                status=REQUESTED,
                started_at=int(now),
                heartbeat_at=int(now),
                rows={},
                notices=[],
            )
            .returning(s.c.id)
        )
        return int(inserted.scalar_one())


def requested(engine: sa.Engine) -> set[str]:
    """Warehouses with a "sync now" waiting."""
    s = schema.warehouse_syncs
    with engine.connect() as conn:
        return set(
            conn.execute(sa.select(s.c.warehouse_id).where(s.c.status == REQUESTED)).scalars()
        )


def last_started(engine: sa.Engine) -> dict[str, int]:
    """When each warehouse's latest run began (for the schedule)."""
    s = schema.warehouse_syncs
    with engine.connect() as conn:
        return {
            r[0]: int(r[1])
            for r in conn.execute(
                sa.select(s.c.warehouse_id, sa.func.max(s.c.started_at))
                .where(s.c.status != REQUESTED)
                .group_by(s.c.warehouse_id)
            )
        }


def history(engine: sa.Engine, warehouse_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """The latest runs, newest first, as the REST API and the CLI show them."""
    s = schema.warehouse_syncs
    with engine.connect() as conn:
        return [
            _run_json(r)
            for r in conn.execute(
                sa.select(s)
                .where(s.c.warehouse_id == warehouse_id)
                .order_by(s.c.id.desc())
                .limit(limit)
            )
        ]


def run_of(engine: sa.Engine, warehouse_id: str, run_id: int) -> dict[str, Any] | None:
    s = schema.warehouse_syncs
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(s).where(s.c.warehouse_id == warehouse_id, s.c.id == run_id)
        ).first()
    return _run_json(row) if row is not None else None


def _run_json(r: Any) -> dict[str, Any]:
    return {
        "id": r.id,
        "trigger": r.trigger,
        "status": r.status,
        "startedAt": r.started_at,
        "finishedAt": r.finished_at,
        "rows": r.rows,
        "notices": r.notices,
        "error": r.error,
    }


def _consecutive_failures(engine: sa.Engine, warehouse_id: str, *, before: int) -> int:
    s = schema.warehouse_syncs
    with engine.connect() as conn:
        statuses = (
            conn.execute(
                sa.select(s.c.status)
                .where(s.c.warehouse_id == warehouse_id, s.c.id < before, s.c.status != RUNNING)
                .order_by(s.c.id.desc())
                .limit(max(NOTIFY_AFTER))
            )
            .scalars()
            .all()
        )
    count = 0
    for status in statuses:
        if status != FAILURE:
            break
        count += 1
    return count


def _status(result: SyncResult) -> str:
    if result.error is not None:
        return FAILURE
    if result.failed_tables == 0:
        return SUCCESS
    return PARTIAL if result.loaded_tables else FAILURE


def _transformed(events: Iterable[dict[str, Any]], scope: Scope | None) -> Iterator[dict[str, Any]]:
    """The events as source-scoped transformations leave them (those dropped left out)."""
    if scope is None:
        yield from events
        return
    for event in events:
        changed = scope.apply(event, _at(event))
        if changed is not None:
            yield changed


def _at(event: dict[str, Any]) -> float | None:
    received = parse_timestamp(event.get("receivedAt"))
    return received.timestamp() if received is not None else None


def _since(positions: Positions, now: datetime) -> datetime:
    """The first hour to read: two months back for a new warehouse, else the oldest hour a
    position still holds (hour files take late events for a while)."""
    keys = [k for position in positions.values() for k in position]
    if not keys:
        return now - HISTORY
    oldest = datetime.strptime(min(keys), "%Y-%m-%dT%H").replace(tzinfo=UTC)
    return max(min(oldest, now - LATE), now - HISTORY - LATE)


def _lowest(positions: Positions) -> dict[str, int]:
    """Per hour file, the smallest offset any collection has read to."""
    keys = {k for position in positions.values() for k in position}
    return {k: min(position.get(k, 0) for position in positions.values()) for k in keys}


def _collections_behind(positions: Positions, member: ArchiveMember) -> set[str] | None:
    """The tables that still need this member; None for all of them (the source needs it)."""
    if positions[SOURCE].get(member.key, 0) < member.end:
        return None
    return {c for c, p in positions.items() if c != SOURCE and p.get(member.key, 0) < member.end}


def _drop_caught_up(positions: Positions) -> None:
    source = positions[SOURCE]
    for collection in [c for c in positions if c != SOURCE]:
        position = positions[collection]
        if all(position.get(k, 0) >= v for k, v in source.items()):
            del positions[collection]


def _chunks(members: Iterable[ArchiveMember], size: int) -> Iterator[list[ArchiveMember]]:
    chunk: list[ArchiveMember] = []
    count = 0
    for member in members:
        chunk.append(member)
        count += len(member.events)
        if count >= size:
            yield chunk
            chunk, count = [], 0
    if chunk:
        yield chunk


def due(
    warehouses: Iterable[WarehouseInfo], last_started: Mapping[str, int], now: float
) -> list[WarehouseInfo]:
    """Warehouses whose schedule says a run is due (at the top of the interval, as Segment's
    hourly syncs run at :00)."""
    found = []
    for warehouse in warehouses:
        if not warehouse.enabled:
            continue
        interval = warehouse.options.sync_interval_seconds
        slot = int(now) // interval * interval
        if last_started.get(warehouse.id, -1) < slot:
            found.append(warehouse)
    return found


def _running(conn: sa.Connection, warehouse_id: str, trigger: str, started: int) -> int:
    """A new run of the warehouse, running from ``started``: its id."""
    s = schema.warehouse_syncs
    inserted = conn.execute(
        s.insert()
        .values(
            warehouse_id=warehouse_id,
            trigger=trigger,
            status=RUNNING,
            started_at=started,
            heartbeat_at=started,
            rows={},
            notices=[],
        )
        .returning(s.c.id)
    )
    return int(inserted.scalar_one())
