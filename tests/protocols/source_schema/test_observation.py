"""The Source Schema's observation: events, properties, traits, counts, limits (§6.1, §6.3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from headwater.pipeline.consumer import Consumer
from headwater.protocols import source_schema
from headwater.protocols.source_schema import (
    IDENTIFY,
    MAX_EVENTS,
    MAX_PROPERTIES,
    TRACK,
    Item,
    SchemaObserver,
    SchemaStore,
    property_paths,
)
from headwater.store.log import EventLog
from headwater.timestamps import parse_timestamp
from tests.support.records import log_record
from tests.support.waiting import wait_for

T0 = "2024-03-05T10:00:10.123Z"


def seconds(text: str) -> int:
    parsed = parse_timestamp(text)
    assert parsed is not None
    return int(parsed.timestamp())


NOW = float(seconds(T0))


def track(name: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": name, "userId": "u1", "properties": properties}


def store(engine: Engine, now: float = NOW) -> SchemaStore:
    return SchemaStore(engine, clock=lambda: now)


def events(engine: Engine, source: str = "src_a", timeframe: str = "24h") -> dict[str, Item]:
    return {i.event: i for i in store(engine).items(source, TRACK, timeframe, properties=False)}


def test_property_paths_nest_and_mark_array_items() -> None:
    paths = property_paths({"a": {"b": 1}, "products": [{"sku": "x"}, {"price": 2}], "tags": []})
    assert paths == [
        "a",
        "a.b",
        "products",
        "products.$",
        "products.$.sku",
        "products.$.price",
        "tags",
    ]


def test_track_page_screen_identify_and_group_are_recorded(engine: Engine) -> None:
    observe = SchemaObserver(engine)
    messages = [
        track("Order Completed", total=10, order={"id": "1"}),
        track("Order Completed", coupon="X"),
        {"type": "page", "name": "Homepage", "userId": "u1", "properties": {"path": "/"}},
        {"type": "screen", "name": "Home", "userId": "u1"},
        {"type": "identify", "userId": "u1", "traits": {"email": "a@b", "address": {"city": "x"}}},
        {"type": "group", "groupId": "g", "userId": "u1", "traits": {"plan": "pro"}},
    ]
    observe([(0, 1, log_record("src_a", T0, messages))])
    listed = events(engine)
    assert sorted(listed) == ["Order Completed", "Page Viewed", "Screen Viewed"]  # A-TP-12
    assert (listed["Order Completed"].allowed, listed["Order Completed"].blocked) == (2, 0)
    assert listed["Order Completed"].last_seen == int(NOW)
    props = store(engine).items("src_a", TRACK, "24h", event="Order Completed", properties=True)
    assert [(p.property, p.allowed) for p in props] == [
        ("coupon", 1),
        ("order", 1),
        ("order.id", 1),
        ("total", 1),
    ]
    traits = store(engine).items("src_a", IDENTIFY, "7d", properties=True)
    assert [t.property for t in traits] == ["address", "address.city", "email"]
    group = store(engine).items("src_a", "group", "7d", properties=True)
    assert [t.property for t in group] == ["plan"]


def test_forwarded_violations_are_not_listed(engine: Engine) -> None:
    """A-VF-2 (schema side): violations the stage forwarded (their record names the source
    they came from) are not listed; a blocked event forwarded with them is."""
    forwarded = {**track("Violation Generated", eventName="X"), "userId": "schema-violations"}
    blocked = track("Coupon Applied")
    own = track("Violation Generated")  # a customer's own event of that name is listed
    record = log_record("src_b", T0, [forwarded, blocked], forwarded_from="src_a")
    SchemaObserver(engine)([(0, 1, record)])
    assert list(events(engine, "src_b")) == ["Coupon Applied"]
    SchemaObserver(engine)([(0, 2, log_record("src_b", T0, [own]))])
    assert sorted(events(engine, "src_b")) == ["Coupon Applied", "Violation Generated"]


def test_counts_fall_out_of_the_timeframe(engine: Engine) -> None:
    observe = SchemaObserver(engine)
    observe([(0, 1, log_record("src_a", "2024-02-20T10:00:00Z", [track("Old")]))])
    observe([(0, 2, log_record("src_a", T0, [track("Old"), track("Old")]))])
    assert events(engine, timeframe="24h")["Old"].allowed == 2
    assert events(engine, timeframe="30d")["Old"].allowed == 3
    assert events(engine, timeframe="30d")["Old"].first_seen == seconds("2024-02-20T10:00:00Z")


def test_expired_counts_leave_the_events_listed(engine: Engine) -> None:
    observe = SchemaObserver(engine)
    observe([(0, 1, log_record("src_a", "2024-01-01T10:00:00Z", [track("Old")]))])
    observe([(0, 2, log_record("src_a", T0, [track("Old")]))])
    assert store(engine).expire(before_hour=int(NOW) // 3600 - 31 * 24) == 1
    old = events(engine, timeframe="30d")["Old"]
    assert (old.allowed, old.first_seen) == (1, seconds("2024-01-01T10:00:00Z"))


def test_a_redelivered_pass_is_not_counted_twice(engine: Engine) -> None:
    payload = log_record("src_a", T0, [track("Signed Up")])
    SchemaObserver(engine)([(3, 7, payload)])
    SchemaObserver(engine)([(3, 7, payload)])  # another process after a crash
    assert events(engine)["Signed Up"].allowed == 1


def test_only_the_first_4000_events_are_listed(engine: Engine) -> None:
    """A-SC-2: the 4,001st distinct event is not listed (delivery is the router's)."""
    observe = SchemaObserver(engine)
    first = [track(f"Event {n:04d}") for n in range(MAX_EVENTS - 1)]
    observe([(0, 1, log_record("src_a", T0, first))])
    observe([(0, 2, log_record("src_a", T0, [track("Last Listed"), track("One Too Many")]))])
    observe([(0, 3, log_record("src_a", T0, [track("Event 0000")]))])  # listed ones still count
    listed = events(engine)
    assert len(listed) == MAX_EVENTS
    assert "Last Listed" in listed and "One Too Many" not in listed
    assert listed["Event 0000"].allowed == 2


def test_only_the_first_300_properties_are_listed(engine: Engine) -> None:
    """A-SC-3, across passes too: a later pass's new properties wait behind the first 300."""
    observe = SchemaObserver(engine)
    wide = track("Wide", **{f"p{n:03d}": n for n in range(MAX_PROPERTIES + 1)})
    observe([(0, 1, log_record("src_a", T0, [wide]))])
    props = store(engine).items("src_a", TRACK, "24h", event="Wide", properties=True)
    assert [p.property for p in props] == [f"p{n:03d}" for n in range(MAX_PROPERTIES)]
    observe([(0, 2, log_record("src_a", T0, [track("Wide", extra=1)]))])
    assert len(store(engine).items("src_a", TRACK, "24h", event="Wide", properties=True)) == 300


def test_blocked_events_are_counted_with_the_next_write(engine: Engine) -> None:
    observe = SchemaObserver(engine, clock=lambda: NOW)
    observe.blocked("src_a", {**track("Foo", a=1), "receivedAt": T0})
    observe.blocked("src_a", {**track("Foo"), "receivedAt": T0})
    from headwater.store.database import write_transaction

    with write_transaction(engine) as conn:  # as the stage does inside its own transaction
        observe.write_blocked(conn)
    observe([(0, 1, log_record("src_a", T0, [track("Foo")]))])
    observe.blocked("src_a", {**track("Foo"), "receivedAt": T0})
    observe([(0, 2, log_record("src_a", T0, [track("Bar")]))])  # carries the pending one
    foo = events(engine)["Foo"]
    assert (foo.allowed, foo.blocked, foo.total) == (1, 3, 4)
    (a,) = store(engine).items("src_a", TRACK, "24h", event="Foo", properties=True)
    assert (a.property, a.blocked) == ("a", 1)


def test_a_failed_write_keeps_the_blocked_counts(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    observe = SchemaObserver(engine, clock=lambda: NOW)
    observe.blocked("src_a", {**track("Foo"), "receivedAt": T0})

    def broken(*_args: Any) -> None:
        raise RuntimeError("the database went away")

    with monkeypatch.context() as patch:
        patch.setattr(source_schema, "_write", broken)
        with pytest.raises(RuntimeError):
            observe([(0, 1, log_record("src_a", T0, [track("Bar")]))])
    assert events(engine) == {}
    observe([(0, 2, log_record("src_a", T0, [track("Bar")]))])
    listed = events(engine)
    assert (listed["Foo"].blocked, listed["Bar"].allowed) == (1, 1)


def test_through_the_processed_stream(engine: Engine, tmp_path: Path) -> None:
    """Records appended to the real event log reach the schema through the consumer runner."""
    log = EventLog(engine)
    log.register("source-schema")
    log.append([log_record("src_a", T0, [track("Signed Up", plan="pro")])])
    log.append([log_record("src_a", T0, [{"type": "page", "userId": "u", "properties": {}}])])
    consumer = Consumer(log, "source-schema", SchemaObserver(engine), owner="test")
    consumer.start()
    try:
        wait_for(lambda: len(events(engine)) == 2, 10, "the schema to fill", interval=0.05)
    finally:
        consumer.stop()
    assert sorted(events(engine)) == ["Page Viewed", "Signed Up"]


def test_names_the_store_cannot_hold_are_not_listed(engine: Engine) -> None:
    """A NUL (PostgreSQL refuses it) or an over-long name would stop the consumer for good."""
    observe = SchemaObserver(engine)
    bad = [track("a\x00b"), track("x" * 256), track("Fine", **{"p\x00": 1, "q": 2})]
    observe([(0, 1, log_record("src_a", T0, bad))])
    assert list(events(engine)) == ["Fine"]
    props = store(engine).items("src_a", TRACK, "24h", event="Fine", properties=True)
    assert [p.property for p in props] == ["q"]


def test_a_listed_item_is_rewritten_only_when_its_times_move(engine: Engine) -> None:
    """The observer remembers what it listed: counts go in every pass, an item's row when its
    last seen moves on by a minute (or its first seen back), so the Schema stays right."""
    observe = SchemaObserver(engine)
    observe([(0, 1, log_record("src_a", T0, [track("Signed Up", plan="pro")]))])
    observe([(0, 2, log_record("src_a", "2024-03-05T10:00:40Z", [track("Signed Up")]))])
    seen = events(engine)["Signed Up"]
    assert seen.allowed == 2
    assert seen.last_seen == seconds(T0)  # 30 s later: the row was not rewritten
    observe([(0, 3, log_record("src_a", "2024-03-05T10:01:20Z", [track("Signed Up")]))])
    assert events(engine)["Signed Up"].last_seen == seconds("2024-03-05T10:01:20Z")
    observe([(0, 4, log_record("src_a", "2024-03-05T09:00:00Z", [track("Signed Up")]))])
    assert events(engine)["Signed Up"].first_seen == seconds("2024-03-05T09:00:00Z")
    assert events(engine)["Signed Up"].allowed == 4
