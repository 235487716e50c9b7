"""Real-time Engage in identity resolution's pass (``engage/stage.py``), on SQLite and
PostgreSQL: the values written to profiles, the messages queued for destinations (§14.2,
§14.3: A-UE-35, A-UE-37, A-UE-39, A-UE-40, A-UE-41), merges, expiry by time, and a pass that fails leaving nothing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.destinations.store import DestinationStore
from headwater.engage.activation import Connection
from headwater.engage.definition import Compare, Definition, Literal, Reduce, Stream, Window
from headwater.engage.realtime import Computation
from headwater.engage.stage import EngageStage
from headwater.ingest.normalize import Discard, RequestInfo, normalize
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
DAY = 86_400.0

ORDERS_30 = Computation(
    "aud_orders",
    "order_completed_last_30days",
    "audience",
    Definition(
        "users",
        Compare(
            Reduce(Stream("Order Completed", window=Window(0, 720)), "count"),
            "at_least",
            (Literal(1),),
        ),
    ),
)
TWO_ORDERS = Computation(
    "aud_two",
    "two_orders",
    "audience",
    Definition(
        "users",
        Compare(Reduce(Stream("Order Completed"), "count"), "at_least", (Literal(2),)),
    ),
)
VIEWERS = Computation(
    "aud_viewers",
    "viewers",
    "audience",
    Definition("users", Compare(Reduce(Stream("Viewed"), "count"), "at_least", (Literal(1),))),
    include_anonymous=True,
)
REVENUE = Computation(
    "tra_revenue",
    "total_revenue_180_days",
    "trait",
    Definition(
        "users",
        Reduce(
            Stream("Order Completed", window=Window(0, 180 * 24)),
            "sum",
            __import__("headwater.engage.definition", fromlist=["PropertyRef"]).PropertyRef(
                "revenue"
            ),
        ),
    ),
)
HOOK = Connection("engage-hook", send_identify=True, send_track=True)


class Engage:
    """A space `main` over source `web`, the unify group with Engage observing it."""

    def __init__(self, engine: Engine, tmp_path: Path, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock
        clock.now = NOW
        workspace = WorkspaceStore(engine, clock)
        self.workspace_id = workspace.ensure_workspace("acme").id
        self.web = workspace.create_source("web").id
        self.space = SpaceStore(workspace).create("main", sources=["web"])
        self.log = EventLog(engine, clock=clock)
        self.log.register(GROUP)
        self.archive = Archive(tmp_path / "archive")
        self.computations: list[Computation] = [ORDERS_30, TWO_ORDERS, VIEWERS, REVENUE]
        self.connected: dict[str, list[Connection]] = {c.id: [HOOK] for c in self.computations}
        self.engage = EngageStage(
            engine,
            lambda space_id: self.computations,
            lambda computation_id: self.connected.get(computation_id, []),
            clock=clock,
        )
        stage = IdentityStage(engine, self.archive, clock=clock, observers=[self.engage])
        self.consumer = Consumer(
            self.log, GROUP, stage, owner="w1", exclusive=True, idle=stage.replay
        )
        self.sent = 0
        self.seen = 0  # outbox rows already read

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

    def run(self) -> None:
        for _ in range(100):
            if self.consumer.run_once() == 0:
                return
        raise AssertionError("the stage did not catch up")

    def messages(self) -> list[dict[str, Any]]:
        """The outbox's messages queued since the last call."""
        box = schema.engage_outbox
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(box.c.seq, box.c.body).where(box.c.seq > self.seen).order_by(box.c.seq)
            ).all()
        if rows:
            self.seen = rows[-1].seq
        found = [msgspec.json.decode(r.body) for r in rows]
        at = datetime.fromtimestamp(self.clock.now, UTC)
        request = RequestInfo(received_at=at, received_at_iso=format_timestamp(at), client_ip=None)
        for message in found:  # every one is a message the Tracking API would take
            kept = normalize(dict(message), request, route_type=None)
            assert not isinstance(kept, Discard), (message, kept)
        return found

    def profile(self, user_id: str) -> str:
        found = SqlGraph(self.engine, self.space.id).find("users", "user_id", user_id)
        assert found is not None
        return found

    def traits(self, profile_id: str, trait_class: str) -> dict[str, Any]:
        data = ProfileData(self.engine, self.space.id)
        return {k: t.value for k, t in data.traits(profile_id, trait_class=trait_class).items()}


@pytest.fixture
def engage(engine: Engine, tmp_path: Path, clock: Clock) -> Engage:
    return Engage(engine, tmp_path, clock)


def _summary(messages: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    out = []
    for m in messages:
        what = m.get("event") or m["type"]
        body = m.get("traits") if m["type"] == "identify" else m.get("properties")
        email = (m.get("traits") or m["context"].get("traits") or {}).get("email")
        out.append((what, m.get("userId"), m.get("anonymousId"), email, body))
    return out


def test_a37_a_member_enters_with_an_identify_and_a_track_and_the_profile_says_so(
    engage: Engage,
) -> None:
    e = engage
    e.send("identify", userId="u1", traits={"plan": "pro"})
    assert e.messages() == []
    e.send(event="Order Completed", userId="u1", properties={"revenue": 450.0})
    messages = [
        m
        for m in e.messages()
        if m["context"]["personas"]["computation_key"] != "total_revenue_180_days"
    ]
    assert _summary(messages) == [
        ("identify", "u1", None, None, {"order_completed_last_30days": True}),
        (
            "Audience Entered",
            "u1",
            None,
            None,
            {"audience_key": "order_completed_last_30days", "order_completed_last_30days": True},
        ),
    ]
    identify = messages[0]
    assert identify["context"]["personas"] == {
        "computation_class": "audience",
        "computation_id": "aud_orders",
        "computation_key": "order_completed_last_30days",
        "namespace": e.space.id,
        "space_id": e.space.id,
    }
    assert identify["integrations"] == {"All": False, "engage-hook": True}
    assert identify["messageId"].startswith("personas_") and len(identify["messageId"]) == 30
    profile = e.profile("u1")
    assert e.traits(profile, "audience") == {"order_completed_last_30days": True}
    assert e.traits(profile, "computed_trait") == {"total_revenue_180_days": 450}
    assert e.traits(profile, "custom") == {"plan": "pro"}


def test_a35_a_computed_trait_goes_out_as_trait_computed_only_when_it_changes(
    engage: Engage,
) -> None:
    e = engage
    e.computations = [REVENUE]
    e.send(event="Order Completed", userId="u1", properties={"revenue": 400})
    e.messages()
    e.send(event="Order Completed", userId="u1", properties={"revenue": 50})
    track = [m for m in e.messages() if m["type"] == "track"]
    assert [(m["event"], m["properties"]) for m in track] == [
        ("Trait Computed", {"trait_key": "total_revenue_180_days", "total_revenue_180_days": 450})
    ]
    assert track[0]["context"]["personas"]["computation_class"] == "trait"
    e.send(event="Order Completed", userId="u1", properties={"revenue": "n/a"})
    assert e.messages() == []  # no number, no change, nothing sent


def test_a39_one_message_per_email_with_the_email_where_segment_puts_it(engage: Engage) -> None:
    e = engage
    e.computations = [ORDERS_30]
    e.send("identify", userId="u1", traits={"email": "a@x.com"})
    e.send("identify", userId="u1", traits={"email": "b@x.com"})
    e.send(event="Order Completed", userId="u1")
    summary = _summary(e.messages())
    key = "order_completed_last_30days"
    assert summary == [
        ("identify", "u1", None, "a@x.com", {key: True, "email": "a@x.com"}),
        ("Audience Entered", "u1", None, "a@x.com", {"audience_key": key, key: True}),
        ("identify", "u1", None, "b@x.com", {key: True, "email": "b@x.com"}),
        ("Audience Entered", "u1", None, "b@x.com", {"audience_key": key, key: True}),
    ]


def test_a40_anonymous_profiles_join_only_audiences_that_include_them(engage: Engage) -> None:
    e = engage
    e.computations = [ORDERS_30, VIEWERS]
    e.send(event="Order Completed", anonymousId="a1")
    e.send(event="Viewed", anonymousId="a1")
    summary = _summary(e.messages())
    assert [s[0] for s in summary] == ["identify", "Audience Entered"]
    assert summary[0][1:] == (None, "a1", None, {"viewers": True})


def test_a41_a_new_email_gets_the_current_values_again_and_can_make_a_member(
    engage: Engage,
) -> None:
    e = engage
    e.computations = [ORDERS_30, VIEWERS]
    e.send(event="Viewed", anonymousId="a1")
    e.send(event="Order Completed", anonymousId="a1")
    assert [s[0] for s in _summary(e.messages())] == ["identify", "Audience Entered"]
    # The anonymous visitor signs up: the email makes them eligible for ORDERS_30 (they
    # enter now), and VIEWERS, unchanged, is sent again keyed by the new email.
    e.send("identify", anonymousId="a1", traits={"email": "new@x.com"})
    summary = sorted(_summary(e.messages()), key=repr)
    key = "order_completed_last_30days"
    assert summary == sorted(
        [
            ("identify", None, "a1", "new@x.com", {key: True, "email": "new@x.com"}),
            ("Audience Entered", None, "a1", "new@x.com", {"audience_key": key, key: True}),
            ("identify", None, "a1", "new@x.com", {"viewers": True, "email": "new@x.com"}),
            (
                "Audience Entered",
                None,
                "a1",
                "new@x.com",
                {"audience_key": "viewers", "viewers": True},
            ),
        ],
        key=repr,
    )


def test_a37_a_member_leaves_when_the_order_ages_out_with_no_new_event(engage: Engage) -> None:
    e = engage
    e.computations = [ORDERS_30]
    e.send(event="Order Completed", userId="u1")
    e.messages()
    e.clock.advance(29 * DAY)
    e.run()
    assert e.messages() == []
    e.clock.advance(DAY)
    e.run()  # the stage's idle work: the profile is due
    key = "order_completed_last_30days"
    assert _summary(e.messages()) == [
        ("identify", "u1", None, None, {key: False}),
        ("Audience Exited", "u1", None, None, {"audience_key": key, key: False}),
    ]
    assert e.traits(e.profile("u1"), "audience") == {key: False}


def test_a_merge_folds_the_two_profiles_and_may_make_a_member(engage: Engage) -> None:
    e = engage
    e.computations = [TWO_ORDERS]
    e.send(event="Order Completed", anonymousId="a1", userId="u1")
    e.send(event="Order Completed", anonymousId="a2", context={"traits": {"email": "z@x.com"}})
    assert e.messages() == []
    e.send("identify", userId="u1", traits={"email": "z@x.com"})  # merges the two
    summary = _summary(e.messages())
    assert ("identify", "u1", None, "z@x.com", {"two_orders": True, "email": "z@x.com"}) in summary
    with e.engine.connect() as conn:
        states = conn.execute(sa.select(sa.func.count()).select_from(schema.engage_profiles))
        assert states.scalar_one() == 1  # the merged-away profile's state is gone


def test_engage_messages_resolved_from_the_engage_source_compute_nothing(engage: Engage) -> None:
    e = engage
    e.computations = [ORDERS_30]
    engage_source = SpaceStore(WorkspaceStore(e.engine)).engage_source(e.space.id)
    stamp = format_timestamp(datetime.fromtimestamp(e.clock.now, UTC))
    event = {
        "type": "track",
        "event": "Order Completed",
        "userId": "u1",
        "messageId": "personas_x",
        "timestamp": stamp,
        "receivedAt": stamp,
        "context": {"personas": {"computation_class": "audience"}},
    }
    e.log.append([encode_record(e.workspace_id, engage_source.id, stamp, [event])])
    e.run()
    assert e.messages() == []
    assert e.profile("u1")  # resolved into the space all the same


def test_a_pass_that_fails_leaves_no_state_and_no_messages(
    engage: Engage, monkeypatch: pytest.MonkeyPatch
) -> None:
    e = engage
    e.computations = [ORDERS_30]
    original = ProfileData.set_computed

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("power cut")

    monkeypatch.setattr(ProfileData, "set_computed", failing)
    with pytest.raises(RuntimeError):
        e.send(event="Order Completed", userId="u1")
    with e.engine.connect() as conn:
        for table in (schema.engage_profiles, schema.engage_outbox):
            assert conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one() == 0
    monkeypatch.setattr(ProfileData, "set_computed", original)
    e.run()
    assert [m["type"] for m in e.messages()] == ["identify", "track"]


def test_a_list_audience_stored_a_moment_ago_is_read_from_the_database(
    engage: Engage,
) -> None:
    """The engine's copy of a list connection has no audience id yet (the worker stored it a
    moment ago): a member entering now is sent with the id the database holds, not missed."""
    e = engage
    workspace = WorkspaceStore(e.engine, e.clock)
    made = DestinationStore(workspace).create(
        "iterable", "webhook", "main-engage", settings={"url": "https://example.com/l"}
    )
    with e.engine.begin() as conn:
        conn.execute(
            schema.engage_connections.insert().values(
                computation_id=ORDERS_30.id,
                destination_id=made.id,
                settings={},
                created_at=int(e.clock.now),
                external_audience_id="4242",
            )
        )
    stale = Connection("iterable", send_track=True, send_identify=False, list_audience=True)
    e.connected = {ORDERS_30.id: [stale]}
    e.send(event="Order Completed", userId="u1")
    [entered] = e.messages()
    assert entered["event"] == "Audience Entered"
    assert entered["context"]["personas"]["external_audience_id"] == "4242"
