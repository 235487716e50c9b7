"""The Privacy Inbox (§9.4, A-PR-1, A-PR-4): fields of scanned sources in the last 7 days,
pre-classified, with their events, sources, matcher and an example; its eraser."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from headwater.privacy.custom_matchers import CustomMatchers
from headwater.privacy.erasure import Erasure, Subjects
from headwater.privacy.inbox import SNIPPET, InboxEraser, InboxObserver, fields, inbox
from headwater.privacy.inventory import Inventory
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import format_timestamp
from tests.privacy.portal.conftest import source_id
from tests.support.clock import Clock
from tests.support.records import log_record

DAY = 24 * 3600


class Feed:
    """The Inbox's consumer handler, handed records as the consumer group would."""

    def __init__(self, store: WorkspaceStore, clock: Clock) -> None:
        self.store = store
        self.clock = clock
        self.offset = 0
        self.observer = InboxObserver(
            store.engine,
            CustomMatchers(store).matchers,
            lambda: {s.id: s.settings for s in store.all_sources()},
            clock=clock,
        )

    def send(self, source: str, *events: dict[str, Any]) -> None:
        at = format_timestamp(datetime.fromtimestamp(self.clock(), UTC))
        self.offset += 1
        payload = log_record(source_id(self.store, source), at, [dict(e) for e in events])
        self.observer([(0, self.offset, payload)])


def test_fields_walks_context_traits_and_properties() -> None:
    event = {
        "type": "track",
        "userId": "u1",
        "properties": {"a": {"b": 1}, "items": [{"sku": "x"}], "empty": []},
        "context": {"ip": "1.2.3.4"},
        "integrations": {"All": True},
    }
    assert sorted(path for path, _ in fields(event)) == [
        "context.ip",
        "properties.a",
        "properties.a.b",
        "properties.empty",
        "properties.items",
        "properties.items.$",
        "properties.items.$.sku",
    ]
    many = {"properties": {f"p{n}": n for n in range(500)}}
    assert len(list(fields(many))) == 300


def test_a_pr_1_and_a_pr_4_the_inbox(store: WorkspaceStore, clock: Clock) -> None:
    feed = Feed(store, clock)
    feed.send(
        "web",
        {
            "type": "track",
            "event": "Signed Up",
            "userId": "u1",
            "properties": {"ssn": "123-45-6789", "e-mail": "a@b.c", "plan": "pro"},
        },
        {"type": "identify", "userId": "u1", "traits": {"social security number": "1"}},
    )
    feed.send("salesforce", {"type": "identify", "userId": "u2", "traits": {"password": "x"}})
    feed.send(
        "retl", {"type": "track", "event": "Synced", "userId": "u2", "properties": {"ssn": 1}}
    )
    rows = {f.path: f for f in inbox(store.engine, clock())}
    assert sorted(rows) == [
        "properties.e-mail",
        "properties.plan",
        "properties.ssn",
        "traits.social security number",
    ]  # nothing of the object cloud source or the Reverse ETL source (A-PR-4)
    ssn = rows["properties.ssn"].to_json()
    assert ssn["classification"] == "RED" and ssn["matcher"] == "social security number"
    assert ssn["matcherType"] == "DEFAULT" and ssn["sourceName"] == "web"
    assert ssn["events"] == ["Signed Up"] and ssn["inInventory"] is False
    assert '"properties.ssn":"123-45-6789"' in ssn["example"]
    assert rows["traits.social security number"].to_json()["classification"] == "RED"
    email = rows["properties.e-mail"].to_json()
    assert (email["classification"], email["matcher"]) == ("YELLOW", "email")
    assert rows["properties.plan"].to_json()["classification"] == "GREEN"

    # The user's class shows once the field is in the Inventory.
    Inventory(store).classify("properties.plan", "YELLOW")
    plan = {f.path: f for f in inbox(store.engine, clock())}["properties.plan"].to_json()
    assert (plan["classification"], plan["recommended"], plan["inInventory"]) == (
        "YELLOW",
        "GREEN",
        True,
    )

    # Eight days on, only what was seen in the last 7 days is listed.
    clock.advance(8 * DAY)
    feed.send(
        "ios", {"type": "screen", "name": "Home", "userId": "u3", "properties": {"plan": "x"}}
    )
    listed = inbox(store.engine, clock())
    assert [(f.path, f.source_name, f.events) for f in listed] == [
        ("properties.plan", "ios", ["Screen Viewed"])
    ]


def test_a_repeated_pass_is_not_counted_twice(store: WorkspaceStore, clock: Clock) -> None:
    feed = Feed(store, clock)
    payload = log_record(
        source_id(store, "web"),
        format_timestamp(datetime.fromtimestamp(clock(), UTC)),
        [{"type": "track", "event": "A", "userId": "u", "properties": {"zip": "1"}}],
    )
    feed.observer([(0, 1, payload)])
    feed.observer([(0, 1, payload)])
    (row,) = inbox(store.engine, clock())
    assert row.count == 1


def test_a_value_matcher_classifies_by_the_value(store: WorkspaceStore, clock: Clock) -> None:
    CustomMatchers(store).create(
        {"name": "Staff", "classification": "RED", "matchOn": "VALUE", "pattern": "@acme\\.com$"}
    )
    feed = Feed(store, clock)
    feed.send(
        "web", {"type": "track", "event": "A", "userId": "u", "properties": {"who": "x@acme.com"}}
    )
    (row,) = inbox(store.engine, clock())
    assert (row.classification, row.matcher, row.matcher_type) == ("red", "Staff", "custom")


def test_the_eraser_clears_the_subjects_snippets(store: WorkspaceStore, clock: Clock) -> None:
    feed = Feed(store, clock)
    long = "x" * 1000
    feed.send("web", {"type": "track", "event": "A", "userId": "u1", "properties": {"note": long}})
    feed.send("ios", {"type": "track", "event": "A", "anonymousId": "a2", "properties": {"n": 1}})
    snippets = {f.path: f.snippet for f in inbox(store.engine, clock())}
    assert len(snippets["properties.note"]) <= SNIPPET
    eraser = InboxEraser(store.engine)
    assert eraser.target.kind == "internal"
    erasure = Erasure("reg_1", "ws", Subjects(user_ids=frozenset({"u1"})), clock())
    assert eraser.erase(erasure) is None
    assert eraser.erase(erasure) is None  # idempotent
    after = {f.path: f.snippet for f in inbox(store.engine, clock())}
    assert after["properties.note"] == "" and after["properties.n"] != ""
    # Limited to other sources, a regulation leaves this one's snippets.
    other = Erasure(
        "reg_2",
        "ws",
        Subjects(anonymous_ids=frozenset({"a2"})),
        clock(),
        source_ids=frozenset({source_id(store, "web")}),
    )
    eraser.erase(other)
    assert {f.path: f.snippet for f in inbox(store.engine, clock())}["properties.n"] != ""
    eraser.erase(Erasure("reg_3", "ws", Subjects(anonymous_ids=frozenset({"a2"})), clock()))
    assert {f.path: f.snippet for f in inbox(store.engine, clock())}["properties.n"] == ""


@pytest.mark.parametrize("category", [None, "server", "cloud-event"])
def test_server_and_cloud_event_sources_are_scanned(
    store: WorkspaceStore, clock: Clock, category: str | None
) -> None:
    settings = {} if category is None else {"category": category}
    store.create_source("other", settings=settings)
    Feed(store, clock).send(
        "other", {"type": "track", "event": "A", "userId": "u", "properties": {"k": 1}}
    )
    assert [f.path for f in inbox(store.engine, clock())] == ["properties.k"]
