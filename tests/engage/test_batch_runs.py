"""Scheduled batch computation (``engage/batch_runs.py``) through the real pipeline: events
resolved by the identity stage, loaded by Profiles Sync into a DuckDB warehouse, a batch run
on it, its results applied by Engage's observer in the next pass, and the messages queued
for the connected destination: the first run sends every member (A-UE-38), later runs only
the changes; a real-time audience with history is seeded from the warehouse; previews,
statuses and errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.api.engage import use_batch_runs
from headwater.destinations.store import DestinationStore
from headwater.engage.batch_runs import BatchRuns
from headwater.engage.computations import ComputationStore, Planned
from headwater.engage.journeys.runner import JourneyFollower
from headwater.engage.journeys.store import JourneyStore, Live
from headwater.engage.language import parse
from headwater.engage.stage import EngageStage
from headwater.errors import InvalidError
from headwater.pipeline.consumer import Consumer
from headwater.store import schema
from headwater.store.admin_token import hash_token
from headwater.store.archive import Archive
from headwater.store.log import EventLog
from headwater.store.record import encode_record
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import format_timestamp
from headwater.unify.profiles import ProfileData
from headwater.unify.spaces import SpaceStore
from headwater.unify.sql_graph import SqlGraph
from headwater.unify.stage import GROUP, IdentityStage
from headwater.warehouse.profiles_tables import ProfilesWarehouses
from headwater.warehouse.store import WarehouseStore
from headwater.warehouse.sync import SUCCESS, WarehouseSync
from tests.support.clock import Clock

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC).timestamp()
HOUR = 3600.0
# Funnels are batch-only (§13.4): viewed a cart, and then did not order within a day.
ABANDONED = (
    "event('Cart Viewed').within(30 days).where("
    "event('Order Completed').within(parent: 1 days).count() = 0).count() >= 1"
)


class Pipeline:
    def __init__(self, engine: Engine, tmp: Path, clock: Clock, *, profiles_sync: bool) -> None:
        self.engine, self.tmp, self.clock = engine, tmp, clock
        clock.now = NOW
        self.workspace = WorkspaceStore(engine, clock)
        self.workspace_id = self.workspace.ensure_workspace("acme").id
        self.web = self.workspace.create_source("web").id
        self.warehouses = WarehouseStore(self.workspace)
        warehouse = self.warehouses.create("wh", "duckdb", settings={"path": str(tmp / "w.db")})
        self.warehouse_id = warehouse.id
        self.space = SpaceStore(self.workspace).create(
            "main", sources=["web"], profiles_sync=(warehouse.id, None) if profiles_sync else None
        )
        DestinationStore(self.workspace).create(
            "engage-hook", "webhook", "main-engage", settings={"url": "https://example.com/e"}
        )
        self.computations = ComputationStore(self.workspace)
        planned = Planned(self.workspace, interval=0)
        self.log = EventLog(engine, clock=clock)
        self.log.register(GROUP)
        (tmp / "archive").mkdir(exist_ok=True)
        self.archive = Archive(tmp / "archive")
        self.journeys = JourneyStore(self.workspace)
        follower = JourneyFollower(Live(self.workspace, interval=0).journeys, planned.computations)
        engage = EngageStage(
            engine, planned.computations, planned.connections, clock=clock, followers=[follower]
        )
        stage = IdentityStage(engine, self.archive, clock=clock, observers=[engage])
        # The test moves the clock by hours: a lease that long outlives every move.
        self.consumer = Consumer(
            self.log, GROUP, stage, owner="w1", exclusive=True, idle=stage.replay, lease_ttl=1e9
        )
        self.runs = BatchRuns(
            engine,
            self.workspace,
            ProfilesWarehouses(self.warehouses, engine, tmp),
            owner="test",
            clock=clock,
        )
        self.sent = 0
        self.seen = 0
        self.ids: set[str] = set()

    def send(self, user: str, event: str, hours_ago: float = 0, **props: Any) -> None:
        self.message(
            {"type": "track", "event": event, "userId": user, "properties": props}, hours_ago
        )

    def group(self, user: str, group_id: str, **traits: Any) -> None:
        self.message({"type": "group", "userId": user, "groupId": group_id, "traits": traits})

    def message(self, fields: dict[str, Any], hours_ago: float = 0) -> None:
        self.sent += 1
        at = format_timestamp(datetime.fromtimestamp(self.clock.now - hours_ago * HOUR, UTC))
        received = format_timestamp(datetime.fromtimestamp(self.clock.now, UTC))
        message = {
            **fields,
            "messageId": f"m-{self.sent}",
            "timestamp": at,
            "receivedAt": received,
            "context": {},
        }
        self.log.append([encode_record(self.workspace_id, self.web, received, [message])])
        self.run()

    def run(self) -> None:
        """The stage until it is idle (its idle work applies staged batch results)."""
        for _ in range(100):
            if self.consumer.run_once() == 0:
                return
        raise AssertionError("the stage did not catch up")

    def load(self) -> None:
        """A minute later, a Profiles Sync load (what a new definition waits for)."""
        self.clock.advance(60)
        self.sync()

    def requested(self) -> bool:
        """Whether a warehouse sync was asked for and has not started."""
        runs = schema.warehouse_syncs
        with self.engine.connect() as conn:
            return bool(
                conn.execute(sa.select(runs.c.id).where(runs.c.status == "requested")).first()
            )

    def sync(self) -> None:
        runner = WarehouseSync(self.warehouses, self.archive, self.tmp, clock=self.clock)
        result = runner.run(self.warehouses.require(self.warehouse_id))
        assert result.status == SUCCESS, result

    def messages(self) -> list[dict[str, Any]]:
        box = schema.engage_outbox
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(box.c.seq, box.c.body).where(box.c.seq > self.seen).order_by(box.c.seq)
            ).all()
        if rows:
            self.seen = rows[-1].seq
        found = [msgspec.json.decode(r.body) for r in rows]
        for message in found:  # the dedup stage would drop a repeated one
            assert message["messageId"] not in self.ids, message
            self.ids.add(message["messageId"])
        return found

    def entered(self) -> list[tuple[str, str, bool]]:
        """(event, userId, value) of the queued tracks."""
        return sorted(
            (m["event"], m["userId"], m["properties"][m["properties"]["audience_key"]])
            for m in self.messages()
            if m["type"] == "track"
        )

    def audience(self, user: str, key: str) -> Any:
        profile = SqlGraph(self.engine, self.space.id).find("users", "user_id", user)
        assert profile is not None
        traits = ProfileData(self.engine, self.space.id).traits(profile, trait_class="audience")
        return traits[key].value if key in traits else None

    def status(self, key: str) -> tuple[str, str | None]:
        found = self.computations.get("main", key)
        return found.status, found.status_detail


@pytest.fixture
def pipeline(engine: Engine, tmp_path: Path, clock: Clock) -> Pipeline:
    return Pipeline(engine, tmp_path, clock, profiles_sync=True)


def test_a38_a_batch_audience_sends_every_member_first_then_only_changes(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    p.send("u1", "Cart Viewed", hours_ago=50)  # abandoned
    p.send("u2", "Cart Viewed", hours_ago=50)
    p.send("u2", "Order Completed", hours_ago=49)  # ordered within a day
    p.send("u3", "Cart Viewed", hours_ago=30)  # abandoned
    made = p.computations.create(
        "main",
        "audience",
        "Abandoned Cart",
        ABANDONED,
        destinations=[{"name": "engage-hook", "send_track": True}],
    )
    assert (made.mode, made.status) == ("batch", "Preparing")
    assert p.runs.run_due() == 0  # it waits for a load that began after its creation
    assert p.requested() and p.status("abandoned_cart")[0] == "Preparing"
    p.load()
    assert p.runs.run_due() == 1
    assert p.status("abandoned_cart") == ("Live", None)
    p.run()  # the stage applies what the run staged
    assert p.entered() == [
        ("Audience Entered", "u1", True),
        ("Audience Entered", "u3", True),
    ]
    assert (p.audience("u1", "abandoned_cart"), p.audience("u2", "abandoned_cart")) == (True, None)
    assert p.runs.run_due() == 0  # not due again for 8 hours
    p.send("u3", "Order Completed", hours_ago=29)  # u3 did order within the day after all
    p.send("u4", "Cart Viewed", hours_ago=2)
    p.clock.advance(8 * HOUR)
    p.sync()
    assert p.runs.run_due() == 1
    p.run()
    assert p.entered() == [
        ("Audience Entered", "u4", True),
        ("Audience Exited", "u3", False),
    ]
    p.clock.advance(8 * HOUR)
    assert p.runs.run_due() == 1  # the safety net: nothing changed, nothing sent
    p.run()
    assert p.entered() == []


def test_an_account_audience_sends_a_group_per_account_and_an_identify_per_user(
    pipeline: Pipeline,
) -> None:
    """§13.10, A-UE-44 through the pipeline: an account with a user who logged in is a member
    (ANY); the account's profile holds it, the Group call names the account, and every user
    of the account gets an Identify — even the one who never logged in."""
    p = pipeline
    p.group("u1", "acme", industry="Software")
    p.group("u2", "acme")
    p.group("u3", "solo")
    p.send("u1", "Logged In", hours_ago=5)
    p.computations.create(
        "main",
        "audience",
        "Active Accounts",
        "ANY event('Logged In').within(30 days).count() >= 1",
        level="accounts",
        destinations=[{"name": "engage-hook", "send_identify": True}],
    )
    p.load()
    assert p.runs.run_due() == 1
    p.run()
    messages = p.messages()
    groups = [(m["groupId"], m["userId"], m["traits"]) for m in messages if m["type"] == "group"]
    assert groups == [("acme", "u1", {"active_accounts": True})]
    identifies = sorted((m["userId"], m["traits"]) for m in messages if m["type"] == "identify")
    assert identifies == [("u1", {"active_accounts": True}), ("u2", {"active_accounts": True})]
    account = SqlGraph(p.engine, p.space.id).find("accounts", "group_id", "acme")
    assert account is not None
    held = ProfileData(p.engine, p.space.id).traits(account, trait_class="audience")
    assert held["active_accounts"].value is True


def test_an_edit_of_the_definition_runs_it_again_at_once(pipeline: Pipeline) -> None:
    p = pipeline
    p.send("u1", "Cart Viewed", hours_ago=50)
    made = p.computations.create("main", "audience", "Abandoned Cart", ABANDONED)
    p.load()
    assert p.runs.run_due() == 1
    p.run()
    assert p.audience("u1", "abandoned_cart") is True
    p.computations.update("main", made.id, definition=ABANDONED.replace(">= 1", ">= 2"))
    assert p.runs.run_due() == 0
    p.load()
    assert p.runs.run_due() == 1
    p.run()
    assert p.audience("u1", "abandoned_cart") is False


def test_a_realtime_audience_with_history_is_seeded_from_the_warehouse(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    p.send("u1", "Order Completed", hours_ago=24)
    p.send("u2", "Order Completed", hours_ago=24)
    made = p.computations.create(
        "main",
        "audience",
        "Two Orders",
        "event('Order Completed').within(30 days).count() >= 2",
        destinations=[{"name": "engage-hook", "send_track": True}],
    )
    assert (made.mode, made.status) == ("realtime", "Preparing")
    p.run()  # the engine plans it: its vector counts events received from now on
    p.clock.advance(1)
    p.send("u1", "Order Completed")  # real time alone: one order, not a member
    assert p.entered() == []
    assert p.runs.run_due() == 0  # the warehouse has not loaded what came before it
    assert p.status("two_orders")[0] == "Preparing"
    p.clock.advance(120)
    p.sync()
    p.runs.run_due()
    assert p.status("two_orders")[0] == "Live"
    p.run()
    assert p.entered() == [("Audience Entered", "u1", True)]  # history + real time, once each
    p.send("u2", "Order Completed")
    assert p.entered() == [("Audience Entered", "u2", True)]


def test_a_destination_connected_later_gets_every_current_member(pipeline: Pipeline) -> None:
    p = pipeline
    p.send("u1", "Cart Viewed", hours_ago=50)
    made = p.computations.create("main", "audience", "Abandoned Cart", ABANDONED)
    p.load()
    p.runs.run_due()
    p.run()
    assert p.entered() == []  # no destination yet
    p.computations.update(
        "main", made.id, destinations=[{"name": "engage-hook", "send_track": True}]
    )
    p.clock.advance(1)
    p.runs.run_due()
    p.run()
    assert p.entered() == [("Audience Entered", "u1", True)]
    p.runs.run_due()
    p.run()
    assert p.entered() == []  # once


def test_preview_counts_the_matches_now_and_stores_nothing(pipeline: Pipeline) -> None:
    p = pipeline
    for user in ("u1", "u2", "u3"):
        p.send(user, "Cart Viewed", hours_ago=50)
    p.clock.advance(60)
    p.sync()
    found = p.runs.preview(
        "main", parse(ABANDONED, kind="users", purpose="audience"), include_anonymous=False
    )
    assert found.size == 3
    assert len(found.sample) == 3 and {v for _, v in found.sample} == {True}
    assert p.computations.list("main") == []


def test_without_profiles_sync_a_batch_audience_is_not_computing_and_says_why(
    engine: Engine, tmp_path: Path, clock: Clock
) -> None:
    p = Pipeline(engine, tmp_path, clock, profiles_sync=False)
    p.computations.create("main", "audience", "Abandoned Cart", ABANDONED)
    p.runs.run_due()
    status, detail = p.status("abandoned_cart")
    assert status == "Not Computing"
    assert detail is not None and "turn Profiles Sync on" in detail
    with pytest.raises(InvalidError, match="Profiles Sync"):
        p.runs.preview(
            "main", parse(ABANDONED, kind="users", purpose="audience"), include_anonymous=False
        )


def test_the_preview_route_answers_size_and_sample_and_refuses_a_bad_definition(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    p.send("u1", "Cart Viewed", hours_ago=50)
    p.send("u2", "Cart Viewed", hours_ago=50)
    p.clock.advance(60)
    p.sync()
    app = create_api(p.engine, admin_token_hash=hash_token("token-for-tests"))
    use_batch_runs(app, p.runs)
    with TestClient(app, headers={"Authorization": "Bearer token-for-tests"}) as http:
        found = http.post(
            "/api/v1/spaces/main/audiences/preview", json={"definition": {"query": ABANDONED}}
        )
        assert found.status_code == 200, found.text
        data = found.json()["data"]
        assert data["size"] == 2 and {s["value"] for s in data["sample"]} == {True}
        assert data["asOf"] is not None
        bad = http.post(
            "/api/v1/spaces/main/computed-traits/preview",
            json={"definition": {"query": "event('x').within(9 years).count()"}},
        )
        assert bad.status_code == 422, bad.text
        assert "within" in bad.text


def test_a_run_that_cannot_read_the_warehouse_is_retried_five_times_then_failed(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    p.send("u1", "Cart Viewed", hours_ago=50)
    p.computations.create("main", "audience", "Abandoned Cart", ABANDONED)
    p.load()
    (p.tmp / "w.db").write_bytes(b"not a DuckDB file" * 100)  # the warehouse breaks
    assert p.runs.run_due() == 1
    status, detail = p.status("abandoned_cart")
    assert status == "Computing" and detail is not None and "could not be read" in detail
    assert p.runs.run_due() == 0  # not before 5 minutes
    for _ in range(4):
        p.clock.advance(300)
        assert p.runs.run_due() == 1
    assert p.status("abandoned_cart")[0] == "Failed"
    p.clock.advance(300)
    assert p.runs.run_due() == 0  # a failed one waits for the next 8-hour slot


def test_a_journey_entered_by_a_batch_audience_moves_when_the_run_is_applied(
    pipeline: Pipeline,
) -> None:
    p = pipeline
    p.send("u1", "Cart Viewed", hours_ago=50)
    p.computations.create("main", "audience", "Abandoned Cart", ABANDONED)
    p.journeys.create(
        "main",
        "Win Back",
        {
            "entry": {"audience": "abandoned_cart"},
            "steps": [{"name": "Nudge", "send": {"destinations": [{"name": "engage-hook"}]}}],
        },
        publish=True,
    )
    p.run()
    p.load()
    assert p.runs.run_due() == 1
    p.run()
    sent = [m for m in p.messages() if m["type"] == "identify"]
    assert len(sent) == 1 and sent[0]["userId"] == "u1"
    key = sent[0]["context"]["personas"]["computation_key"]
    assert key.startswith("j_o_win_back__nudge") and sent[0]["traits"] == {key: True}
