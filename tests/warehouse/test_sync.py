"""Warehouse syncs from the archive: positions, statuses, failures, Selective Sync, resume
(AC-120, AC-128, AC-129, AC-132, AC-133, AC-136 … AC-138), on DuckDB and PostgreSQL."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.store.archive import Archive, ArchiveWriter
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import format_timestamp
from headwater.unify.spaces import SpaceStore
from headwater.warehouse.connect import loader_for
from headwater.warehouse.store import WarehouseInfo, WarehouseStore
from headwater.warehouse.sync import FAILURE, PARTIAL, SUCCESS, SyncResult, WarehouseSync
from tests.support.postgres import pg_settings
from tests.support.records import log_record

NOW = datetime(2024, 3, 10, 12, 30, tzinfo=UTC)
_ids = itertools.count(1)


@dataclass
class World:
    tmp: Path
    workspace: WorkspaceStore
    warehouses: WarehouseStore
    source_id: str
    writer: ArchiveWriter
    now: datetime = NOW
    sent: list[dict[str, Any]] = field(default_factory=list)
    _offset: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def clock(self) -> float:
        return self.now.timestamp()

    def archive(self, *events: dict[str, Any]) -> None:
        """Events as the Tracking API stored them, in the archive (one flush)."""
        for event in events:
            received = event["receivedAt"]
            self.writer(
                [
                    (
                        0,
                        next(self._offset),
                        log_record(self.source_id, received, [event], workspace_id="ws"),
                    )
                ]
            )
        self.sent += events

    def sync(self, warehouse: WarehouseInfo, **kwargs: Any) -> SyncResult:
        runner = WarehouseSync(
            self.warehouses, Archive(self.tmp / "archive"), self.tmp, clock=self.clock, **kwargs
        )
        return runner.run(self.warehouses.require(warehouse.id))

    def rows(self, warehouse: WarehouseInfo, sql: str) -> list[tuple[Any, ...]]:
        loader = loader_for(self.warehouses.require(warehouse.id), self.tmp)
        try:
            return sorted(loader.query(sql)[1], key=repr)
        finally:
            loader.close()


@pytest.fixture
def world(tmp_path: Path, engine: Engine) -> World:
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    source = workspace.create_source("Web App", slug="web_app")
    return World(
        tmp_path,
        workspace,
        WarehouseStore(workspace),
        source.id,
        ArchiveWriter(tmp_path / "archive"),
    )


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def warehouse_of(
    world: World, kind: str, request: pytest.FixtureRequest, **options: Any
) -> WarehouseInfo:
    if kind == "duckdb":
        return world.warehouses.create("wh", "duckdb", options=options)
    return world.warehouses.create(
        "wh",
        "postgres",
        settings=pg_settings(request.getfixturevalue("pg_database")),
        options=options,
    )


def at(when: datetime) -> str:
    return format_timestamp(when)


def track(name: str, when: datetime, user: str = "u1", **properties: Any) -> dict[str, Any]:
    return {
        "type": "track",
        "event": name,
        "userId": user,
        "anonymousId": "a1",
        "messageId": f"m-{next(_ids)}",
        "properties": properties,
        "context": {"library": {"name": "analytics.js", "version": "2.1"}},
        "timestamp": at(when),
        "sentAt": at(when),
        "originalTimestamp": at(when),
        "receivedAt": at(when),
    }


def identify(user: str, when: datetime, **traits: Any) -> dict[str, Any]:
    return {
        "type": "identify",
        "userId": user,
        "messageId": f"m-{next(_ids)}",
        "traits": traits,
        "timestamp": at(when),
        "receivedAt": at(when),
    }


def test_events_land_in_segment_tables(
    world: World, kind: str, request: pytest.FixtureRequest
) -> None:
    wh = warehouse_of(world, kind, request)
    t = NOW - timedelta(hours=3)
    world.archive(
        track("Register", t, plan="Pro Annual", accountType="Facebook"),
        identify("u1", t, plan="free"),
        identify("u1", t + timedelta(minutes=5), plan="premium"),
    )
    result = world.sync(wh)
    assert result.status == SUCCESS, result
    assert result.rows["web_app"] == {"tracks": 1, "register": 1, "identifies": 2, "users": 1}
    assert world.rows(wh, "SELECT event, event_text, user_id FROM web_app.tracks") == [
        ("register", "Register", "u1")
    ]  # AC-120
    assert world.rows(wh, "SELECT plan, account_type FROM web_app.register") == [
        ("Pro Annual", "Facebook")
    ]
    assert world.rows(wh, "SELECT id, plan FROM web_app.users") == [("u1", "premium")]  # AC-128
    assert len(world.rows(wh, "SELECT id FROM web_app.identifies")) == 2
    again = world.sync(wh)
    assert again.status == SUCCESS and again.rows["web_app"] == {}  # nothing new


def test_ac129_a_message_id_seen_again_30_hours_later_is_one_row(
    world: World, kind: str, request: pytest.FixtureRequest
) -> None:
    wh = warehouse_of(world, kind, request)
    first = track("Order Completed", NOW - timedelta(hours=31), total=5)
    world.archive(first)
    world.sync(wh)
    world.archive({**first, "receivedAt": at(NOW - timedelta(hours=1))})
    world.sync(wh)
    assert world.rows(wh, "SELECT count(*) FROM web_app.order_completed") == [(1,)]


def test_ac136_a_new_warehouse_loads_two_months(world: World) -> None:
    world.archive(
        track("Old", NOW - timedelta(days=61)),
        track("Kept", NOW - timedelta(days=59)),
        track("Kept", NOW - timedelta(hours=1)),
    )
    wh = world.warehouses.create("wh", "duckdb")
    world.sync(wh)
    assert world.rows(wh, "SELECT event FROM web_app.tracks") == [("kept",), ("kept",)]


def test_events_archived_late_into_an_hour_already_synced_are_loaded(world: World) -> None:
    wh = world.warehouses.create("wh", "duckdb")
    world.archive(track("A", NOW - timedelta(minutes=40)))
    world.sync(wh)
    world.now += timedelta(hours=1)
    world.archive(track("B", NOW - timedelta(minutes=35)))  # the same, older, hour file
    assert world.sync(wh).rows["web_app"] == {"tracks": 1, "b": 1}


def test_ac132_a_failed_sync_is_made_up_by_the_next(world: World, pg_database: str) -> None:
    wrong = {**pg_settings(pg_database), "database": "no_such_database"}
    wh = world.warehouses.create("wh", "postgres", settings=wrong)
    world.archive(track("Signed Up", NOW - timedelta(hours=2)))
    failed = world.sync(wh)
    assert failed.status == FAILURE and failed.error and "no_such_database" in failed.error
    world.now += timedelta(hours=1)
    world.archive(track("Signed Up", NOW + timedelta(minutes=10)))
    world.warehouses.update("wh", settings=pg_settings(pg_database))
    assert world.sync(wh).status == SUCCESS
    assert world.rows(wh, "SELECT count(*) FROM web_app.signed_up") == [(2,)]


def test_ac137_notices_on_the_5th_and_20th_failure_in_a_row(world: World, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the warehouse's directory should be")
    wh = world.warehouses.create("wh", "duckdb", settings={"path": str(blocker / "wh.duckdb")})
    noticed = []
    for run in range(1, 21):
        world.now += timedelta(hours=1)
        result = world.sync(wh)
        assert result.status == FAILURE
        if any("syncs in a row have failed" in n for n in result.notices):
            noticed.append(run)
    assert noticed == [5, 20]


def test_ac138_partial_when_some_tables_fail(world: World, pg_database: str) -> None:
    wh = world.warehouses.create("wh", "postgres", settings=pg_settings(pg_database))
    engine = sa.create_engine(pg_database.replace("postgresql://", "postgresql+psycopg://"))
    with engine.begin() as conn:  # a table the warehouse's user broke: every insert fails
        conn.execute(sa.text("CREATE SCHEMA web_app"))
        conn.execute(
            sa.text(
                "CREATE TABLE web_app.pages (id VARCHAR PRIMARY KEY, "
                "received_at TIMESTAMPTZ, CHECK (false))"
            )
        )
    t = NOW - timedelta(hours=2)
    world.archive(track("Signed Up", t), {**identify("u1", t), "type": "page", "name": "Home"})
    partial = world.sync(wh)
    assert partial.status == PARTIAL
    assert any("web_app.pages" in n for n in partial.notices)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE web_app.pages"))
    world.now += timedelta(hours=1)
    fixed = world.sync(wh)
    assert fixed.status == SUCCESS
    assert fixed.rows["web_app"] == {"pages": 1}  # only what was missing
    assert world.rows(wh, "SELECT name FROM web_app.pages") == [("Home",)]
    engine.dispose()


def test_ac133_selective_sync(world: World) -> None:
    wh = world.warehouses.create(
        "wh",
        "duckdb",
        options={
            "selective_sync": {
                "Web App": {
                    "disabled_collections": ["register"],
                    "disabled_properties": {"tracks": ["context_library_name"]},
                }
            }
        },
    )
    world.archive(
        track("Register", NOW - timedelta(hours=2)), track("Login", NOW - timedelta(hours=2))
    )
    world.sync(wh)
    assert world.rows(wh, "SELECT event FROM web_app.tracks") == [("login",), ("register",)]
    tables = world.rows(
        wh, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'web_app'"
    )
    assert ("register",) not in tables and ("login",) in tables
    columns = world.rows(
        wh,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'web_app' AND table_name = 'tracks'",
    )
    assert ("context_library_name",) not in columns and ("context_library_version",) in columns
    # Re-enabled: only new events of the collection arrive (no backfill).
    world.warehouses.update("wh", options={})
    world.now += timedelta(hours=1)
    world.archive(track("Register", NOW + timedelta(minutes=5)))
    world.sync(wh)
    assert world.rows(wh, "SELECT count(*) FROM web_app.register") == [(1,)]
    # A disabled source waits; re-enabled, it gets everything since.
    world.warehouses.update("wh", options={"selective_sync": {"Web App": {"enabled": False}}})
    world.archive(track("Paused", NOW + timedelta(minutes=20)))
    world.now += timedelta(hours=1)
    assert world.sync(wh).rows == {}
    world.warehouses.update("wh", options={})
    world.sync(wh)
    assert world.rows(wh, "SELECT count(*) FROM web_app.paused") == [(1,)]


def test_a_sync_killed_midway_resumes_without_loss_or_duplicates(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from headwater.warehouse.loaders.duckdb import DuckDBLoader

    wh = world.warehouses.create("wh", "duckdb")
    events = [
        track("Order Completed", NOW - timedelta(minutes=50) + timedelta(seconds=i), total=i)
        for i in range(60)
    ]
    world.archive(*events)
    real = DuckDBLoader.load
    loads = itertools.count()

    def dies_on_the_fifth_load(self: DuckDBLoader, schema: str, rows: Any) -> Any:
        if next(loads) == 4:
            raise KeyboardInterrupt  # the process is killed in the middle of a sync
        return real(self, schema, rows)

    monkeypatch.setattr(DuckDBLoader, "load", dies_on_the_fifth_load)
    with pytest.raises(KeyboardInterrupt):
        world.sync(wh, chunk_events=20)
    monkeypatch.setattr(DuckDBLoader, "load", real)
    world.now += timedelta(minutes=11)  # the dead run's heartbeat is stale by now
    assert world.sync(wh, chunk_events=20).status == SUCCESS
    totals = world.rows(wh, "SELECT total FROM web_app.order_completed")
    assert sorted(t for (t,) in totals) == list(range(60))
    assert world.rows(wh, "SELECT count(*) FROM web_app.tracks") == [(60,)]


def test_a_segment_query_answers_the_same_on_both_warehouses(
    world: World, kind: str, request: pytest.FixtureRequest
) -> None:
    wh = warehouse_of(world, kind, request)
    day = NOW - timedelta(days=6)
    world.archive(
        track("Order Completed", day, "u1"),
        track("Order Completed", day + timedelta(days=2), "u1"),
        track("Order Completed", day, "u2"),
        track("Order Completed", day - timedelta(days=20), "u2"),
        track("Order Completed", day + timedelta(hours=1), "u3"),
        track("Order Completed", day + timedelta(days=3), "u3"),
        identify("u1", day, plan="free"),
        identify("u1", day + timedelta(days=1), plan="pro"),
        identify("u3", day, plan="team"),
    )
    world.sync(wh)
    twice_in_a_week = """
        SELECT u.id, u.plan FROM web_app.users u
        WHERE u.id IN (
          SELECT a.user_id FROM web_app.order_completed a
          JOIN web_app.order_completed b ON a.user_id = b.user_id AND a.id <> b.id
           AND b.timestamp > a.timestamp AND b.timestamp <= a.timestamp + INTERVAL '7 days')
        ORDER BY u.id"""
    assert world.rows(wh, twice_in_a_week) == [("u1", "pro"), ("u3", "team")]


def test_a_data_lake_sync_writes_parquet_and_a_report(world: World, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    wh = world.warehouses.create("lake", "data-lake", settings={"location": "lake"})
    world.archive(identify("u1", datetime(2024, 3, 10, 11, 5, tzinfo=UTC), plan="pro"))
    result = world.sync(wh)
    assert result.status == SUCCESS, result
    partition = (
        tmp_path / "lake/data" / world.source_id / "segment_type=identify/day=2024-03-10/hr=11"
    )
    [file] = list(partition.glob("*.parquet"))
    assert pq.read_table(file).column("traits_plan").to_pylist() == ["pro"]
    assert list((tmp_path / "lake/reports").rglob("report.json"))
    assert world.sync(wh).rows == {"web_app": {}}  # the position moved on


def test_ac034_the_integrations_object_and_warehouses(world: World) -> None:
    wh1 = world.warehouses.create("wh1", "duckdb")
    wh2 = world.warehouses.create("wh2", "duckdb")
    t = NOW - timedelta(hours=1)
    world.archive(
        {**track("All Off", t), "integrations": {"All": False}},
        {**track("No Warehouses", t), "integrations": {"All": True, "Warehouses": {"all": False}}},
        {
            **track("Only One", t),
            "integrations": {"All": False, "Warehouses": {"warehouseIds": [wh1.id]}},
        },
    )
    world.sync(wh1)
    world.sync(wh2)
    assert world.rows(wh1, "SELECT event FROM web_app.tracks") == [("all_off",), ("only_one",)]
    assert world.rows(wh2, "SELECT event FROM web_app.tracks") == [("all_off",)]


# --- AC-120: Segment's columns exist whatever the sender set ---------------------------------

MESSAGE_COLUMNS = {
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
ENTITY_COLUMNS = {
    "id",
    "received_at",
    "sent_at",
    "timestamp",
    "original_timestamp",
    "uuid",
    "uuid_ts",
}


def from_http(kind: str, when: datetime, **fields: Any) -> dict[str, Any]:
    """A message from a plain HTTP client (curl, a server without a Segment library), as the
    Tracking API stores it: no sentAt, no timestamp, no context."""
    from headwater.ingest.normalize import RequestInfo, normalize

    stored = normalize(dict(fields), RequestInfo(when, at(when), None), route_type=kind)
    assert isinstance(stored, dict), stored
    assert "sentAt" not in stored and "originalTimestamp" not in stored
    return stored


def test_ac120_every_table_has_segments_columns_when_senders_leave_them_out(
    world: World, kind: str, request: pytest.FixtureRequest
) -> None:
    wh = warehouse_of(world, kind, request)
    t = NOW - timedelta(hours=3)
    world.archive(
        from_http("track", t, userId="u1", event="Signed Up", properties={"plan": "pro"}),
        from_http("identify", t, userId="u1", traits={"email": "a@example.com"}),
        from_http("page", t, anonymousId="a1"),
        from_http("screen", t, userId="u1"),
        from_http("group", t, userId="u1", groupId="g1", traits={"employees": 3}),
        from_http("alias", t, userId="u1", previousId="a1"),
    )
    assert world.sync(wh).status == SUCCESS

    loader = loader_for(world.warehouses.require(wh.id), world.tmp)
    try:
        tables = loader.columns("web_app")
    finally:
        loader.close()
    own = {
        "tracks": {"event", "event_text"},
        "signed_up": {"event", "event_text", "plan"},
        "identifies": {"email"},
        "pages": {"name", "category"},
        "screens": {"name", "category"},
        "groups": {"group_id", "employees"},
        "aliases": {"previous_id"},
    }
    for table, extra in own.items():
        assert set(tables[table]) == MESSAGE_COLUMNS | extra, table
        assert tables[table]["sent_at"] == tables[table]["original_timestamp"] == "timestamp"
    assert set(tables["users"]) == ENTITY_COLUMNS | {"email"}
    assert set(tables["accounts"]) == ENTITY_COLUMNS | {"employees"}
    # A Segment user's query runs, with NULL where the sender set nothing.
    assert world.rows(wh, "SELECT sent_at, original_timestamp FROM web_app.tracks") == [
        (None, None)
    ]
    assert world.rows(wh, "SELECT context_library_name, sent_at FROM web_app.signed_up") == [
        (None, None)
    ]

    # Later events from a library carry the values: they land in the same columns.
    later = NOW - timedelta(hours=1)
    world.archive(track("Signed Up", later, plan="team"))
    assert world.sync(wh).status == SUCCESS
    assert world.rows(
        wh, "SELECT plan, sent_at, original_timestamp, context_library_name FROM web_app.signed_up"
    ) == [("pro", None, None, None), ("team", later, later, "analytics.js")]


def test_ac120_a_first_batch_with_the_values_and_a_later_one_without(
    world: World, kind: str, request: pytest.FixtureRequest
) -> None:
    wh = warehouse_of(world, kind, request)
    t = NOW - timedelta(hours=3)
    world.archive(track("Signed Up", t))
    world.sync(wh)
    world.archive(from_http("track", t + timedelta(hours=1), userId="u2", event="Signed Up"))
    assert world.sync(wh).status == SUCCESS
    assert world.rows(wh, "SELECT user_id, sent_at FROM web_app.tracks") == [
        ("u1", t),
        ("u2", None),
    ]


def test_a_table_made_before_it_had_a_standard_column_gets_it_on_its_next_load(
    world: World, kind: str, request: pytest.FixtureRequest
) -> None:
    wh = warehouse_of(world, kind, request)
    t = NOW - timedelta(hours=3)
    loader = loader_for(world.warehouses.require(wh.id), world.tmp)
    try:  # a tracks table as an older Headwater made it for HTTP events: no sent_at
        from headwater.warehouse.columns import TableRows

        loader.load(
            "web_app",
            TableRows(
                "tracks",
                [{"id": "old", "received_at": t}],
                {"id": "varchar", "received_at": "timestamp"},
            ),
        )
    finally:
        loader.close()
    world.archive(from_http("track", t, userId="u1", event="Signed Up"))
    assert world.sync(wh).status == SUCCESS
    assert world.rows(wh, "SELECT id, sent_at FROM web_app.tracks WHERE id = 'old'") == [
        ("old", None)
    ]


def test_selective_sync_can_leave_out_a_standard_column(world: World) -> None:
    wh = world.warehouses.create(
        "wh",
        "duckdb",
        options={"selective_sync": {"Web App": {"disabled_properties": {"tracks": ["sent_at"]}}}},
    )
    world.archive(from_http("track", NOW - timedelta(hours=1), userId="u1", event="X"))
    world.sync(wh)
    columns = world.rows(
        wh,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'web_app' AND table_name = 'tracks'",
    )
    assert ("sent_at",) not in columns and ("original_timestamp",) in columns


# --- long event names -------------------------------------------------------------------------

LONG_300 = ("Checkout Step Viewed With A Very Long Descriptive Suffix " * 6)[:300]
LONG_1000 = ("Experiment Variant Exposure For Campaign " * 25)[:1000]


def test_long_event_names_sync_and_later_syncs_keep_working(
    world: World, kind: str, request: pytest.FixtureRequest
) -> None:
    wh = warehouse_of(world, kind, request)
    t = NOW - timedelta(hours=3)
    world.archive(track(LONG_300, t, step=1), track(LONG_1000, t, variant="b"))
    first = world.sync(wh)
    assert first.status == SUCCESS, first
    assert sum(first.rows["web_app"].values()) == 4
    # The tracks row's ``event`` names the event's table, as for short names.
    events = world.rows(wh, "SELECT event, event_text FROM web_app.tracks")
    for event, text in events:
        assert text in (LONG_300, LONG_1000[:512])
        assert len(world.rows(wh, f'SELECT id FROM web_app."{event}"')) == 1
    world.archive(
        track(LONG_300, t + timedelta(hours=1), step=2),
        track(LONG_1000, t + timedelta(hours=1), variant="c"),
        track("Signed Up", t + timedelta(hours=1)),
    )
    world.now += timedelta(hours=1)
    later = world.sync(wh)
    assert later.status == SUCCESS, later
    assert world.rows(wh, "SELECT count(*) FROM web_app.tracks") == [(5,)]
    assert world.rows(wh, "SELECT count(*) FROM web_app.signed_up") == [(1,)]
    for event, _ in events:
        assert len(world.rows(wh, f'SELECT id FROM web_app."{event}"')) == 2


def test_a_spaces_engage_source_lands_in_engage_space_schema(
    world: World, kind: str, request: pytest.FixtureRequest
) -> None:
    """§11.3: Engage's Identify and Track calls land in an ``engage_<space>`` schema (the
    Engage source's slug), ``users`` one row per user with each audience a column."""
    space = SpaceStore(world.workspace).create("Main Space")
    engage = SpaceStore(world.workspace).engage_source(space.id)
    assert (engage.name, engage.slug) == ("main_space-engage", "engage_main_space")
    wh = warehouse_of(world, kind, request)
    assert world.warehouses.schema_names(wh)[engage.id] == "engage_main_space"
    t = NOW - timedelta(hours=1)
    entered = track("Audience Entered", t, audience_key="vip", vip=True)
    world.source_id = engage.id
    world.archive(identify("u1", t, vip=True), entered)
    result = world.sync(wh)
    assert result.status == SUCCESS, result
    assert result.rows["engage_main_space"] == {
        "identifies": 1,
        "users": 1,
        "tracks": 1,
        "audience_entered": 1,
    }
    assert world.rows(wh, "SELECT id, vip FROM engage_main_space.users") == [("u1", True)]
    assert world.rows(wh, "SELECT audience_key FROM engage_main_space.audience_entered") == [
        ("vip",)
    ]
