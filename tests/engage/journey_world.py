"""A space with audiences, Engage destinations and journeys, driven through the real identity
stage and Engage stage (with the journeys' follower) on a test clock."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.destinations.store import DestinationStore
from headwater.engage.computations import ComputationStore, Planned
from headwater.engage.journeys.runner import JourneyFollower
from headwater.engage.journeys.store import JourneyInfo, JourneyStore, Live
from headwater.engage.stage import EngageStage
from headwater.pipeline.consumer import Consumer
from headwater.store import schema
from headwater.store.archive import Archive
from headwater.store.log import EventLog
from headwater.store.record import encode_record
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import format_timestamp
from headwater.unify.profiles import ProfileData
from headwater.unify.spaces import SpaceStore
from headwater.unify.sql_graph import SqlGraph
from headwater.unify.stage import GROUP, IdentityStage
from tests.support.clock import Clock

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()
MINUTE = 60.0
HOUR = 3600.0
DAY = 86_400.0
HOOK = "journey-hook"
LIST = "ads-list"


class World:
    def __init__(self, engine: Engine, tmp_path: Path, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        clock.now = NOW
        workspace = WorkspaceStore(engine, clock)
        self.workspace_id = workspace.ensure_workspace("acme").id
        self.web = workspace.create_source("web").id
        spaces = SpaceStore(workspace)
        self.space = spaces.create("main", sources=["web"])
        engage_source = spaces.engage_source(self.space.id).id
        destinations = DestinationStore(workspace)
        for name in (HOOK, LIST):
            destinations.create(
                name, "webhook", engage_source, settings={"url": "https://example.com/hook"}
            )
        self.computations = ComputationStore(workspace)
        self.journeys = JourneyStore(workspace)
        planned = Planned(workspace, interval=0)
        live = Live(workspace, interval=0)
        follower = JourneyFollower(live.journeys, planned.computations)
        self.engage = EngageStage(
            engine,
            planned.computations,
            planned.connections,
            clock=clock,
            followers=[follower],
        )
        self.log = EventLog(engine)  # leases on real time: the test clock jumps days
        self.log.register(GROUP)
        stage = IdentityStage(
            engine, Archive(tmp_path / "archive"), clock=clock, observers=[self.engage]
        )
        self.consumer = Consumer(
            self.log, GROUP, stage, owner="w1", exclusive=True, idle=stage.replay
        )
        self.sent = 0
        self.seen = 0

    def audience(self, name: str, definition: str) -> str:
        return self.computations.create("main", "audience", name, definition).key

    def journey(self, name: str, definition: dict[str, Any], **kw: Any) -> JourneyInfo:
        return self.journeys.create("main", name, definition, publish=True, **kw)

    def send(self, type_: str = "track", **fields: Any) -> None:
        self.sent += 1
        stamp = format_timestamp(datetime.fromtimestamp(self.clock.now, UTC))
        event: dict[str, Any] = {
            "type": type_,
            "messageId": f"m-{self.sent}",
            "timestamp": stamp,
            "receivedAt": stamp,
            "context": {},
            **fields,
        }
        self.log.append([encode_record(self.workspace_id, self.web, stamp, [event])])
        self.run()

    def send_many(self, events: list[dict[str, Any]]) -> None:
        """Many events in one log record: one pass of the stage."""
        stamp = format_timestamp(datetime.fromtimestamp(self.clock.now, UTC))
        batch = []
        for fields in events:
            self.sent += 1
            batch.append(
                {
                    "type": "track",
                    "messageId": f"m-{self.sent}",
                    "timestamp": stamp,
                    "receivedAt": stamp,
                    "context": {},
                    **fields,
                }
            )
        self.log.append([encode_record(self.workspace_id, self.web, stamp, batch)])
        self.run()

    def later(self, seconds: float) -> None:
        """Time passes; the stage's idle work runs."""
        self.clock.advance(seconds)
        self.run()

    def run(self) -> None:
        done = []
        for _ in range(100):
            done.append(self.consumer.run_once())
            if done[-1] == 0:
                return
        raise AssertionError(f"the stage did not catch up: {done[:5]}")

    def messages(self, journeys_only: bool = True) -> list[dict[str, Any]]:
        """The outbox's messages since the last call (journeys' only, by default)."""
        box = schema.engage_outbox
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(box.c.seq, box.c.body).where(box.c.seq > self.seen).order_by(box.c.seq)
            ).all()
        if rows:
            self.seen = rows[-1].seq
        found = [msgspec.json.decode(r.body) for r in rows]
        if not journeys_only:
            return found
        return [
            m
            for m in found
            if m["context"]["personas"]["computation_class"] == "journey_step"
            or str(m["context"]["personas"]["computation_key"]).startswith("j_o_")
        ]

    def profile(self, user_id: str) -> str:
        found = SqlGraph(self.engine, self.space.id).find("users", "user_id", user_id)
        assert found is not None
        return found

    def traits(self, user_id: str) -> dict[str, Any]:
        data = ProfileData(self.engine, self.space.id)
        return {
            k: t.value
            for k, t in data.traits(self.profile(user_id), trait_class="computed_trait").items()
        }

    def steps(self, journey: JourneyInfo, user_id: str, instance: str = "") -> list[str]:
        """The steps a member is in now, in the order joined."""
        table = schema.engage_journey_members
        with self.engine.connect() as conn:
            state = conn.execute(
                sa.select(table.c.state).where(
                    table.c.journey_id == journey.id,
                    table.c.profile_id == self.profile(user_id),
                    table.c.instance == instance,
                )
            ).scalar_one_or_none()
        if state is None:
            return []
        joined: dict[str, float] = state["joined"]
        return [s for s, _ in sorted(joined.items(), key=lambda i: i[1]) if s != "@entry"]
