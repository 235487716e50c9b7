"""Profiles Sync end to end: events through the real ``Resolver`` and the feed into the state
database, then a real warehouse sync into the space's schema — on DuckDB and PostgreSQL
warehouses, with the state on SQLite and PostgreSQL (spec/unify-engage.md §11)."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.store import schema
from headwater.store.archive import Archive
from headwater.store.database import write_transaction
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import format_timestamp
from headwater.unify.graph import CreateProfile, MergeProfiles
from headwater.unify.memory import MemoryGraph
from headwater.unify.profile_ids import ProfileIds
from headwater.unify.profiles_sync import ProfilesSyncFeed
from headwater.unify.resolution import Resolution, Resolver, event_time
from headwater.unify.spaces import SpaceInfo, SpaceStore
from headwater.warehouse.connect import loader_for
from headwater.warehouse.profiles_sync import trait_text
from headwater.warehouse.store import WarehouseInfo, WarehouseStore
from headwater.warehouse.sync import SUCCESS, SyncResult, WarehouseSync
from tests.support.postgres import pg_settings

S = "twilio_space"  # the schema: the space's slug
ANON_1 = "5285bc35-05ef-4d21"
ANON_2 = "b50e18a5-1b8d-451c"
EMAIL = "jane.kim@segment.com"


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class TraitBook:
    """What the profiles store tells the feed: per event, the traits it changed on each
    profile — an Identify's changes and, after a merge, what the survivor took from the
    merged profile (later value wins). With ``report_merges`` off only an Identify's own
    changes are told, so the warehouse's merge semantics stand alone. A Group call's traits
    are told for its account profile, as the profiles store tells them."""

    def __init__(self, report_merges: bool = True) -> None:
        self.report_merges = report_merges
        self.traits: dict[str, dict[str, tuple[Any, float]]] = {}
        self.accounts: dict[str, dict[str, Any]] = {}  # account profile → its traits

    def apply(
        self, event: Mapping[str, Any], resolution: Resolution
    ) -> list[tuple[str, dict[str, Any]]]:
        if resolution.user is None:
            return []
        at = event_time(dict(event)) or 0.0
        changed: dict[str, Any] = {}
        for change in resolution.changes:
            if isinstance(change, MergeProfiles) and change.collection == "users":
                gone = self.traits.pop(change.from_id, {})
                kept = self.traits.setdefault(change.into_id, {})
                for name, (value, when) in gone.items():
                    if name not in kept or when > kept[name][1]:
                        kept[name] = (value, when)
                        if self.report_merges:
                            changed[name] = value
        if event.get("type") == "identify":
            held = self.traits.setdefault(resolution.user, {})
            for name, value in dict(event.get("traits") or {}).items():
                if value is None:
                    if name in held:
                        del held[name]
                        changed[name] = None
                elif name not in held or held[name][0] != value:
                    held[name] = (value, at)
                    changed[name] = value
        told = [(resolution.user, changed)] if changed else []
        if event.get("type") == "group" and resolution.account is not None:
            account = self.accounts.setdefault(resolution.account, {})
            changed = {}
            for name, value in dict(event.get("traits") or {}).items():
                if value is None and name in account:
                    del account[name]
                    changed[name] = None
                elif value is not None and account.get(name) != value:
                    account[name] = changed[name] = value
            if changed:
                told.append((resolution.account, changed))
        return told


@dataclass
class World:
    tmp: Path
    engine: Engine
    workspace: WorkspaceStore
    warehouses: WarehouseStore
    warehouse: WarehouseInfo
    space: SpaceInfo
    sources: dict[str, str]  # name -> id
    now: datetime
    book: TraitBook = field(default_factory=TraitBook)
    graph: MemoryGraph = field(default_factory=MemoryGraph)
    feed: ProfilesSyncFeed = field(default_factory=ProfilesSyncFeed)

    def __post_init__(self) -> None:
        self.resolver = Resolver(self.graph, ids=ProfileIds(7))

    def clock(self) -> float:
        return self.now.timestamp()

    def send(self, event: dict[str, Any], source: str = "source_1") -> Resolution:
        """What the identity stage does: resolve, then record, in one state transaction."""
        source_id = self.sources[source]
        resolution = self.resolver.resolve(event, source_id)
        traits = self.book.apply(event, resolution)
        with write_transaction(self.engine) as conn:
            self.feed.record(conn, self.space.id, source_id, event, resolution, traits)
        return resolution

    def sync(self) -> SyncResult:
        runner = WarehouseSync(
            self.warehouses, Archive(self.tmp / "archive"), self.tmp, clock=self.clock
        )
        result = runner.run(self.warehouses.require(self.warehouse.id))
        assert result.status == SUCCESS, result
        return result

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        loader = loader_for(self.warehouses.require(self.warehouse.id), self.tmp)
        try:
            return list(loader.query(sql)[1])
        finally:
            loader.close()

    def table(self, name: str) -> list[tuple[Any, ...]]:
        """A whole table or view, sorted, for before/after comparisons."""
        return sorted(self.rows(f"SELECT * FROM {S}.{name}"), key=repr)

    def outbox(self) -> int:
        with self.engine.connect() as conn:
            box = schema.unify_sync_outbox
            return int(conn.execute(sa.select(sa.func.count()).select_from(box)).scalar_one())


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def world(tmp_path: Path, engine: Engine, kind: str, request: pytest.FixtureRequest) -> World:
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    sources = {
        name: workspace.create_source(name, slug=name).id for name in ("source_1", "source_2")
    }
    warehouses = WarehouseStore(workspace)
    settings = {} if kind == "duckdb" else pg_settings(request.getfixturevalue("pg_database"))
    warehouse = warehouses.create("wh", kind, settings=settings)
    space = SpaceStore(workspace).create(
        "Twilio Space", sources=list(sources.values()), profiles_sync=(warehouse.id, None)
    )
    (tmp_path / "archive").mkdir()
    return World(
        tmp_path,
        engine,
        workspace,
        warehouses,
        warehouse,
        space,
        sources,
        now=utc("2022-06-22 11:00:00"),
    )


def event(type_: str, message_id: str, when: str, **fields: Any) -> dict[str, Any]:
    at = format_timestamp(utc(when))
    return {
        "type": type_,
        "messageId": message_id,
        "timestamp": at,
        "receivedAt": at,
        "sentAt": at,
        "context": {"library": {"name": "analytics.js", "version": "2.1"}},
        **fields,
    }


def page(message_id: str, when: str, anonymous_id: str, url: str) -> dict[str, Any]:
    found = event("page", message_id, when, anonymousId=anonymous_id, properties={"url": url})
    found["context"]["page"] = {"url": url}
    return found


def identify(
    message_id: str, when: str, anonymous_id: str, url: str = "", **traits: Any
) -> dict[str, Any]:
    found = event("identify", message_id, when, anonymousId=anonymous_id, traits=traits)
    if url:
        found["context"]["page"] = {"url": url}
    return found


def case_study(world: World) -> tuple[str, str]:
    """§11.4's four events; the real ids of profile_1 and profile_2."""
    e1 = world.send(page("event_1", "2022-05-02 14:01:00", ANON_1, "twilio.com"))
    world.send(
        identify("event_2", "2022-05-02 14:01:47", ANON_1, "twilio.com/try-twilio", email=EMAIL)
    )
    e3 = world.send(page("event_3", "2022-06-22 10:47:15", ANON_2, "twilio.com/education"))
    e4 = world.send(
        identify("event_4", "2022-06-22 10:48:00", ANON_2, "twilio.com/events/webinars", email=EMAIL),
        source="source_2",
    )  # fmt: skip
    assert e1.user is not None and e3.user is not None and e1.user != e3.user
    assert e4.user == e1.user  # profile_2 merged into profile_1
    return e1.user, e3.user


def test_case_study_gives_exactly_the_documented_rows_a_ue_58(world: World) -> None:
    """A-UE-58: the §11.4 events give exactly the documented rows in every table (with §21
    #11's correction: profile_2's anonymous_id was first seen at 10:47:15)."""
    p1, p2 = case_study(world)
    src1, src2 = world.sources["source_1"], world.sources["source_2"]
    t1, t2 = utc("2022-05-02 14:01:00"), utc("2022-05-02 14:01:47")
    t3, t4 = utc("2022-06-22 10:47:15"), utc("2022-06-22 10:48:00")

    result = world.sync()

    assert result.rows[S]["id_graph_updates"] == 3
    assert world.rows(
        "SELECT segment_id, canonical_segment_id, triggering_event_type, triggering_event_id, "
        f"timestamp FROM {S}.id_graph_updates ORDER BY seq, segment_id"
    ) == [
        (p1, p1, "page", "event_1", t1),
        (p2, p2, "page", "event_3", t3),
        (p2, p1, "identify", "event_4", t4),
    ]
    assert world.rows(
        "SELECT segment_id, external_id_type, external_id_value, triggering_event_type, "
        f"triggering_event_id, timestamp FROM {S}.external_id_mapping_updates ORDER BY seq"
    ) == [
        (p1, "anonymous_id", ANON_1, "page", "event_1", t1),
        (p1, "email", EMAIL, "identify", "event_2", t2),
        (p2, "anonymous_id", ANON_2, "page", "event_3", t3),
    ]
    assert world.rows(
        f"SELECT segment_id, url, anonymous_id, event_source_id, id, timestamp FROM {S}.pages "
        "ORDER BY timestamp"
    ) == [
        (p1, "twilio.com", ANON_1, src1, "event_1", t1),
        (p2, "twilio.com/education", ANON_2, src1, "event_3", t3),
    ]
    # The event row keeps the profile at event time (profile_2 for the merging event 4).
    assert world.rows(
        "SELECT segment_id, context_page_url, anonymous_id, email, event_source_id, id, "
        f"timestamp FROM {S}.identifies ORDER BY timestamp"
    ) == [
        (p1, "twilio.com/try-twilio", ANON_1, EMAIL, src1, "event_2", t2),
        (p2, "twilio.com/events/webinars", ANON_2, EMAIL, src2, "event_4", t4),
    ]
    assert world.rows(
        f"SELECT segment_id, canonical_segment_id, timestamp FROM {S}.id_graph ORDER BY timestamp"
    ) == [(p1, p1, t1), (p2, p1, t4)]
    assert world.rows(
        "SELECT canonical_segment_id, external_id_type, external_id_value, timestamp "
        f"FROM {S}.external_id_mapping ORDER BY timestamp"
    ) == [
        (p1, "anonymous_id", ANON_1, t1),
        (p1, "email", EMAIL, t2),
        (p1, "anonymous_id", ANON_2, t4),
    ]
    assert world.rows(
        f"SELECT canonical_segment_id, email, merged_to FROM {S}.profile_traits "
        "ORDER BY merged_to NULLS FIRST"
    ) == [(p1, EMAIL, None), (p2, None, p1)]
    # Only the tables of §11.2 (and the views): no users table, no tracks without a track.
    loader = loader_for(world.warehouses.require(world.warehouse.id), world.tmp)
    try:
        tables = set(loader.columns(S))
    finally:
        loader.close()
    assert tables == {
        "id_graph_updates",
        "external_id_mapping_updates",
        "profile_traits_updates",
        "user_identifiers",
        "user_traits",
        "profile_merges",
        "pages",
        "identifies",
    }
    assert world.outbox() == 0  # pruned once the space's warehouse has it


def test_external_id_hash_is_sha1_of_type_and_value_a_ue_59(world: World) -> None:
    """A-UE-59: external_id_hash = hex(sha1(external_id_type || external_id_value)), checked
    against Python's sha1 and (DuckDB) the warehouse's own, as Segment's BigQuery formula
    ``TO_HEX(SHA1(concat(external_id_type, external_id_value)))`` computes it."""
    case_study(world)
    world.sync()

    found = world.rows(
        f"SELECT external_id_hash, external_id_type || external_id_value "
        f"FROM {S}.external_id_mapping_updates WHERE external_id_type = 'email'"
    )

    assert found == [
        (hashlib.sha1(b"emailjane.kim@segment.com").hexdigest(), "emailjane.kim@segment.com")
    ]
    if world.warehouse.type == "duckdb":  # PostgreSQL has no sha1() without pgcrypto
        mismatched = world.rows(
            f"SELECT external_id_hash FROM {S}.external_id_mapping_updates "
            "WHERE external_id_hash <> sha1(external_id_type || external_id_value)"
        )
        assert mismatched == []
        assert len(world.rows(f"SELECT 1 FROM {S}.external_id_mapping_updates")) == 3


@pytest.mark.parametrize("report_merges", [True, False], ids=["told", "derived"])
def test_merges_move_identifiers_and_traits_latest_wins_a_ue_60(
    world: World, report_merges: bool
) -> None:
    """A-UE-60: after a merge the materialized tables have no row for the merged-away
    profile and the survivor holds the union, the later trait winning — also when a profile
    that others were merged into is merged again (recursive rows), across syncs, and whether
    or not the profiles store tells the survivor's merged traits."""
    world.book.report_merges = report_merges
    day = "2022-06-20"
    z = world.send(identify("z1", f"{day} 08:00:00", "anon-z", plan="enterprise", tier="gold"))
    a = world.send(identify("a1", f"{day} 09:00:00", "anon-a", email="ann@x.io", plan="free"))
    b = world.send(identify("b1", f"{day} 10:00:00", "anon-b", plan="pro", city="Oslo"))
    world.send(identify("ab", f"{day} 11:00:00", "anon-b", email="ann@x.io"))  # B into A
    pz, pa, pb = z.user, a.user, b.user
    assert pz and pa and pb

    world.sync()

    def materialized() -> tuple[list[Any], list[Any], list[Any]]:
        return (
            world.rows(
                f"SELECT canonical_segment_id, type, value FROM {S}.user_identifiers "
                "ORDER BY canonical_segment_id, type, value"
            ),
            world.rows(
                f"SELECT canonical_segment_id, name, value FROM {S}.user_traits "
                "ORDER BY canonical_segment_id, name"
            ),
            world.rows(
                f"SELECT segment_id, canonical_segment_id FROM {S}.profile_merges "
                "ORDER BY segment_id"
            ),
        )

    identifiers, traits, merges = materialized()
    assert identifiers == sorted(
        [
            (pz, "anonymous_id", "anon-z"),
            (pa, "anonymous_id", "anon-a"),
            (pa, "anonymous_id", "anon-b"),
            (pa, "email", "ann@x.io"),
        ]
    )
    assert traits == sorted(
        [
            (pz, "plan", "enterprise"),
            (pz, "tier", "gold"),
            (pa, "city", "Oslo"),
            (pa, "email", "ann@x.io"),
            (pa, "plan", "pro"),  # B's 10:00 value is later than A's 09:00
        ]
    )
    assert merges == sorted([(pz, pz), (pa, pa), (pb, pa)])

    # A (holding B) goes into the older Z: B's pointer follows (a recursive row).
    world.send(identify("za", f"{day} 12:00:00", "anon-z", email="ann@x.io"))
    world.sync()

    identifiers, traits, merges = materialized()
    assert identifiers == sorted(
        [
            (pz, "anonymous_id", "anon-a"),
            (pz, "anonymous_id", "anon-b"),
            (pz, "anonymous_id", "anon-z"),
            (pz, "email", "ann@x.io"),
        ]
    )
    assert traits == sorted(
        [
            (pz, "city", "Oslo"),
            (pz, "email", "ann@x.io"),
            (pz, "plan", "pro"),  # 10:00 beats Z's 08:00
            (pz, "tier", "gold"),
        ]
    )
    assert merges == sorted([(pz, pz), (pa, pz), (pb, pz)])
    assert world.rows(
        "SELECT segment_id, canonical_segment_id, triggering_event_id "
        f"FROM {S}.id_graph_updates WHERE triggering_event_id = 'za' ORDER BY segment_id"
    ) == sorted([(pa, pz, "za"), (pb, pz, "za")])
    assert world.rows(
        f"SELECT canonical_segment_id, plan, merged_to FROM {S}.profile_traits "
        "ORDER BY canonical_segment_id"
    ) == sorted([(pz, "pro", None), (pa, None, pz), (pb, None, pz)])


def test_the_sample_queries_run(world: World) -> None:
    """§11.5's sample queries, in DuckDB's and PostgreSQL's SQL (LISTAGG → string_agg), on the
    case study."""
    p1, p2 = case_study(world)
    world.sync()
    hour = timedelta(hours=1)

    per_hour = world.rows(
        "SELECT date_trunc('hour', timestamp) AS hr, CASE WHEN canonical_segment_id = "
        "segment_id THEN 'profile creation' ELSE 'profile merge' END AS profile_event, "
        "triggering_event_type, COUNT(DISTINCT triggering_event_id) AS event_count "
        f"FROM {S}.id_graph_updates GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
    )
    may, june = utc("2022-05-02 14:00:00"), utc("2022-06-22 10:00:00")
    assert per_hour == [
        (may, "profile creation", "page", 1),
        (june, "profile creation", "page", 1),
        (june, "profile merge", "identify", 1),
    ]
    assert june - may > hour

    at_limit = world.rows(
        "WITH agg AS (SELECT canonical_segment_id, COUNT(LOWER(TRIM(external_id_value))) "
        "AS value_count, string_agg(external_id_value, ', ' ORDER BY external_id_value) "
        f"AS external_id_values FROM {S}.external_id_mapping "
        "WHERE external_id_type = 'anonymous_id' GROUP BY 1) "
        "SELECT canonical_segment_id, external_id_values, value_count FROM agg "
        "WHERE value_count > 1"
    )
    assert at_limit == [(p1, f"{ANON_1}, {ANON_2}", 2)]

    provenance = world.rows(
        "SELECT * FROM (SELECT ids.canonical_segment_id, ident.segment_id, "
        "ident.event_source_id, ident.email, row_number() OVER (PARTITION BY ident.segment_id "
        f"ORDER BY ident.timestamp DESC) AS rn FROM {S}.identifies AS ident "
        f"INNER JOIN {S}.id_graph AS ids ON ids.segment_id = ident.segment_id "
        f"AND ids.canonical_segment_id = '{p1}' AND ident.email IS NOT NULL) AS latest "
        "WHERE rn = 1 ORDER BY segment_id"
    )
    assert provenance == sorted(
        [
            (p1, p1, world.sources["source_1"], EMAIL, 1),
            (p1, p2, world.sources["source_2"], EMAIL, 1),
        ],
        key=lambda r: r[1],
    )

    pages = world.rows(
        f"SELECT id_graph.canonical_segment_id, pages.id FROM {S}.pages "
        f"LEFT JOIN {S}.id_graph ON id_graph.segment_id = pages.segment_id "
        f"WHERE canonical_segment_id = '{p1}' ORDER BY pages.timestamp"
    )
    assert pages == [(p1, "event_1"), (p1, "event_3")]

    customers = world.rows(
        "SELECT canonical_segment_id, string_agg(segment_id, ', ' ORDER BY segment_id) "
        f"FROM {S}.id_graph GROUP BY 1"
    )
    assert customers == [(p1, ", ".join(sorted([p1, p2])))]
    identifiers = world.rows(
        "SELECT canonical_segment_id, string_agg(external_id_value || '(' || external_id_type "
        f"|| ')', ', ' ORDER BY external_id_value) FROM {S}.external_id_mapping GROUP BY 1"
    )
    assert identifiers == [(p1, f"{ANON_1}(anonymous_id), {ANON_2}(anonymous_id), {EMAIL}(email)")]
    assert world.rows(
        f"SELECT canonical_segment_id, email FROM {S}.profile_traits WHERE merged_to IS NULL"
    ) == [(p1, EMAIL)]


def test_recording_an_event_twice_adds_no_row(world: World) -> None:
    """The stage may hand the feed the same event again (a retried transaction), or resolve
    it again (a replay: the graph says duplicate): no outbox row, no warehouse row."""
    first = page("event_1", "2022-06-22 10:00:00", ANON_1, "twilio.com")
    resolution = world.send(first)
    with write_transaction(world.engine) as conn:
        world.feed.record(conn, world.space.id, world.sources["source_1"], first, resolution, [])
    again = world.send(dict(first))  # the resolver answers "duplicate"
    assert again.status == "duplicate"
    assert world.outbox() == 1

    world.sync()
    tables = ("id_graph_updates", "external_id_mapping_updates", "pages", "id_graph")
    before = {t: world.table(t) for t in tables}
    merges = f"SELECT segment_id, canonical_segment_id, timestamp FROM {S}.profile_merges"
    before_merges = world.rows(merges)
    with write_transaction(world.engine) as conn:  # after pruning, the same row comes back
        world.feed.record(conn, world.space.id, world.sources["source_1"], first, resolution, [])
    world.sync()

    assert {t: world.table(t) for t in tables} == before
    assert world.rows(merges) == before_merges  # the same row again (a later seq)
    assert len(before["pages"]) == len(before["id_graph_updates"]) == len(before_merges) == 1


def test_loading_the_same_outbox_range_twice_adds_no_row(world: World) -> None:
    """A sync that loaded a range but died before its position was saved loads it again:
    every table and view comes out the same."""
    case_study(world)
    world.send(identify("event_5", "2022-06-22 10:50:00", ANON_2, plan="pro", email=None))
    with world.engine.connect() as conn:
        kept = [dict(r._mapping) for r in conn.execute(sa.select(schema.unify_sync_outbox))]
    world.sync()
    names = [
        "id_graph_updates",
        "external_id_mapping_updates",
        "profile_traits_updates",
        "user_identifiers",
        "user_traits",
        "profile_merges",
        "pages",
        "identifies",
        "id_graph",
        "external_id_mapping",
        "profile_traits",
    ]
    before = {name: world.table(name) for name in names}
    with write_transaction(world.engine) as conn:
        conn.execute(sa.delete(schema.unify_sync_positions))
        conn.execute(schema.unify_sync_outbox.insert(), kept)

    world.sync()

    assert {name: world.table(name) for name in names} == before
    assert world.rows(f"SELECT name, value FROM {S}.user_traits ORDER BY name") == [
        ("plan", "pro")  # null removed the email trait
    ]


def group(message_id: str, when: str, group_id: str, **fields: Any) -> dict[str, Any]:
    return event("group", message_id, when, groupId=group_id, **fields)


def test_account_tables_keep_every_link_and_trait_merges_move_links_replays_add_nothing(
    world: World,
) -> None:
    """``user_accounts``: one row per canonical profile and account, from its first Group
    call however old (the ``groups`` event table keeps two months); a merge moves the links
    to the survivor, the earlier of two links to one account surviving. ``account_traits``:
    one row per account and trait, the later value winning and ``null`` removing. Loading
    the same outbox range again changes neither."""
    old = "2022-03-01 09:00:00"
    world.send(group("g1", old, "acme", anonymousId="anon-v", traits={"industry": "Software", "tier": "gold"}))  # fmt: skip
    u1 = world.send(group("g2", "2022-06-20 10:00:00", "acme", userId="u1")).user
    world.send(group("g3", "2022-06-20 11:00:00", "beta", userId="u1", traits={"seats": 5}))
    world.sync()
    visitor = world.graph.find("users", "anonymous_id", "anon-v")
    assert u1 and visitor and u1 != visitor
    assert world.rows(
        f"SELECT canonical_segment_id, group_id, timestamp FROM {S}.user_accounts "
        "ORDER BY timestamp"
    ) == [
        (visitor, "acme", utc(old)),
        (u1, "acme", utc("2022-06-20 10:00:00")),
        (u1, "beta", utc("2022-06-20 11:00:00")),
    ]
    assert world.rows(f"SELECT id FROM {S}.groups ORDER BY id") == [("g2",), ("g3",)]

    with world.engine.connect() as conn:
        done = {r.seq for r in conn.execute(sa.select(schema.unify_sync_positions))}
    merging = event(
        "identify",
        "i1",
        "2022-06-21 09:00:00",
        anonymousId="anon-v",
        userId="u1",
        traits={"plan": "pro"},
    )
    survivor = world.send(merging).user
    world.send(group("g4", "2022-06-22 10:00:00", "acme", userId="u1", traits={"tier": None}))
    with world.engine.connect() as conn:
        kept = [dict(r._mapping) for r in conn.execute(sa.select(schema.unify_sync_outbox))]
    assert len(kept) == 2 and done
    world.sync()

    assert survivor in (u1, visitor)
    links = (
        f"SELECT canonical_segment_id, group_id, timestamp FROM {S}.user_accounts ORDER BY group_id"
    )
    traits = f"SELECT group_id, name, value FROM {S}.account_traits ORDER BY group_id, name"
    assert world.rows(links) == [
        (survivor, "acme", utc(old)),  # the earlier link of the two
        (survivor, "beta", utc("2022-06-20 11:00:00")),
    ]
    assert world.rows(traits) == [("acme", "industry", "Software"), ("beta", "seats", "5")]
    accounts = [a for a in world.graph.profiles("accounts")]
    assert len(accounts) == 2
    assert world.rows(
        f"SELECT count(*) FROM {S}.user_traits WHERE canonical_segment_id IN "
        f"('{accounts[0]}', '{accounts[1]}')"
    ) == [(0,)]  # account profiles have no user rows
    assert world.rows(f"SELECT canonical_segment_id, name FROM {S}.user_traits") == [
        (survivor, "plan")
    ]
    before = {name: world.table(name) for name in ("user_accounts", "account_traits")}

    with write_transaction(world.engine) as conn:  # the last range again
        conn.execute(sa.update(schema.unify_sync_positions).values(seq=min(done)))
        conn.execute(schema.unify_sync_outbox.insert(), kept)
    world.sync()

    assert {name: world.table(name) for name in before} == before


def test_events_older_than_two_months_stay_out_of_the_event_tables(world: World) -> None:
    """Event tables hold the last two months (Segment's backfill); the profile tables keep
    everything."""
    world.send(page("old", "2022-04-01 09:00:00", "anon-old", "twilio.com/old"))
    world.send(page("new", "2022-06-01 09:00:00", "anon-new", "twilio.com/new"))

    world.sync()

    assert world.rows(f"SELECT id FROM {S}.pages") == [("new",)]
    assert sorted(world.rows(f"SELECT triggering_event_id FROM {S}.id_graph_updates")) == [
        ("new",),
        ("old",),
    ]


def test_track_events_get_their_own_table_with_segment_id(world: World) -> None:
    """A Track lands in ``tracks`` and in its own table, with the properties as columns."""
    resolution = world.send(
        event(
            "track",
            "t1",
            "2022-06-22 10:30:00",
            anonymousId="anon-t",
            event="Product Purchased",
            properties={"price": 9.5, "sku": "A-1"},
        ),
        source="source_2",
    )

    world.sync()

    assert world.rows(
        f"SELECT segment_id, event_source_id, event, price, sku FROM {S}.product_purchased"
    ) == [(resolution.user, world.sources["source_2"], "product_purchased", 9.5, "A-1")]
    assert world.rows(f"SELECT segment_id, id FROM {S}.tracks") == [(resolution.user, "t1")]


def test_a_failing_space_keeps_its_position_and_the_next_sync_loads_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A load that fails leaves the outbox and the position; the sync reports it."""
    case_study(world)
    from headwater.warehouse.loaders import duckdb as duck
    from headwater.warehouse.loaders import postgres as pg

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the warehouse said no")

    monkeypatch.setattr(duck.DuckDBLoader, "replace", broken)
    monkeypatch.setattr(pg.PostgresLoader, "replace", broken)
    runner = WarehouseSync(
        world.warehouses, Archive(world.tmp / "archive"), world.tmp, clock=world.clock
    )
    failed = runner.run(world.warehouses.require(world.warehouse.id))
    assert failed.failed_tables == 1
    assert any("the warehouse said no" in n for n in failed.notices)
    assert world.outbox() == 4

    monkeypatch.undo()
    world.now += timedelta(hours=1)
    world.sync()

    assert world.outbox() == 0
    assert len(world.rows(f"SELECT * FROM {S}.profile_merges")) == 2
    assert len(world.rows(f"SELECT * FROM {S}.id_graph_updates")) == 3


@pytest.mark.parametrize("report_merges", [True, False], ids=["told", "derived"])
def test_random_events_keep_the_materialized_tables_equal_to_the_graph(
    world: World, report_merges: bool
) -> None:
    """A-UE-60 over random sequences (merges of merged profiles, refused merges, removed
    traits), checked at every sync: ``profile_merges`` says where the graph points each id,
    ``user_identifiers`` holds each canonical profile's identifiers, ``user_traits`` its
    traits (later value wins) — §11.6's consistency between Unify and Profiles Sync."""
    world.book.report_merges = report_merges
    graph, book = world.graph, world.book
    rng = random.Random(14)
    start = utc("2022-06-01 00:00:00")
    created: list[str] = []

    def check() -> None:
        assert sorted(world.rows(f"SELECT segment_id, canonical_segment_id FROM {S}.profile_merges")) == sorted(
            (p, graph.canonical(p)) for p in created
        )  # fmt: skip
        assert sorted(world.rows(f"SELECT canonical_segment_id, type, value FROM {S}.user_identifiers")) == sorted(
            (p, t, v) for p in graph.profiles() for t, values in graph.identities(p).items() for v in values
        )  # fmt: skip
        assert sorted(world.rows(f"SELECT canonical_segment_id, name, value FROM {S}.user_traits")) == sorted(
            (p, name, trait_text(value)) for p, held in book.traits.items() for name, (value, _) in held.items()
        )  # fmt: skip
        assert sorted(world.rows(f"SELECT canonical_segment_id, group_id FROM {S}.user_accounts")) == sorted(
            (p, g) for p in graph.profiles() for a in graph.links(p) for g in graph.identities(a)["group_id"]
        )  # fmt: skip
        assert sorted(world.rows(f"SELECT group_id, name, value FROM {S}.account_traits")) == sorted(
            (graph.identities(a)["group_id"][0], name, trait_text(value))
            for a, held in book.accounts.items() for name, value in held.items()
        )  # fmt: skip
        assert world.outbox() == 0

    for n in range(240):
        when = start + timedelta(minutes=n * 7 + rng.randrange(5))
        fields: dict[str, Any] = {"anonymousId": f"anon-{rng.randrange(40)}"}
        kind = rng.choice(["page", "identify", "identify", "track", "group"])
        if kind == "group":
            fields["groupId"] = f"g{rng.randrange(4)}"
            fields["traits"] = {"size": rng.choice([1, 5, "big", None])}
        if kind == "identify":
            traits: dict[str, Any] = {}
            if rng.random() < 0.4:
                traits["plan"] = rng.choice(["free", "pro", "team", None])
            if rng.random() < 0.5:
                traits["email"] = f"e{rng.randrange(12)}@x.io"
            if rng.random() < 0.3:
                traits["score"] = rng.randrange(100)
            fields["traits"] = traits
            if rng.random() < 0.2:
                fields["userId"] = f"user-{rng.randrange(8)}"
        if kind == "track":
            fields["event"] = "Clicked"
        made = world.send(event(kind, f"m{n}", when.isoformat()[:19].replace("T", " "), **fields))
        created += [
            c.profile_id
            for c in made.changes
            if isinstance(c, CreateProfile) and c.collection == "users"
        ]
        if n % 20 == 19:
            world.now = when + timedelta(minutes=1)
            world.sync()
            check()
    assert len(created) > len(graph.profiles()) > 1  # merges happened
    assert world.rows(f"SELECT count(*) FROM {S}.user_accounts") >= [(10,)]
    assert world.rows(f"SELECT count(*) FROM {S}.account_traits") >= [(2,)]


def test_a_space_whose_schema_is_a_sources_is_not_loaded_and_says_why(world: World) -> None:
    """The space's event tables would mix with the source's (both have ``identifies``, …): the
    sync skips the space, says what to change, and keeps its outbox for when it is changed."""
    case_study(world)
    SpaceStore(world.workspace).update(
        world.space.id, profiles_sync=(world.warehouse.id, "source_1")
    )
    runner = WarehouseSync(
        world.warehouses, Archive(world.tmp / "archive"), world.tmp, clock=world.clock
    )
    result = runner.run(world.warehouses.require(world.warehouse.id))
    assert result.failed_tables == 1
    [notice] = [n for n in result.notices if "profiles sync" in n]
    assert notice.startswith("source_1: profiles sync of space 'Twilio Space' skipped")
    assert "source 'source_1'" in notice and "schema of its own" in notice
    assert world.outbox() == 4

    SpaceStore(world.workspace).update(world.space.id, profiles_sync=(world.warehouse.id, None))
    world.now += timedelta(hours=1)
    world.sync()
    assert world.outbox() == 0
    assert len(world.rows(f"SELECT * FROM {S}.profile_merges")) == 2


def test_a_second_space_on_the_same_schema_is_not_loaded(world: World) -> None:
    """The space that loaded into the schema first keeps it."""
    case_study(world)
    world.sync()
    SpaceStore(world.workspace).create(
        "Other Space", sources=[world.sources["source_1"]], profiles_sync=(world.warehouse.id, S)
    )
    runner = WarehouseSync(
        world.warehouses, Archive(world.tmp / "archive"), world.tmp, clock=world.clock
    )
    result = runner.run(world.warehouses.require(world.warehouse.id))
    assert result.failed_tables == 1
    assert [n for n in result.notices if "skipped" in n] == [
        f"{S}: profiles sync of space 'Other Space' skipped: this schema is space 'Twilio "
        "Space''s in this warehouse; give the space's Profiles Sync a schema of its own "
        "(profiles_sync: {warehouse: …, schema: …})"
    ]
    assert len(world.rows(f"SELECT * FROM {S}.profile_merges")) == 2  # the first space's
