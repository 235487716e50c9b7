"""Identity resolution as a pipeline stage: the ``unify`` consumer group over the processed
stream, on SQLite and PostgreSQL — order by receivedAt, one writer, resume after a crash without
double-applying, and the month of history replayed when a source is connected."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.pipeline.consumer import Consumer
from headwater.store import schema
from headwater.store.archive import Archive, ArchiveWriter
from headwater.store.log import EventLog
from headwater.store.record import encode_record
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import format_timestamp
from headwater.unify.graph import GraphStore
from headwater.unify.profiles import ProfileData
from headwater.unify.spaces import SpaceInfo, SpaceStore
from headwater.unify.sql_graph import SqlGraph
from headwater.unify.stage import GROUP, REPLAY_DAYS, REPLAY_MARGIN, IdentityStage
from tests.support.clock import Clock
from tests.support.unify import Space

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()
DAY = 86_400.0


class Pipeline:
    """A workspace with sources web and ios, a space `main`, the processed stream, the archive
    and the stage, all on one database."""

    def __init__(self, engine: Engine, tmp_path: Path, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        clock.now = NOW
        self.workspace = WorkspaceStore(engine, clock)
        self.workspace_id = self.workspace.ensure_workspace("acme").id
        self.web = self.workspace.create_source("web").id
        self.ios = self.workspace.create_source("ios").id
        self.spaces = SpaceStore(self.workspace)
        self.space: SpaceInfo = self.spaces.create("main", sources=["web"])
        self.log = EventLog(engine, clock=clock)
        self.log.register(GROUP)
        self.archive_dir = tmp_path / "archive"
        self.sent = 0

    def stage(self) -> IdentityStage:
        return IdentityStage(self.engine, Archive(self.archive_dir), clock=self.clock)

    def consumer(self, stage: IdentityStage | None = None, owner: str = "w1") -> Consumer:
        stage = stage or self.stage()
        return Consumer(self.log, GROUP, stage, owner=owner, exclusive=True, idle=stage.replay)

    def event(self, at: float, type_: str = "track", **fields: Any) -> dict[str, Any]:
        self.sent += 1
        stamp = format_timestamp(datetime.fromtimestamp(at, UTC))
        event: dict[str, Any] = {
            "type": type_,
            "messageId": f"m-{self.sent}",
            "timestamp": stamp,
            "receivedAt": stamp,
            "context": {},
        }
        if type_ == "track":
            event["event"] = "Viewed"
        event.update(fields)
        return event

    def append(self, events: list[dict[str, Any]], source_id: str | None = None) -> None:
        for event in events:
            payload = encode_record(
                self.workspace_id, source_id or self.web, event["receivedAt"], [event]
            )
            self.log.append([payload])

    def archive(self, events: list[dict[str, Any]], source_id: str) -> None:
        writer = ArchiveWriter(self.archive_dir)
        writer(
            [
                (0, i, encode_record(self.workspace_id, source_id, e["receivedAt"], [e]))
                for i, e in enumerate(events)
            ]
        )

    def drain(self, consumer: Consumer) -> None:
        for _ in range(100):
            if consumer.run_once() == 0:
                return
        raise AssertionError("the stage did not catch up")

    def graph(self) -> SqlGraph:
        return SqlGraph(self.engine, self.space.id)

    def grouping(self, values: list[tuple[str, str]]) -> list[str | None]:
        return _profiles(self.graph(), values)


@pytest.fixture
def pipeline(engine: Engine, tmp_path: Path, clock: Clock) -> Pipeline:
    return Pipeline(engine, tmp_path, clock)


def test_a_connected_source_is_resolved_and_another_is_not(pipeline: Pipeline) -> None:
    p = pipeline
    p.append([p.event(NOW, userId="u1", anonymousId="a1")])
    p.append([p.event(NOW + 1, userId="u2")], source_id=p.ios)  # not connected to main
    p.drain(p.consumer())
    one, anon, two = p.grouping([("user_id", "u1"), ("anonymous_id", "a1"), ("user_id", "u2")])
    assert one is not None and one == anon and two is None


def test_a_pass_resolves_by_received_at_not_by_arrival(pipeline: Pipeline) -> None:
    """A-UE-14's three events (merge protection) appended out of order: resolved in
    receivedAt order they give P1{a1, u1} and P2{u2}; in arrival order they would not."""
    p = pipeline
    first = p.event(NOW, anonymousId="a1", userId="u1")
    logout = p.event(NOW + 1, anonymousId="a1")
    second = p.event(NOW + 2, anonymousId="a1", userId="u2")
    p.append([second, logout, first])
    p.drain(p.consumer())
    u1, a1, u2 = p.grouping([("user_id", "u1"), ("anonymous_id", "a1"), ("user_id", "u2")])
    assert u1 == a1 and u2 is not None and u2 != u1


def test_one_owner_resolves_every_space(pipeline: Pipeline) -> None:
    p = pipeline
    p.append([p.event(NOW + i, userId=f"u{i}") for i in range(5)])
    owner, other = p.consumer(owner="w1"), p.consumer(owner="w2")
    assert owner.run_once() == 5
    p.append([p.event(NOW + 10, userId="u9")])
    assert other.run_once() == 0  # w1 holds every partition
    assert owner.run_once() == 1


def test_a_crash_mid_pass_leaves_nothing_and_the_rerun_applies_each_event_once(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass's transaction holds the graph, the profile data and the offsets: a failure on
    its 40th event rolls all of it back; the next pass (a fresh process) resolves the same
    events once, to the graph a clean run gives."""
    p = pipeline
    rng = random.Random(7)
    events = [
        p.event(
            NOW + i,
            anonymousId=f"a{rng.randrange(20)}",
            **({"userId": f"u{rng.randrange(8)}"} if rng.random() < 0.4 else {}),
        )
        for i in range(60)
    ]
    p.append(events)
    stage = p.stage()
    calls = {"n": 0}
    record = ProfileData.record

    def failing(self: ProfileData, *args: Any) -> dict[str, Any]:
        calls["n"] += 1
        if calls["n"] == 40:
            raise RuntimeError("power cut")
        return record(self, *args)

    monkeypatch.setattr(ProfileData, "record", failing)
    consumer = p.consumer(stage)
    with pytest.raises(RuntimeError):
        consumer.run_once()
    values = [("anonymous_id", f"a{i}") for i in range(20)] + [
        ("user_id", f"u{i}") for i in range(8)
    ]
    assert _groups(p.graph(), values) == frozenset()
    p.drain(consumer)  # the same records again, in a new transaction
    # A clean run of the same events gives the same graph.
    clean = Space()
    for event in events:
        clean.resolve(event, p.web)
    assert _groups(p.graph(), values) == _groups(clean.graph, values) != frozenset()


def test_a_restarted_owner_skips_what_a_committed_pass_handled(pipeline: Pipeline) -> None:
    """A crash after the pass's transaction but before the log's offsets were committed: the
    new process is given the same records again and changes nothing."""
    p = pipeline
    p.append([p.event(NOW, anonymousId="a1"), p.event(NOW + 1, anonymousId="a2")])
    p.drain(p.consumer())
    values = [("anonymous_id", "a1"), ("anonymous_id", "a2")]
    before = _profiles(p.graph(), values)
    p.log.register("again")  # a group that starts from the first record again
    p.drain(Consumer(p.log, "again", p.stage(), owner="w9", exclusive=True))
    assert p.graph().find("users", "anonymous_id", "a1") == before[0]
    assert _profiles(p.graph(), values) == before
    assert len(set(before)) == 2


def test_connecting_a_source_replays_its_last_month_oldest_first(pipeline: Pipeline) -> None:
    p = pipeline
    history = [
        p.event(NOW - (REPLAY_DAYS + 1) * DAY, userId="old", anonymousId="x0"),  # too old
        p.event(NOW - 20 * DAY, anonymousId="i1"),
        p.event(NOW - 10 * DAY, anonymousId="i1", userId="ios-user"),
        p.event(NOW - 5 * DAY, anonymousId="i2", userId="ios-user"),
    ]
    p.archive(history, p.ios)
    stage = p.stage()
    consumer = p.consumer(stage)
    p.spaces.connect_source("main", "ios")
    p.clock.now = NOW + REPLAY_MARGIN + 1
    p.drain(consumer)  # no record waiting: the replay is the consumer's idle work
    assert stage.pending_replays() == []
    graph = p.graph()
    user = graph.find("users", "user_id", "ios-user")
    assert user is not None
    assert graph.find("users", "anonymous_id", "i1") == user
    assert graph.find("users", "anonymous_id", "i2") == user
    assert graph.find("users", "user_id", "old") is None
    # The first identifier came from the oldest event (replayed oldest first).
    rows = {(r.type, r.value): r for r in graph.identifiers(user)}
    assert rows[("anonymous_id", "i1")].message_id == history[1]["messageId"]


def test_a_long_replay_goes_in_chunks_and_a_second_connection_changes_nothing(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("headwater.unify.stage.REPLAY_CHUNK", 7)
    p = pipeline
    history = [
        p.event(NOW - 3 * DAY + i * 600, anonymousId=f"h{i // 3}", userId=f"hu{i // 6}")
        for i in range(40)
    ]
    p.archive(history, p.ios)
    stage = p.stage()
    consumer = p.consumer(stage)
    p.spaces.connect_source("main", "ios")
    p.clock.now = NOW + REPLAY_MARGIN + 1
    passes = 0
    while stage.pending_replays():
        consumer.run_once()
        passes += 1
        assert passes < 20
    assert passes >= 6  # 40 events, 7 a pass
    values = [("anonymous_id", f"h{i}") for i in range(14)] + [
        ("user_id", f"hu{i}") for i in range(7)
    ]
    graph = p.graph()
    replayed = _profiles(graph, values)
    assert None not in replayed and len(set(replayed)) == 7
    # Connected again: the month is replayed again and changes nothing.
    p.spaces.disconnect_source("main", "ios")
    p.spaces.connect_source("main", "ios")
    assert stage.pending_replays()
    p.drain(consumer)
    assert _profiles(p.graph(), values) == replayed


def _profiles(graph: SqlGraph, values: list[tuple[str, str]]) -> list[str | None]:
    return [graph.find("users", t, v) for t, v in values]


def _groups(graph: GraphStore, values: list[tuple[str, str]]) -> frozenset[frozenset[str]]:
    """Which of these identifiers share a profile, without the profiles' random ids."""
    groups: dict[str, set[str]] = {}
    for t, v in values:
        profile = graph.find("users", t, v)
        if profile is not None:
            groups.setdefault(profile, set()).add(f"{t}:{v}")
    return frozenset(frozenset(g) for g in groups.values())


def test_deleting_a_space_deletes_what_unify_made_of_its_events(pipeline: Pipeline) -> None:
    p = pipeline
    p.append(
        [
            p.event(NOW, "identify", anonymousId="a1", userId="u1", traits={"plan": "pro"}),
            p.event(NOW + 1, anonymousId="a1", event="Viewed"),
            p.event(NOW + 2, "group", userId="u1", groupId="g1"),
            p.event(NOW + 3, anonymousId="a2", userId="u1"),  # a merge
        ]
    )
    p.drain(p.consumer())
    assert _rows(p.engine, p.space.id) > 0
    p.spaces.delete("main")
    assert _rows(p.engine, p.space.id) == 0


def _rows(engine: Engine, space_id: str) -> int:
    """Rows of every unify_ table that belong to the space (links through their profiles)."""
    tables = [t for t in schema.metadata.sorted_tables if t.name.startswith("unify_")]
    total = 0
    with engine.connect() as conn:
        for table in tables:
            if "space_id" in table.c:
                query = sa.select(sa.func.count()).where(table.c.space_id == space_id)
            else:
                query = sa.select(sa.func.count()).select_from(table)
            total += conn.execute(query.select_from(table)).scalar_one()
    return total
