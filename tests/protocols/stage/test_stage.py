"""The Protocols stage in the stage chain, on SQLite and PostgreSQL, with real compiled plans:
enforcement (A-TP-1…10, 12), schema controls, blocked events, violations and their
forwarding (A-VF-1, 3, 4, 5, 6), a pass that dies, and monthly tracked users."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater import reasons
from headwater.pipeline.observer import Observer
from headwater.protocols.blocked import BlockedEvents
from headwater.protocols.compiled import Rule, compile_plan
from headwater.protocols.connected import SchemaControls, SourceProtocols
from headwater.protocols.enforce import SchemaSettings
from headwater.protocols.forwarding import violation_message_id
from headwater.protocols.mtu import MtuStore, load
from headwater.protocols.violations import UnknownWindow, ViolationStore
from headwater.store import counters, schema
from headwater.store.counters import CounterStore
from headwater.store.log import EventLog
from headwater.store.record import LogRecord
from tests.protocols.stage.harness import GROUP, Harness, build, track_rule, traits_rule
from tests.support.clock import Clock

DAY = 24 * 3600.0
SUB = track_rule(
    "Subscription Cancelled", {"subscription_id": {"type": "string"}}, ("subscription_id",)
)
ORDER = track_rule("Order Completed", {"products": {"type": "array"}}, ("products",))


@pytest.fixture
def harness(engine: Engine, tmp_path: Path, clock: Clock) -> Iterator[Harness]:
    built = build(engine, tmp_path, clock)
    yield built
    built.chain.stop()
    built.ingest.close()


def source(
    source_id: str = "src_s",
    rules: list[Rule] | None = None,
    settings: dict[str, Any] | None = None,
    controls: SchemaControls | None = None,
) -> SourceProtocols:
    plan = compile_plan(rules) if rules is not None else None
    return SourceProtocols(
        source_id=source_id,
        source_name="Acme Store",
        source_slug="acme_store_test",
        plan_id="tp_1" if plan is not None else None,
        plan_name="Acme Ecommerce TP" if plan is not None else None,
        plan=plan,
        settings=SchemaSettings.from_segment(settings or {}),
        controls=controls or SchemaControls(),
    )


def track(event: str, properties: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"type": "track", "event": event, "properties": properties or {}, **extra}


def month(clock: Clock) -> str:
    return datetime.fromtimestamp(clock(), UTC).strftime("%Y-%m")


# --- enforcement through the chain ----------------------------------------------------------


def test_a_tp_1_unplanned_event_blocked_kept_forwarded_and_not_an_mtu(
    harness: Harness, engine: Engine, clock: Clock
) -> None:
    settings = {"track": {"allowUnplannedEvents": False}, "forwardingBlockedEventsTo": "src_q"}
    harness.connect(source(rules=[SUB], settings=settings))
    harness.send(
        "src_s",
        track("subscription_cancelled", userId="blocked-user"),
        track("Subscription Cancelled", {"subscription_id": "s1"}, userId="kept-user"),
    )
    harness.drain()

    assert [e["event"] for e in harness.events("src_s")] == ["Subscription Cancelled"]
    assert harness.filtered("src_s") == {reasons.PROTOCOLS_UNPLANNED_EVENT: 1}
    [kept] = BlockedEvents(engine, clock=clock).recent("src_s")
    assert kept["reason"] == reasons.PROTOCOLS_UNPLANNED_EVENT
    assert kept["message"]["event"] == "subscription_cancelled"
    # Forwarded as it arrived, into the quarantine source, where it is an MTU.
    [forwarded] = harness.events("src_q")
    assert forwarded["event"] == "subscription_cancelled"
    assert forwarded["messageId"] == kept["message"]["messageId"]
    assert "protocols" not in forwarded.get("context", {})
    mtu = MtuStore(engine)
    assert mtu.count("src_s", month(clock))["mtu"] == 1  # kept-user only
    assert mtu.count("src_q", month(clock))["mtu"] == 1
    # The source's debugger shows it, marked blocked with the reason (§6.2).
    t = schema.debugger_entries
    with engine.connect() as conn:
        shown = conn.execute(
            sa.select(t.c.status, t.c.reason, t.c.entry).where(t.c.source_id == "src_s")
        ).all()
    assert [(row.status, row.reason, row.entry["message"]["event"]) for row in shown] == [
        ("blocked", reasons.PROTOCOLS_UNPLANNED_EVENT, "subscription_cancelled")
    ]


def test_a_tp_2_unplanned_properties_omitted_and_not_forwarded_as_blocked(
    harness: Harness,
) -> None:
    settings = {
        "track": {"allowUnplannedEventProperties": False},
        "forwardingBlockedEventsTo": "src_q",
    }
    harness.connect(source(rules=[SUB], settings=settings))
    harness.send(
        "src_s",
        track(
            "Subscription Cancelled",
            {"subscription_id": "23r90jfs9ej", "subscription_name": "premium"},
        ),
    )
    harness.drain()
    [delivered] = harness.events("src_s")
    assert delivered["properties"] == {"subscription_id": "23r90jfs9ej"}
    assert delivered["context"]["protocols"]["omitted"] == ["subscription_name"]
    assert harness.events("src_q") == []
    assert harness.filtered("src_s") == {}


def test_a_tp_3_unplanned_traits_omitted(harness: Harness) -> None:
    rules = [traits_rule("IDENTIFY", {"name": {}, "email": {}, "join_date": {}})]
    harness.connect(source(rules=rules, settings={"identify": {"allowUnplannedTraits": False}}))
    harness.send(
        "src_s",
        {
            "type": "identify",
            "userId": "fe923fjid",
            "traits": {"email": "roger@example.com", "first_name": "Roger"},
        },
    )
    harness.drain()
    [delivered] = harness.events("src_s")
    assert delivered["traits"] == {"email": "roger@example.com"}
    assert delivered["context"]["protocols"]["omitted"] == ["first_name"]


@pytest.mark.parametrize("allow", [True, False])
def test_a_tp_4_required_violation_recorded_and_blocked_when_set(
    harness: Harness, engine: Engine, clock: Clock, allow: bool
) -> None:
    harness.connect(source(rules=[SUB], settings={"track": {"allowEventOnViolations": allow}}))
    harness.send("src_s", track("Subscription Cancelled", {"customer_type": "enterprise"}))
    harness.drain()
    violation = {
        "type": "Required",
        "field": "properties.subscription_id",
        "description": "properties.subscription_id is required",
    }
    if allow:
        [delivered] = harness.events("src_s")
        assert delivered["context"]["protocols"]["violations"] == [violation]
    else:
        assert harness.events("src_s") == []
        assert harness.filtered("src_s") == {reasons.PROTOCOLS_VIOLATIONS: 1}
    [found] = ViolationStore(engine, clock=clock).summary("src_s", "1h")
    assert (found["field"], found["violationType"], found["count"]) == (
        violation["field"],
        violation["type"],
        1,
    )


def test_a_tp_5_offending_properties_omitted_on_violation(harness: Harness) -> None:
    rule = track_rule("Typed", {"integer": {"type": "integer"}, "string": {"type": "string"}})
    harness.connect(
        source(rules=[rule], settings={"track": {"allowPropertiesOnViolations": False}})
    )
    harness.send("src_s", track("Typed", {"integer": 1.5, "string": 7, "other": True}))
    harness.drain()
    [delivered] = harness.events("src_s")
    assert delivered["properties"] == {"other": True}
    protocols = delivered["context"]["protocols"]
    assert protocols["omitted_on_violation"] == ["integer", "string"]
    assert [v["description"] for v in protocols["violations"]] == [
        "Invalid type. Expected: integer, given: number",
        "Invalid type. Expected: string, given: integer",
    ]


def test_a_tp_6_debug_format_violations(harness: Harness) -> None:
    rule = track_rule(
        "Debug", {"Required": {"type": "string"}, "Optional": {"type": "string"}}, ("Required",)
    )
    harness.connect(source(rules=[rule]))
    harness.send("src_s", track("Debug", {"Optional": []}))
    harness.drain()
    [delivered] = harness.events("src_s")
    shown = [
        f"{v['field']}: {v['description']}" for v in delivered["context"]["protocols"]["violations"]
    ]
    assert sorted(shown) == [
        "properties.Optional: Invalid type. Expected: string, given: array",
        "properties.Required: properties.Required is required",
    ]


@pytest.mark.parametrize(("season", "violations"), [("summer", 1), ("winter", 0)])
def test_a_tp_7_permitted_values(harness: Harness, season: str, violations: int) -> None:
    rule = track_rule("Season", {"season": {"type": "string", "pattern": "^(fall|winter|spring)$"}})
    harness.connect(source(rules=[rule]))
    harness.send("src_s", track("Season", {"season": season}))
    harness.drain()
    [delivered] = harness.events("src_s")
    found = delivered.get("context", {}).get("protocols", {}).get("violations", [])
    assert len(found) == violations
    if violations:
        assert found[0]["field"] == "properties.season"


@pytest.mark.parametrize(
    ("version", "violated"), [(2, True), (None, False), (3.2, False), (3, False)]
)
def test_a_tp_8_event_versions(harness: Harness, version: Any, violated: bool) -> None:
    v1 = track_rule("Order Completed", {}, version=1)
    v2 = track_rule("Order Completed", {"subtotal": {"type": "number"}}, ("subtotal",), version=2)
    harness.connect(source(rules=[v1, v2]))
    context = {} if version is None else {"protocols": {"event_version": version}}
    harness.send("src_s", track("Order Completed", {}, context=context))
    harness.drain()
    [delivered] = harness.events("src_s")
    found = delivered["context"].get("protocols", {}).get("violations", [])
    assert [v["field"] for v in found] == (["properties.subtotal"] if violated else [])


def test_a_tp_9_common_schema_blocks_identify_when_set(harness: Harness) -> None:
    common = Rule(
        "COMMON",
        "",
        {
            "properties": {
                "context": {
                    "type": "object",
                    "properties": {"device": {"type": "object", "required": ["advertisingId"]}},
                    "required": ["device"],
                }
            }
        },
    )
    harness.connect(source(rules=[common]))
    identify = {"type": "identify", "userId": "u9", "context": {"device": {}}}
    harness.send("src_s", identify)
    harness.drain()
    [delivered] = harness.events("src_s")
    [violation] = delivered["context"]["protocols"]["violations"]
    # The engine's form (tests/protocols/test_enforce.py): the required name's full path.
    assert violation["field"] == "context.device.advertisingId"
    assert violation["description"] == "context.device.advertisingId is required"

    harness.connect(
        source(rules=[common], settings={"identify": {"commonEventOnViolations": "BLOCK"}})
    )
    harness.send("src_s", identify)
    harness.drain()
    assert len(harness.events("src_s")) == 1
    assert harness.filtered("src_s") == {reasons.PROTOCOLS_COMMON_SCHEMA: 1}


def test_a_tp_10_common_all_of_at_root(harness: Harness) -> None:
    common = Rule("COMMON", "", {"allOf": [{"required": ["userId"]}, {"required": ["nothere"]}]})
    harness.connect(source(rules=[common]))
    harness.send("src_s", track("Anything"))
    harness.drain()
    [delivered] = harness.events("src_s")
    fields = {
        (v["field"], v["description"]) for v in delivered["context"]["protocols"]["violations"]
    }
    assert ("(root)", "Must validate all the schemas (allOf)") in fields


def test_a_tp_12_page_violations_aggregate_under_its_name(
    harness: Harness, engine: Engine, clock: Clock
) -> None:
    page = Rule(
        "PAGE",
        "",
        {"properties": {"properties": {"type": "object", "required": ["path"]}}},
    )
    harness.connect(source(rules=[page]))
    harness.send("src_s", {"type": "page", "name": "Homepage", "properties": {}})
    harness.drain()
    [found] = ViolationStore(engine, clock=clock).summary("src_s", "24h")
    assert (found["eventType"], found["eventName"], found["field"]) == (
        "page",
        "Homepage",
        "properties.path",
    )


# --- schema controls (no plan) ---------------------------------------------------------------


def test_schema_controls_block_and_omit_without_a_plan(
    harness: Harness, engine: Engine, clock: Clock
) -> None:
    controls = SchemaControls(
        blocked_track=frozenset({"Foo"}),
        block_page=True,
        omitted_identify_traits=frozenset({"ssn"}),
    )
    # Forwarding is a Protocols setting: without a plan it is ignored (§4.1).
    harness.connect(source(controls=controls, settings={"forwardingBlockedEventsTo": "src_q"}))
    harness.send(
        "src_s",
        track("Foo", userId="foo-user"),
        track("Bar"),
        {"type": "page", "name": "Home", "userId": "page-user"},
        {"type": "screen", "name": "Home"},
        {"type": "identify", "traits": {"ssn": "1", "email": "a@b"}},
    )
    harness.drain()
    delivered = harness.events("src_s")
    assert [e["type"] for e in delivered] == ["track", "screen", "identify"]
    assert delivered[0]["event"] == "Bar"
    assert delivered[2]["traits"] == {"email": "a@b"}
    assert harness.filtered("src_s") == {reasons.SCHEMA_BLOCKED_EVENT: 2}
    assert harness.events("src_q") == []
    assert len(BlockedEvents(engine, clock=clock).recent("src_s")) == 2
    assert MtuStore(engine).count("src_s", month(clock))["userIds"] == 1  # A-SC-1: u1 only


def test_schema_controls_do_not_apply_once_a_plan_is_connected(harness: Harness) -> None:
    harness.connect(source(rules=[SUB], controls=SchemaControls(blocked_track=frozenset({"Foo"}))))
    harness.send("src_s", track("Foo"))
    harness.drain()
    assert [e["event"] for e in harness.events("src_s")] == ["Foo"]


def test_a_source_absent_from_the_lookup_passes_byte_for_byte(harness: Harness) -> None:
    harness.connect(
        source("src_other", rules=[SUB], settings={"track": {"allowUnplannedEvents": False}})
    )
    harness.send("src_s", track("Unplanned"))
    [(_, original)] = [
        row for p in harness.ingest.partitions for row in harness.ingest.read(p, 0, 10)
    ]
    harness.drain()
    assert harness.payloads() == [original]


def test_the_lookup_is_rebuilt_only_when_the_configuration_changes(harness: Harness) -> None:
    harness.connect(source(rules=[SUB], settings={"track": {"allowUnplannedEvents": False}}))
    for _ in range(3):
        harness.send("src_s", track("Nope"))
        harness.drain()
    assert harness.lookups == 1
    harness.connect(source(rules=[SUB]))  # allows unplanned events now
    harness.send("src_s", track("Nope"))
    harness.drain()
    assert harness.lookups == 2
    assert [e["event"] for e in harness.events("src_s")] == ["Nope"]


# --- violations and their forwarding --------------------------------------------------------


def test_a_vf_1_violation_generated_field_for_field(harness: Harness) -> None:
    harness.connect(source(rules=[ORDER], settings={"forwardingViolationsTo": "src_2"}))
    harness.send(
        "src_s",
        track(
            "Order Completed",
            {},
            messageId="node-YhqA1DK9mgV55INDzOSd542fCFbIkc1o",
            sentAt="2018-08-23T21:35:02.858Z",
            originalTimestamp="2018-08-23T21:35:01.000Z",
            context={"app": {"version": "4.2"}},
        ),
    )
    harness.drain()
    [forwarded] = harness.events("src_2")
    assert forwarded["messageId"] == violation_message_id(
        "src_s", "node-YhqA1DK9mgV55INDzOSd542fCFbIkc1o", 0
    )
    assert forwarded["messageId"].startswith("sch-") and len(forwarded["messageId"]) == 36
    assert forwarded["type"] == "track"
    assert forwarded["event"] == "Violation Generated"
    assert forwarded["userId"] == "schema-violations"
    assert forwarded["forwardedFromProject"] == "src_s"
    assert forwarded["integrations"] == {}
    assert forwarded["context"]["app"] is None
    assert forwarded["context"]["library"] == {"name": "analytics-node", "version": "2.1.0"}
    assert forwarded["properties"] == {
        "appVersion": "4.2",
        "eventMessageID": "node-YhqA1DK9mgV55INDzOSd542fCFbIkc1o",
        "eventName": "Order Completed",
        "eventSentAt": "2018-08-23T21:35:02.858Z",
        "eventTimestamp": "2018-08-23T21:35:01.000Z",
        "eventType": "track",
        "sourceID": "src_s",
        "sourceName": "Acme Store",
        "sourceSlug": "acme_store_test",
        "trackingPlanID": "tp_1",
        "trackingPlanName": "Acme Ecommerce TP",
        "violationDescription": "properties.products is required",
        "violationField": "properties.products",
        "violationType": "Required",
    }


def test_a_vf_1_absent_timestamp_is_go_zero_time_and_omitted_properties_are_forwarded(
    harness: Harness,
) -> None:
    settings = {
        "track": {"allowUnplannedEventProperties": False},
        "forwardingViolationsTo": "src_2",
    }
    harness.connect(source(rules=[ORDER], settings=settings))
    harness.send("src_s", track("Order Completed", {"products": [], "coupon": "X"}))
    harness.drain()
    [forwarded] = harness.events("src_2")
    props = forwarded["properties"]
    assert props["eventTimestamp"] == "0001-01-01T00:00:00Z"
    assert props["eventSentAt"] == "0001-01-01T00:00:00Z"
    assert (props["violationField"], props["violationType"]) == ("properties.coupon", "Omitted")


def test_one_event_per_violation(harness: Harness) -> None:
    rule = track_rule("Two", {}, ("a", "b"))
    harness.connect(source(rules=[rule], settings={"forwardingViolationsTo": "src_2"}))
    harness.send("src_s", track("Two"))
    harness.drain()
    fields = sorted(e["properties"]["violationField"] for e in harness.events("src_2"))
    assert fields == ["properties.a", "properties.b"]
    assert len({e["messageId"] for e in harness.events("src_2")}) == 2


def test_a_vf_3_ten_thousand_forwarded_violations_are_one_mtu(
    harness: Harness, engine: Engine, clock: Clock
) -> None:
    rule = track_rule("Four", {}, ("a", "b", "c", "d"))
    harness.connect(source(rules=[rule], settings={"forwardingViolationsTo": "src_2"}))
    for batch in range(25):
        harness.send("src_s", *(track("Four", userId=f"u{batch}-{i}") for i in range(100)))
    harness.drain()
    assert len(harness.events("src_2")) == 10_000
    # appended as records of at most 500, a Tracking API batch's size
    assert max(len(r["events"]) for r in harness.records("src_2")) == 500
    assert MtuStore(engine).count("src_2", month(clock)) == {
        "sourceId": "src_2",
        "month": month(clock),
        "mtu": 1,
        "userIds": 1,
        "anonymousIds": 0,
    }


def test_a_vf_4_windows_counts_last_seen_and_samples(
    harness: Harness, engine: Engine, clock: Clock
) -> None:
    harness.connect(source(rules=[ORDER]))
    harness.send("src_s", track("Order Completed", {"n": 1}))
    clock.advance(2 * 3600)
    harness.send("src_s", track("Order Completed", {"n": 2}), track("Order Completed", {"n": 3}))
    harness.drain()
    store = ViolationStore(engine, clock=clock)
    [hour] = store.summary("src_s", "1h", samples=5)
    assert hour["count"] == 2
    assert hour["lastSeen"] == datetime.fromtimestamp(clock(), UTC).strftime(
        "%Y-%m-%dT%H:%M:%S.000Z"
    )
    assert sorted(s["properties"]["n"] for s in hour["samples"]) == [2, 3]
    assert store.summary("src_s", "24h")[0]["count"] == 3
    assert store.summary("src_s", "7d", plan_id="tp_1")[0]["count"] == 3
    assert store.summary("src_s", "7d", plan_id="tp_other") == []
    for window in ("2h", "30d", ""):
        with pytest.raises(UnknownWindow):
            store.summary("src_s", window)


def test_a_vf_5_digest_shows_a_violation_on_day_3_not_day_2(engine: Engine, tmp_path: Path) -> None:
    # 2026-03-10 15:00 UTC is 11:00 in New York: day 1 of the example.
    clock = Clock(datetime(2026, 3, 10, 15, tzinfo=UTC).timestamp())
    harness = build(engine, tmp_path, clock)
    try:
        harness.connect(source(rules=[ORDER]))
        harness.send("src_s", track("Order Completed"))
        harness.drain()
        store = ViolationStore(engine, clock=clock)
        assert store.digest("src_s", date(2026, 3, 11)) == []
        [line] = store.digest("src_s", date(2026, 3, 12))
        assert (line["eventName"], line["field"], line["violationType"], line["count"]) == (
            "Order Completed",
            "properties.products",
            "Required",
            1,
        )
        assert store.digest("src_s", date(2026, 3, 13)) == []
    finally:
        harness.chain.stop()
        harness.ingest.close()


def test_a_vf_6_forwarded_events_are_not_blocked_or_validated_in_the_target(
    harness: Harness,
) -> None:
    strict = {
        "track": {"allowUnplannedEvents": False},
        "forwardingViolationsTo": "src_q",
    }
    harness.connect(
        source(
            rules=[ORDER],
            settings={
                "forwardingViolationsTo": "src_2",
                "forwardingBlockedEventsTo": "src_2",
                "track": {"allowUnplannedEvents": False},
            },
        ),
        # The target's own plan would block both forwarded events and violate them.
        source("src_2", rules=[SUB], settings=strict),
    )
    harness.send("src_s", track("Order Completed"), track("Unplanned Thing"))
    harness.drain()
    forwarded = harness.events("src_2")
    assert sorted(e["event"] for e in forwarded) == ["Unplanned Thing", "Violation Generated"]
    assert all("protocols" not in e["context"] for e in forwarded)
    assert harness.filtered("src_2") == {}
    assert harness.events("src_q") == []


# --- blocked events, a pass that dies -------------------------------------------------------


def test_blocked_events_are_kept_30_days_then_purged(
    harness: Harness, engine: Engine, clock: Clock
) -> None:
    harness.connect(source(rules=[SUB], settings={"track": {"allowUnplannedEvents": False}}))
    harness.send("src_s", track("Gone"))
    harness.drain()
    store = BlockedEvents(engine, clock=clock)
    clock.advance(29 * DAY)
    assert store.purge() == 0
    assert len(store.recent("src_s")) == 1
    clock.advance(1 * DAY + 1)
    assert store.purge() == 1
    assert store.recent("src_s") == []


class DiesOnce:
    """A stage after Protocols whose commit fails once: the pass rolls back after Protocols
    appended its forwarded messages."""

    name = "dies-once"

    def __init__(self) -> None:
        self.died = False

    def acquire(self, partition: int) -> None: ...

    def release(self, partition: int) -> None: ...

    def process(self, partition: int, records: list[LogRecord]) -> None: ...

    def commit_in(self, conn: Connection) -> None:
        if not self.died:
            self.died = True
            raise RuntimeError("crash inside the pass")

    def committed(self) -> None: ...

    def abandoned(self) -> None: ...


def test_a_pass_that_dies_forwards_nothing_twice(
    engine: Engine, tmp_path: Path, clock: Clock
) -> None:
    dies = DiesOnce()
    harness = build(engine, tmp_path, clock, after=[dies])
    try:
        settings = {
            "track": {"allowUnplannedEvents": False},
            "forwardingViolationsTo": "src_2",
            "forwardingBlockedEventsTo": "src_2",
        }
        harness.connect(source(rules=[ORDER], settings=settings))
        harness.send("src_s", track("Order Completed"), track("Unplanned"))
        with pytest.raises(RuntimeError):
            harness.chain.run_once()
        assert dies.died
        harness.drain()
        forwarded = harness.events("src_2")
        assert sorted(e["event"] for e in forwarded) == ["Unplanned", "Violation Generated"]
        # Counted once, kept once, even though the first attempt ran the stage too.
        assert ViolationStore(engine, clock=clock).summary("src_s", "1h")[0]["count"] == 1
        assert len(BlockedEvents(engine, clock=clock).recent("src_s")) == 1
        assert harness.filtered("src_s") == {reasons.PROTOCOLS_UNPLANNED_EVENT: 1}
        # The copies the dead pass appended reached the dedup stage and stopped there.
        assert sum(r["duplicates"] for r in harness.records("src_2")) == 2
    finally:
        harness.chain.stop()
        harness.ingest.close()


# --- monthly tracked users ------------------------------------------------------------------


def test_mtu_counts_users_and_anonymous_ids_never_seen_with_one(
    harness: Harness, engine: Engine, clock: Clock
) -> None:
    harness.send(
        "src_s",
        track("A", userId="alice", anonymousId="anon-a"),
        track("B", userId=None, anonymousId="anon-a"),  # associated with alice: not counted
        track("C", userId=None, anonymousId="anon-b"),
        track("D", userId=None, anonymousId="anon-c"),
        track("E", userId="bob"),
        track("F", userId="bob"),
    )
    harness.drain()
    store = MtuStore(engine)
    assert store.count("src_s", month(clock))["mtu"] == 4  # alice, bob, anon-b, anon-c
    # anon-c logs in later in the month: it counts once, as carol.
    harness.send("src_s", track("G", userId="carol", anonymousId="anon-c"))
    harness.drain()
    assert store.count("src_s", month(clock)) == {
        "sourceId": "src_s",
        "month": month(clock),
        "mtu": 4,
        "userIds": 3,
        "anonymousIds": 1,
    }
    clock.advance(40 * DAY)
    harness.send("src_s", track("H", userId="alice"))
    harness.drain()
    assert store.count("src_s", month(clock))["mtu"] == 1
    first_month = datetime.fromtimestamp(clock() - 40 * DAY, UTC).strftime("%Y-%m")
    with engine.connect() as conn:
        kept = load(conn, "src_s", first_month)
    # u: alice bob carol; a: anon-a anon-b anon-c; x (seen with a userId): anon-a anon-c
    assert {kind: len(keys) for kind, keys in kept.items()} == {"u": 3, "a": 3, "x": 2}


# --- what the rest of the pipeline sees -----------------------------------------------------


def test_the_observer_counts_blocked_events_as_filtered_at_source(
    harness: Harness, engine: Engine
) -> None:
    harness.connect(source(rules=[SUB], settings={"track": {"allowUnplannedEvents": False}}))
    harness.send("src_s", track("Nope"), track("Nope either"), track("Subscription Cancelled"))
    harness.drain()
    log = EventLog(engine)
    Observer(engine)(
        [
            (p, offset, payload)
            for p in log.partitions
            for offset, payload in log.poll(GROUP, p, 100)
        ]
    )
    totals = {(t.step, t.reason): t.events for t in CounterStore(engine).totals("src_s", "")}
    assert totals[(counters.RECEIVED, "")] == 3
    assert totals[(counters.ACCEPTED, "")] == 1
    assert totals[(counters.FILTERED_AT_SOURCE, reasons.PROTOCOLS_UNPLANNED_EVENT)] == 2


def test_changed_records_coalesce_with_their_filtered_counts_and_forwarded_ones_stay_alone(
    harness: Harness,
) -> None:
    settings = {"track": {"allowUnplannedEvents": False}, "forwardingBlockedEventsTo": "src_q"}
    harness.connect(source(rules=[SUB], settings=settings))
    harness.send("src_s", track("Nope"), track("Subscription Cancelled"))
    harness.send("src_s", track("Nope"))
    harness.send("src_q", track("Own event"))
    harness.drain()
    [coalesced] = harness.records("src_s")
    assert coalesced["filtered"] == {reasons.PROTOCOLS_UNPLANNED_EVENT: 2}
    assert len(coalesced["events"]) == 1
    target = harness.records("src_q")
    assert [(len(r["events"]), r.get("forwarded_from", "")) for r in target] == [
        (1, ""),
        (2, "src_s"),
    ]


def test_violations_are_forgotten_after_eight_days_and_samples_trimmed(
    harness: Harness, engine: Engine, clock: Clock
) -> None:
    harness.connect(source(rules=[ORDER]))
    for n in range(8):  # one pass each: samples beyond the newest 5 are trimmed
        harness.send("src_s", track("Order Completed", {"n": n}))
        harness.drain()
    store = ViolationStore(engine, clock=clock)
    assert store.purge() == 3
    [kept] = store.summary("src_s", "1h", samples=20)
    assert kept["count"] == 8
    assert sorted(s["properties"]["n"] for s in kept["samples"]) == [3, 4, 5, 6, 7]
    clock.advance(8 * DAY + 600)
    assert store.purge() == 1 + 5  # the bucket's counts and its samples
    clock.advance(-8 * DAY - 600)
    assert store.summary("src_s", "7d") == []


def test_violations_of_very_long_names_are_kept_under_cut_names(
    harness: Harness, engine: Engine, clock: Clock
) -> None:
    long_name, long_property = "E" * 500, "p" * 400
    rule = track_rule(long_name, {}, (long_property,))
    harness.connect(source(rules=[rule]))
    harness.send("src_s", track(long_name))
    harness.drain()
    [found] = ViolationStore(engine, clock=clock).summary("src_s", "1h")
    assert found["eventName"] == long_name[:200]
    assert found["field"] == ("properties." + long_property)[:300]
    assert found["description"] == f"properties.{long_property} is required"
