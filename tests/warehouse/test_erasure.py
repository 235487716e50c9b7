"""A regulation's deletion in a warehouse (A-DS-6, the warehouse part): events loaded by a real
sync from the archive and Profiles Sync from the real feed, then u2 erased — every row of u2
gone from every table of every schema, everyone else's rows unchanged, on DuckDB and
PostgreSQL; the DuckDB file's bytes free of u2's marker."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.errors import WarehouseError
from headwater.privacy.erasure import Erasure, Progress, Subjects
from headwater.store import schema
from headwater.store.archive import Archive, ArchiveWriter
from headwater.store.database import write_transaction
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import format_timestamp
from headwater.unify.memory import MemoryGraph
from headwater.unify.profile_ids import ProfileIds
from headwater.unify.profiles_sync import ProfilesSyncFeed
from headwater.unify.resolution import Resolver
from headwater.unify.spaces import SpaceStore
from headwater.warehouse.connect import duckdb_path, loader_for
from headwater.warehouse.erasure import WarehouseEraser, matches, warehouse_erasers
from headwater.warehouse.loaders.duckdb import DuckDBLoader
from headwater.warehouse.naming import default_schema_name
from headwater.warehouse.store import WarehouseInfo, WarehouseStore
from headwater.warehouse.sync import RUNNING, SUCCESS, WarehouseSync
from tests.support.postgres import pg_settings
from tests.support.records import log_record

NOW = datetime(2024, 3, 10, 12, 30, tzinfo=UTC)
MARKER = "zq-marker-7d3a41"  # only in u2's events
EMAIL = "u2@example.com"
Table = tuple[list[str], list[tuple[Any, ...]]]  # columns, rows


@dataclass
class World:
    tmp: Path
    engine: Engine
    warehouses: WarehouseStore
    warehouse: WarehouseInfo
    workspace_id: str
    sources: dict[str, str]  # slug -> id
    space_id: str
    profiles_schema: str
    writer: ArchiveWriter
    graph: MemoryGraph = field(default_factory=MemoryGraph)
    feed: ProfilesSyncFeed = field(default_factory=ProfilesSyncFeed)
    profiles: dict[str, str] = field(default_factory=dict)  # userId -> profile id
    _offset: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __post_init__(self) -> None:
        self.resolver = Resolver(self.graph, ids=ProfileIds(7))

    def clock(self) -> float:
        return NOW.timestamp()

    def send(self, source: str, type_: str, **fields: Any) -> None:
        """One event as the Tracking API stored it: in the archive, and resolved into the
        space's Profiles Sync feed."""
        at = format_timestamp(NOW - timedelta(hours=2, minutes=next(self._ids)))
        event = {
            "type": type_,
            "messageId": f"m-{next(self._ids)}",
            "timestamp": at,
            "sentAt": at,
            "originalTimestamp": at,
            "receivedAt": at,
            "context": {"library": {"name": "analytics.js", "version": "2.1"}},
            **fields,
        }
        source_id = self.sources[source]
        self.writer(
            [(0, next(self._offset), log_record(source_id, at, [event], workspace_id="ws"))]
        )
        resolution = self.resolver.resolve(event, source_id)
        traits = event.get("traits") if type_ == "identify" else None
        told = [(resolution.user, dict(traits))] if traits and resolution.user else []
        with write_transaction(self.engine) as conn:
            self.feed.record(conn, self.space_id, source_id, event, resolution, told)
        if resolution.user and isinstance(event.get("userId"), str):
            self.profiles.setdefault(event["userId"], resolution.user)

    def sync(self) -> None:
        runner = WarehouseSync(
            self.warehouses, Archive(self.tmp / "archive"), self.tmp, clock=self.clock
        )
        result = runner.run(self.warehouses.require(self.warehouse.id))
        assert result.status == SUCCESS, result

    def tables(self) -> dict[tuple[str, str], Table]:
        """Every table of every schema Headwater loads here, sorted."""
        found: dict[tuple[str, str], Table] = {}
        schemas = [*self.warehouses.schema_names(self.warehouse).values(), self.profiles_schema]
        with loader_for(self.warehouse, self.tmp) as loader:
            for name in schemas:
                for table in loader.columns(name):
                    columns, rows = loader.query(f'SELECT * FROM "{name}"."{table}"')
                    found[(name, table)] = (columns, sorted(rows, key=repr))
        return found

    def erasure(self, **scope: Any) -> Erasure:
        return Erasure(
            "reg_1",
            self.workspace_id,
            Subjects(
                user_ids=frozenset({"u2"}),
                anonymous_ids=frozenset({"a2"}),
                profile_ids=frozenset({self.profiles["u2"]}),
                external_ids=frozenset({("email", EMAIL)}),
            ),
            created_at=NOW.timestamp(),
            **scope,
        )

    def eraser(self) -> WarehouseEraser:
        return WarehouseEraser(self.warehouses, self.warehouse, self.tmp, clock=self.clock)

    def is_u2s(self, columns: list[str], row: tuple[Any, ...]) -> bool:
        """What the test calls u2's row: its marker anywhere, or one of its identifiers in
        any column but u3's property naming u2 (``friend``, and ``user_traits.value``),
        which is u3's data."""
        names = {"u2", "a2", EMAIL, self.profiles["u2"]}
        return any(
            MARKER in str(value) or (column not in ("friend", "value") and str(value) in names)
            for column, value in zip(columns, row, strict=True)
        )


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def world(tmp_path: Path, engine: Engine, kind: str, request: pytest.FixtureRequest) -> World:
    workspace = WorkspaceStore(engine)
    workspace_id = workspace.ensure_workspace("acme").id
    sources = {slug: workspace.create_source(slug.title(), slug=slug).id for slug in ("web", "app")}
    warehouses = WarehouseStore(workspace)
    settings = {} if kind == "duckdb" else pg_settings(request.getfixturevalue("pg_database"))
    warehouse = warehouses.create("wh", kind, settings=settings)
    space = SpaceStore(workspace).create(
        "Main", sources=list(sources.values()), profiles_sync=(warehouse.id, None)
    )
    assert space.profiles_sync is not None
    return World(
        tmp_path,
        engine,
        warehouses,
        warehouse,
        workspace_id,
        sources,
        space.id,
        default_schema_name(space.profiles_sync.schema),
        ArchiveWriter(tmp_path / "archive"),
    )


def fill(world: World) -> None:
    """u2 and u3, on both sources, with every kind of call."""
    for user, anonymous, email in (("u2", "a2", EMAIL), ("u3", "a3", "u3@example.com")):
        mine = {"note": MARKER} if user == "u2" else {"friend": "u2"}
        world.send("web", "page", anonymousId=anonymous, properties={"path": "/", **mine})
        world.send(
            "web", "identify", userId=user, anonymousId=anonymous, traits={"email": email, **mine}
        )
        world.send(
            "web",
            "track",
            event="Order Completed",
            userId=user,
            anonymousId=anonymous,
            properties={"total": 10, **mine},
        )
        world.send("web", "group", userId=user, groupId=f"g-{user}", traits={"plan": "pro"})
        world.send("app", "track", event="Opened", userId=user, properties={**mine})
    world.send("web", "alias", userId="u9", previousId="u2")  # u2 renamed: the row names u2
    world.sync()


def test_every_row_of_the_subject_goes_and_every_other_row_stays_a_ds_6(world: World) -> None:
    fill(world)
    before = world.tables()
    holding = {key[1] for key, (columns, rows) in before.items() if any(world.is_u2s(columns, r) for r in rows)}  # fmt: skip
    assert holding >= {
        "tracks",
        "identifies",
        "users",
        "pages",
        "groups",
        "aliases",
        "order_completed",
        "opened",
        "id_graph_updates",
        "external_id_mapping_updates",
        "profile_traits_updates",
        "profile_merges",
        "user_identifiers",
        "user_traits",
        "user_accounts",
    }

    assert world.eraser().erase(world.erasure()) is None

    after = world.tables()
    assert after.keys() == before.keys()
    for key, (columns, rows) in before.items():
        kept = [r for r in rows if not world.is_u2s(columns, r)]
        assert after[key] == (columns, kept), key
    # u3's rows are all there, u3's property naming u2 included.
    columns, users = after[("web", "users")]
    assert [r[columns.index("id")] for r in users] == ["u3"]
    columns, orders = after[("web", "order_completed")]
    assert [(r[columns.index("user_id")], r[columns.index("friend")]) for r in orders] == [
        ("u3", "u2")
    ]


def test_the_duckdb_file_no_longer_holds_the_subjects_bytes(
    world: World, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if kind != "duckdb":
        pytest.skip("a DuckDB file's bytes")
    fill(world)
    path = duckdb_path(world.warehouse, world.tmp)
    assert MARKER.encode() in path.read_bytes()  # the search would find it: it is honest

    # A crash after the deletes, before the file is rewritten: the bytes are still there…
    def crash(self: DuckDBLoader) -> None:
        raise WarehouseError("crashed before compacting")

    monkeypatch.setattr(DuckDBLoader, "compact", crash)
    with pytest.raises(WarehouseError):
        world.eraser().erase(world.erasure())
    assert MARKER.encode() in path.read_bytes()
    monkeypatch.undo()

    # …and the repeat, though it finds no row left to delete, finishes the rewrite.
    assert world.eraser().erase(world.erasure()) is None
    assert MARKER.encode() not in path.read_bytes()
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name)) == [
        path.name
    ]
    assert world.tables()[("web", "users")][1]  # u3 still there, the file still a warehouse
    world.send("web", "track", event="Later", userId="u3")
    world.sync()  # and still loads


def test_a_source_scoped_erasure_touches_only_that_sources_rows(world: World) -> None:
    fill(world)
    before = world.tables()
    assert world.eraser().erase(world.erasure(source_ids=frozenset({world.sources["app"]}))) is None
    after = world.tables()
    app = world.sources["app"]
    for (name, table), (columns, rows) in before.items():
        if name == "app":  # the app's schema: u2's rows gone
            kept = [r for r in rows if not world.is_u2s(columns, r)]
        elif name == world.profiles_schema and "event_source_id" in columns:
            # Profiles Sync's event tables: u2's rows of the app's events gone
            source = columns.index("event_source_id")
            kept = [r for r in rows if not (world.is_u2s(columns, r) and r[source] == app)]
        else:  # the web's schema and the profile tables: untouched
            kept = rows
        assert after[(name, table)] == (columns, kept), (name, table)
    assert (
        after[(world.profiles_schema, "opened")][1] != before[(world.profiles_schema, "opened")][1]
    )
    columns, rows = before[("app", "opened")]
    assert any(world.is_u2s(columns, r) for r in rows)  # there was something to delete


def test_a_running_sync_makes_the_erasure_wait_and_the_erasure_leaves_no_run(
    world: World,
) -> None:
    fill(world)
    runs = schema.warehouse_syncs
    with write_transaction(world.engine) as conn:
        busy = conn.execute(
            runs.insert()
            .values(
                warehouse_id=world.warehouse.id,
                trigger="schedule",
                status=RUNNING,
                started_at=int(world.clock()),
                heartbeat_at=int(world.clock()),
                rows={},
                notices=[],
            )
            .returning(runs.c.id)
        ).scalar_one()
    before = world.tables()
    outcome = world.eraser().erase(world.erasure())
    assert isinstance(outcome, Progress) and "sync" in outcome.detail
    assert world.tables() == before  # nothing deleted while the sync runs
    with write_transaction(world.engine) as conn:
        conn.execute(sa.delete(runs).where(runs.c.id == busy))
        count = sa.select(sa.func.count()).select_from(runs)
        history = conn.execute(count).scalar_one()
    assert world.eraser().erase(world.erasure()) is None
    with world.engine.connect() as conn:
        assert conn.execute(count).scalar_one() == history  # the erasure's hold is gone
    world.sync()  # a sync can start again


def test_one_eraser_per_warehouse_with_tables(world: World) -> None:
    found = warehouse_erasers(world.warehouses, world.tmp)
    assert [(e.target.kind, e.target.id, e.target.name) for e in found] == [
        ("warehouse", world.warehouse.id, "wh")
    ]


def test_ids_go_in_batches_and_every_id_is_in_one() -> None:
    subjects = Subjects(
        user_ids=frozenset({"u1", "u2", "u3"}),
        anonymous_ids=frozenset({"a1", "a2"}),
        external_ids=frozenset({("email", "x@y.z")}),
    )
    columns: dict[str, Any] = {"id": "varchar", "user_id": "varchar", "previous_id": "varchar"}
    found = list(matches("aliases", columns, subjects, None, batch=2))
    assert len(found) == 3  # previous_id: five ids, two at a time
    assert all(len(values) <= 2 for m in found for values in m.any_of.values())
    taken = {c: {v for m in found for v in m.any_of.get(c, ())} for c in ("user_id", "previous_id")}
    assert taken == {"user_id": {"u1", "u2", "u3"}, "previous_id": {"u1", "u2", "u3", "a1", "a2"}}
    # A value longer than the warehouse keeps is also matched as it was stored.
    long = "u" * 600
    (match,) = matches("users", {"id": "varchar"}, Subjects(user_ids=frozenset({long})), None)
    assert set(match.any_of["id"]) == {long, long[:512]}
    # Profile tables have no source: a source-scoped erasure leaves them.
    profile = {"segment_id": "varchar", "canonical_segment_id": "varchar"}
    assert not list(matches("profile_merges", profile, subjects, frozenset({"s"})))
    pairs = {"external_id_type": "varchar", "external_id_value": "varchar", "segment_id": "varchar"}
    (match,) = matches("external_id_mapping_updates", pairs, subjects, None)
    assert match.pairs is not None and set(match.pairs[2]) >= {
        ("email", "x@y.z"),
        ("user_id", "u1"),
    }
