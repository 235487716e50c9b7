"""SQL traits run against real warehouses (an embedded DuckDB file and a PostgreSQL database),
on both state databases: A-UE-64 as the docs give it, Segment's refusals, a failing run that
changes nothing, accounts, identifiers, the schedule and the lease."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa

from headwater.engage import outbox
from headwater.engage.sql_traits.definitions import MAX_PER_SPACE
from headwater.engage.sql_traits.messages import anonymous_id
from headwater.engage.sql_traits.runs import KEPT_RUNS, Rows, SqlTraitRuns, preview
from headwater.errors import ConflictError, NotFoundError, QueryError
from headwater.ingest.internal import InternalAppend
from headwater.ingest.normalize import Discard, RequestInfo, normalize
from headwater.store import schema
from headwater.store.ingest_log import open_ingest_log
from headwater.store.record import decode_record
from headwater.timestamps import format_timestamp
from headwater.unify.messaging_subscriptions import carries, items_of
from headwater.unify.spaces import SpaceStore
from tests.support.sql_traits import SqlTraitWorld

TICKETS = (
    "CREATE TABLE tickets (user_id VARCHAR(64), status VARCHAR(16), rating INTEGER)",
    "INSERT INTO tickets VALUES ('u123', 'open', 9), ('u123', 'closed', 7), "
    "('u123', 'solved', 8), ('u456', 'closed', 5)",
)
# The documented query's columns, computed the way a Zendesk query would (§6).
ZENDESK = """
select user_id,
       bool_or(status in ('pending', 'open', 'hold', 'new')) as has_open_ticket,
       count(*) as num_tickets_90_days,
       avg(rating) as avg_zendesk_rating_90_days
from tickets
where user_id = 'u123'
group by user_id;
"""
A64_TRAITS = {"has_open_ticket": True, "num_tickets_90_days": 3, "avg_zendesk_rating_90_days": 8}


def personas(world: SqlTraitWorld, trait_id: str, key: str) -> dict[str, Any]:
    return {
        "personas": {
            "computation_class": "trait",
            "computation_id": trait_id,
            "computation_key": key,
            "namespace": world.space_id,
            "space_id": world.space_id,
        }
    }


def assert_valid_segment_message(message: dict[str, Any]) -> None:
    """What the outbox's drain appends goes through the Tracking API's rules unchanged."""
    received = datetime.fromtimestamp(1_700_000_000, UTC)
    info = RequestInfo(
        received_at=received, received_at_iso=format_timestamp(received), client_ip=None
    )
    normalized = normalize(dict(message), info, route_type=None)
    assert not isinstance(normalized, Discard), normalized
    assert normalized["messageId"] == message["messageId"]


def test_a_ue_64_first_run_then_nothing_then_nulls(world: SqlTraitWorld) -> None:
    world.warehouse.execute(*TICKETS)
    trait = world.traits.create("main", "Zendesk Traits", warehouse="dw", query=ZENDESK)
    assert trait.id.startswith("tra_") and len(trait.id) == 24
    assert trait.key == "zendesk_traits"
    runs = world.runs()

    [first] = runs.run_due()  # a new trait is due at once: its initial sync
    assert (first.status, first.error, first.rows, first.changed) == ("success", None, 1, 1)
    [sent] = world.outbox()
    assert {k: sent[k] for k in ("type", "userId", "traits")} == {
        "type": "identify",
        "userId": "u123",
        "traits": A64_TRAITS,
    }
    assert sent == {
        "type": "identify",
        "userId": "u123",
        "traits": A64_TRAITS,
        "messageId": outbox.message_id(trait.id, first.run_id, "user_id", "u123"),
        "timestamp": "2023-11-14T22:13:20.000Z",
        "context": personas(world, trait.id, "zendesk_traits"),
        "integrations": {"All": False},
    }
    assert re.fullmatch(r"personas_[0-9a-z]+", sent["messageId"])
    assert type(sent["traits"]["avg_zendesk_rating_90_days"]) is int  # 8, not 8.0
    assert_valid_segment_message(sent)

    world.clock.advance(12 * 3600)
    [again] = runs.run_due()  # the same rows: no call
    assert (again.status, again.rows, again.changed, again.nulled) == ("success", 1, 0, 0)
    assert len(world.outbox()) == 1

    world.warehouse.execute("DELETE FROM tickets WHERE user_id = 'u123'")
    gone = runs.run(trait.id)
    assert gone is not None and (gone.status, gone.rows, gone.nulled) == ("success", 0, 1)
    nulled = world.outbox()[1]
    assert nulled["userId"] == "u123" and nulled["type"] == "identify"
    assert nulled["traits"] == dict.fromkeys(A64_TRAITS)
    assert_valid_segment_message(nulled)
    assert world.values(trait.id) == {}

    after = runs.run(trait.id)
    assert after is not None and (after.changed, after.nulled) == (0, 0)
    assert len(world.outbox()) == 2


REFUSALS = [
    (
        "select user_id, count(*) as n from tickets group by user_id "
        "union all select 'u123' as user_id, 1 as n",
        "duplicate user_id 'u123' (rows",
    ),
    (
        "select user_id, "
        + ", ".join(f"rating as t{i}" for i in range(25))
        + " from tickets where user_id = 'u456'",
        "maximum columns exceeded: the query returns 26 columns",
    ),
    (
        "select user_id, user_id as anonymous_id, rating from tickets",
        "cannot include both user_id and anonymous_id",
    ),
    ("select status, rating from tickets", "must return a user_id, email or anonymous_id"),
    ("select distinct user_id from tickets", "at least one trait column besides user_id"),
    ("select null as user_id, 1 as n", "row 1: user_id is null"),
    ("select user_id, rating from no_such_table", "no_such_table"),
]


def test_a_ue_64_refusals_fail_the_run_with_segments_reason(world: SqlTraitWorld) -> None:
    world.warehouse.execute(*TICKETS)
    runs = world.runs()
    for i, (query, reason) in enumerate(REFUSALS):
        trait = world.traits.create("main", f"refused {i}", warehouse="dw", query=query)
        result = runs.run(trait.id)
        assert result is not None and result.status == "failure", query
        assert result.error is not None and reason in result.error, (query, result.error)
        stored = world.traits.require("main", trait.id)
        assert (stored.status, stored.last_error) == ("failure", result.error)
        [run] = world.traits.runs("main", trait.id)
        assert (run.status, run.error) == ("failure", result.error)
        assert world.values(trait.id) == {}
    assert world.outbox() == []


def test_a_failing_run_changes_nothing(world: SqlTraitWorld) -> None:
    world.warehouse.execute(*TICKETS)
    query = "select user_id, max(rating) as best from tickets group by user_id"
    trait = world.traits.create("main", "best", warehouse="dw", query=query)
    runs = world.runs()
    ok = runs.run(trait.id)
    assert ok is not None and (ok.status, ok.changed) == ("success", 2)
    stored = world.values(trait.id)
    assert set(stored) == {("user_id", "u123"), ("user_id", "u456")}

    # The data changes and the query breaks: the run fails, the values stay.
    world.warehouse.execute("UPDATE tickets SET rating = 10 WHERE user_id = 'u456'")
    world.traits.update("main", trait.id, query=query.replace("max(", "maxx("))
    failed = runs.run(trait.id)
    assert failed is not None and failed.status == "failure"
    assert world.values(trait.id) == stored
    assert len(world.outbox()) == 2

    # Fixed: the change is measured against the last good run, and sent once.
    world.traits.update("main", trait.id, query=query)
    fixed = runs.run(trait.id)
    assert fixed is not None and (fixed.status, fixed.changed, fixed.nulled) == ("success", 1, 0)
    assert world.outbox()[-1]["userId"] == "u456"
    assert world.outbox()[-1]["traits"] == {"best": 10}
    assert world.traits.require("main", trait.id).status == "success"
    statuses = [r.status for r in world.traits.runs("main", trait.id)]
    assert statuses == ["success", "failure", "success"]


def test_accounts_send_group_calls(world: SqlTraitWorld) -> None:
    world.warehouse.execute(
        "CREATE TABLE accounts (group_id VARCHAR(20), owner VARCHAR(20), plan VARCHAR(20), "
        "seats INTEGER)",
        "INSERT INTO accounts VALUES ('acc1', 'u1', 'pro', 12), ('acc2', NULL, 'free', 1)",
    )
    query = "select group_id, owner as user_id, plan, seats from accounts order by group_id"
    trait = world.traits.create(
        "main", "Account plan", warehouse="dw", query=query, level="accounts"
    )
    result = world.runs().run(trait.id)
    assert result is not None and result.status == "success", result
    first, second = world.outbox()
    assert {k: first[k] for k in ("type", "groupId", "userId", "traits")} == {
        "type": "group",
        "groupId": "acc1",
        "userId": "u1",  # the user the row associates with the account
        "traits": {"plan": "pro", "seats": 12},
    }
    assert {k: second[k] for k in ("type", "groupId", "anonymousId", "traits")} == {
        "type": "group",
        "groupId": "acc2",
        "anonymousId": anonymous_id("group_id", "acc2"),
        "traits": {"plan": "free", "seats": 1},
    }
    assert "userId" not in second
    for message in (first, second):
        assert_valid_segment_message(message)

    # A new owner is a change of the row: the Group call goes again.
    world.warehouse.execute("UPDATE accounts SET owner = 'u2' WHERE group_id = 'acc1'")
    again = world.runs().run(trait.id)
    assert again is not None and again.changed == 1
    assert world.outbox()[-1]["userId"] == "u2"


def test_email_and_anonymous_id_identifiers(world: SqlTraitWorld) -> None:
    by_email = world.traits.create(
        "main",
        "by email",
        warehouse="dw",
        query="select 'ada@example.com' as EMAIL, 'gold' as tier",
    )
    by_anonymous = world.traits.create(
        "main",
        "by anonymous id",
        warehouse="dw",
        query="select 'anon-1' as anonymous_id, 'b@example.com' as email, 3 as visits",
    )
    for trait in (by_email, by_anonymous):
        result = world.runs().run(trait.id)
        assert result is not None and result.status == "success", result
    email, anonymous = world.outbox()
    assert email["anonymousId"] == anonymous_id("email", "ada@example.com")
    assert email["traits"] == {"tier": "gold", "email": "ada@example.com"}
    assert "userId" not in email
    assert anonymous["anonymousId"] == "anon-1"
    assert anonymous["traits"] == {"email": "b@example.com", "visits": 3}  # a trait here
    for message in (email, anonymous):
        assert_valid_segment_message(message)


def test_values_as_a_message_carries_them(world: SqlTraitWorld) -> None:
    array = "['a', 'b', 'c']" if world.warehouse.kind == "duckdb" else "ARRAY['a', 'b', 'c']"
    query = (
        f"select 'u1' as user_id, {array} as tags, "
        "CAST('2024-01-02 03:04:05.678' AS TIMESTAMP) as last_seen, "
        "CAST('2024-01-02' AS DATE) as since, CAST(2.50 AS DECIMAL(10, 2)) as ratio, "
        "CAST(NULL AS VARCHAR) as nothing, false as churned"
    )
    trait = world.traits.create("main", "values", warehouse="dw", query=query)
    result = world.runs().run(trait.id)
    assert result is not None and result.status == "success", result
    [sent] = world.outbox()
    assert sent["traits"] == {
        "tags": "a,b,c",
        "last_seen": "2024-01-02T03:04:05.678Z",
        "since": "2024-01-02",
        "ratio": 2.5,
        "nothing": None,
        "churned": False,
    }

    objects = world.traits.create(
        "main",
        "objects",
        warehouse="dw",
        query="select 'u1' as user_id, "
        + (
            "{'a': 1} as blob"
            if world.warehouse.kind == "duckdb"
            else "CAST('{\"a\": 1}' AS JSON) as blob"
        ),
    )
    refused = world.runs().run(objects.id)
    assert refused is not None and refused.status == "failure"
    assert "column 'blob', row 1: an object" in str(refused.error)


def test_an_edited_query_nulls_the_traits_it_no_longer_returns(world: SqlTraitWorld) -> None:
    trait = world.traits.create(
        "main", "plan", warehouse="dw", query="select 'u1' as user_id, 'pro' as plan, 3 as seats"
    )
    runs = world.runs()
    runs.run(trait.id)
    world.traits.update("main", trait.id, query="select 'u1' as user_id, 'pro' as plan")
    result = runs.run(trait.id)
    assert result is not None and result.changed == 1
    assert world.outbox()[-1]["traits"] == {"plan": "pro", "seats": None}


def test_records_of_16_kb_are_discarded_and_keep_their_values(world: SqlTraitWorld) -> None:
    repeat = "repeat('x', 17000)"
    trait = world.traits.create(
        "main",
        "big",
        warehouse="dw",
        query="select 'u1' as user_id, 'small' as note union all "
        "select 'u2' as user_id, 'small' as note",
    )
    runs = world.runs()
    runs.run(trait.id)
    assert len(world.outbox()) == 2
    world.traits.update(
        "main",
        trait.id,
        query=f"select 'u1' as user_id, {repeat} as note union all "
        "select 'u2' as user_id, 'still small' as note",
    )
    result = runs.run(trait.id)
    assert result is not None and (result.status, result.rows) == ("success", 2)
    assert (result.discarded, result.changed, result.nulled) == (1, 1, 0)
    assert world.outbox()[-1]["userId"] == "u2"
    assert '"small"' in world.values(trait.id)[("user_id", "u1")]  # u1 keeps what it had


def test_preview_marks_known_identifiers_and_stores_nothing(world: SqlTraitWorld) -> None:
    world.warehouse.execute(*TICKETS)
    with world.engine.begin() as conn:
        conn.execute(
            schema.unify_identities.insert().values(
                space_id=world.space_id,
                collection="users",
                type="user_id",
                value="u123",
                profile=1,
                first_seen=0.0,
                source_id="src",
                message_id="m",
            )
        )
    query = "select user_id, count(*) as tickets from tickets group by user_id order by user_id"
    found = preview(
        world.engine,
        world.queries,
        space_id=world.space_id,
        warehouse_id=world.warehouse.id,
        query=query,
        level="users",
        limit=1,
    )
    assert (found.identifier, found.traits) == ("user_id", ["tickets"])
    assert [(r.identifier, r.known, r.traits) for r in found.rows] == [
        ("u123", True, {"tickets": 3})
    ]
    full = preview(
        world.engine,
        world.queries,
        space_id=world.space_id,
        warehouse_id=world.warehouse.id,
        query=query,
        level="users",
    )
    assert [(r.identifier, r.known) for r in full.rows] == [("u123", True), ("u456", False)]
    with pytest.raises(QueryError, match="cannot include both user_id and anonymous_id"):
        preview(
            world.engine,
            world.queries,
            space_id=world.space_id,
            warehouse_id=world.warehouse.id,
            query="select 'a' as user_id, 'b' as anonymous_id, 1 as n",
            level="users",
        )
    assert world.outbox() == []


# --- the schedule and the lease --------------------------------------------------------------


def test_schedule_runs_every_n_hours_and_on_request(world: SqlTraitWorld) -> None:
    trait = world.traits.create(
        "main", "tier", warehouse="dw", query="select 'u1' as user_id, 1 as n", every_hours=6
    )
    runs = world.runs()
    created = world.clock.now
    assert runs.due() == [trait.id]
    runs.run_due()
    stored = world.traits.require("main", trait.id)
    assert stored.next_run_at == created + 6 * 3600
    assert stored.last_run_at == created
    assert runs.due() == []

    world.clock.advance(3600)
    world.traits.request_run("main", trait.id)  # "run now" leaves the schedule alone
    assert runs.due() == [trait.id]
    runs.run_due()
    assert world.traits.runs("main", trait.id)[0].trigger == "manual"
    stored = world.traits.require("main", trait.id)
    assert (stored.next_run_at, stored.requested_at) == (created + 6 * 3600, None)

    world.clock.advance(5 * 3600 - 1)
    assert runs.due() == []
    world.clock.advance(1)
    assert runs.due() == [trait.id]
    # A worker that was away for a day skips the slots it missed: the next is in the future.
    world.clock.advance(24 * 3600 + 10)
    runs.run_due()
    stored = world.traits.require("main", trait.id)
    assert stored.next_run_at is not None
    assert world.clock.now < stored.next_run_at <= world.clock.now + 6 * 3600
    assert (stored.next_run_at - created) % (6 * 3600) == 0

    world.traits.update("main", trait.id, every_hours=1)
    assert world.traits.require("main", trait.id).next_run_at == world.clock.now + 3600


class GatedQueries:
    """The world's real warehouse queries, held at the first row until the test opens the
    gate: a run that is surely in progress."""

    def __init__(self, world: SqlTraitWorld) -> None:
        self._queries = world.queries
        self.started = threading.Event()
        self.gate = threading.Event()

    @contextmanager
    def rows(
        self,
        warehouse_id: str,
        query: str,
        *,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> Iterator[Rows]:
        with self._queries.rows(warehouse_id, query, limit=limit, timeout=timeout) as found:
            self.started.set()
            assert self.gate.wait(30)
            yield found


def test_one_process_runs_a_trait_at_a_time(world: SqlTraitWorld) -> None:
    trait = world.traits.create(
        "main", "tier", warehouse="dw", query="select 'u1' as user_id, 1 as n"
    )
    gated = GatedQueries(world)
    first_runs = SqlTraitRuns(world.engine, gated, owner="worker-1", clock=world.clock)
    second = world.runs("worker-2")
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(first_runs.run_due()))
    thread.start()
    try:
        assert gated.started.wait(30)
        assert second.due() == []  # leased by worker-1
        assert second.run(trait.id) is None
    finally:
        gated.gate.set()
        thread.join(30)
    [[result]] = results
    assert result.status == "success"
    assert len(world.outbox()) == 1
    assert [r.status for r in world.traits.runs("main", trait.id)] == ["success"]

    # A lease that expired (its process died mid-run) is taken over, the run marked so.
    t = schema.engage_sql_traits
    with world.engine.begin() as conn:
        conn.execute(
            t.update()
            .where(t.c.id == trait.id)
            .values(lease_owner="dead", lease_expires_at=int(world.clock.now) - 1)
        )
        conn.execute(
            schema.engage_sql_trait_runs.insert().values(
                trait_id=trait.id,
                trigger="schedule",
                status="running",
                started_at=int(world.clock.now) - 400,
                rows=0,
                changed=0,
                nulled=0,
                discarded=0,
            )
        )
    taken = second.run(trait.id)
    assert taken is not None and taken.status == "success"
    newest = world.traits.runs("main", trait.id)
    assert newest[1].status == "failure" and "interrupted" in str(newest[1].error)


def test_history_keeps_the_last_30_runs(world: SqlTraitWorld) -> None:
    trait = world.traits.create("main", "n", warehouse="dw", query="select 'u1' as user_id, 1 n")
    runs = world.runs()
    for _ in range(KEPT_RUNS + 3):
        runs.run(trait.id)
    history = world.traits.runs("main", trait.id)
    assert len(history) == KEPT_RUNS
    assert [r.id for r in history] == sorted((r.id for r in history), reverse=True)


def test_a_deleted_trait_stops_and_its_key_is_never_reused(world: SqlTraitWorld) -> None:
    trait = world.traits.create("main", "Tier", warehouse="dw", query="select 'u1' user_id, 1 n")
    world.runs().run(trait.id)
    world.traits.delete("main", trait.id)
    assert world.values(trait.id) == {}
    assert world.runs().due() == []
    with pytest.raises(NotFoundError):
        world.traits.require("main", trait.id)
    with pytest.raises(ConflictError, match="a deleted SQL trait had the key 'tier'"):
        world.traits.create("main", "Tier", warehouse="dw", query="select 'u1' user_id, 1 n")
    again = world.traits.create(
        "main", "Tier", key="tier_v2", warehouse="dw", query="select 'u1' user_id, 1 n"
    )
    assert again.key == "tier_v2"


def test_keys_are_unique_across_engage_computations(world: SqlTraitWorld) -> None:
    with world.engine.begin() as conn:
        conn.execute(
            schema.engage_computations.insert().values(
                id="aud_1",
                space_id=world.space_id,
                kind="audience",
                key="big_spenders",
                name="Big spenders",
                level="users",
                definition="true",
                mode="batch",
                status="live",
                options={},
                created_at=0,
                updated_at=0,
            )
        )
    with pytest.raises(ConflictError, match="an audience has the key 'big_spenders'"):
        world.traits.create("main", "Big Spenders", warehouse="dw", query="select 1")


def test_at_most_25_sql_traits_per_space(world: SqlTraitWorld) -> None:
    for i in range(MAX_PER_SPACE):
        world.traits.create("main", f"t{i}", warehouse="dw", query="select 'u' user_id, 1 n")
    with pytest.raises(ConflictError, match="has 25 SQL traits, the most a space may have"):
        world.traits.create("main", "one more", warehouse="dw", query="select 1")
    world.traits.delete("main", "t0")
    world.traits.create("main", "one more", warehouse="dw", query="select 'u' user_id, 1 n")
    t = schema.engage_sql_traits
    with world.engine.connect() as conn:
        live = conn.execute(
            sa.select(sa.func.count()).select_from(t).where(t.c.deleted_at.is_(None))
        ).scalar_one()
    assert live == MAX_PER_SPACE


def test_the_calls_drain_into_the_ingest_log_as_sent(world: SqlTraitWorld, tmp_path: Path) -> None:
    """Engage's outbox drain appends them through the internal path unchanged: every call is
    a complete Segment message (no Discard), from the space's Engage source."""
    world.warehouse.execute(*TICKETS)
    engage_source = SpaceStore(world.store).engage_source("main")  # made with the space
    trait = world.traits.create("main", "Zendesk Traits", warehouse="dw", query=ZENDESK)
    world.runs().run(trait.id)
    world.warehouse.execute("DELETE FROM tickets")
    world.runs().run(trait.id)
    queued = world.outbox()
    assert len(queued) == 2

    log = open_ingest_log(world.engine, tmp_path / "log", durability="normal", clock=world.clock)
    try:
        assert outbox.Drain(world.engine, InternalAppend(log, clock=world.clock))() == 2
        records = [
            decode_record(payload)
            for partition in log.partitions
            for _, payload in log.read(partition, 0, 100)
        ]
    finally:
        log.close()
    [record] = records
    assert record.source_id == engage_source.id
    events: list[dict[str, Any]] = [msgspec.json.decode(event) for event in record.events]
    for event, sent in zip(events, queued, strict=True):
        assert {k: event[k] for k in sent} == sent
    assert world.outbox() == []


SUBSCRIPTIONS = (
    "CREATE TABLE prefs (user_id VARCHAR(20), email VARCHAR(64), phone VARCHAR(20), "
    "email_state VARCHAR(20), sms_state VARCHAR(20))",
    "INSERT INTO prefs VALUES ('u1', 'ada@example.com', '+15555550100', 'subscribed', "
    "'unsubscribed'), ('u2', 'bo@example.com', NULL, 'did_not_subscribe', NULL)",
)
PREFS = (
    "select user_id, email, phone, email_state as __segment_internal_email_subscription__, "
    "sms_state as __segment_internal_sms_subscription__ from prefs order by user_id"
)


def test_subscriptions_with_sql_set_states_through_an_identify(world: SqlTraitWorld) -> None:
    """§18.5: the status columns become the Identify's ``context.messaging_subscriptions``,
    which identity resolution applies as it applies any Identify's."""
    world.warehouse.execute(*SUBSCRIPTIONS)
    trait = world.traits.create("main", "Preferences", warehouse="dw", query=PREFS)
    runs = world.runs()
    first = runs.run(trait.id)
    assert first is not None and first.status == "success", first
    u1, u2 = world.outbox()
    assert u1["traits"] == {"email": "ada@example.com", "phone": "+15555550100"}
    assert u1["context"]["messaging_subscriptions"] == [
        {"key": "ada@example.com", "type": "EMAIL", "status": "SUBSCRIBED"},
        {"key": "+15555550100", "type": "SMS", "status": "UNSUBSCRIBED"},
    ]
    # No phone: no SMS item (a blank state never overwrites one).
    assert u2["context"]["messaging_subscriptions"] == [
        {"key": "bo@example.com", "type": "EMAIL", "status": "DID_NOT_SUBSCRIBE"}
    ]
    assert carries(u1)
    items, refused = items_of(u1)
    assert refused == [] and [(i.channel, i.key, i.status) for i in items] == [
        ("EMAIL", "ada@example.com", "subscribed"),
        ("SMS", "+15555550100", "unsubscribed"),
    ]
    for message in (u1, u2):
        assert_valid_segment_message(message)
    # A changed state is sent again; an unchanged row is not.
    world.warehouse.execute("UPDATE prefs SET email_state = 'unsubscribed' WHERE user_id = 'u2'")
    again = runs.run(trait.id)
    assert again is not None and (again.status, again.changed) == ("success", 1)
    [changed] = world.outbox()[2:]
    assert changed["userId"] == "u2"
    assert changed["context"]["messaging_subscriptions"][0]["status"] == "UNSUBSCRIBED"


def test_subscriptions_with_sql_refusals(world: SqlTraitWorld) -> None:
    world.warehouse.execute(*SUBSCRIPTIONS)
    refusals = [
        (
            "select 'u1' as user_id, 'subscribed' as __segment_internal_email_subscription__",
            "needs a email column",
        ),
        (
            "select user_id, email, 'maybe' as __segment_internal_email_subscription__ from prefs",
            "'maybe' is no subscription status",
        ),
        (
            "select user_id, 'same@example.com' as email, email_state as "
            "__segment_internal_email_subscription__ from prefs",
            "different EMAIL subscription states",
        ),
    ]
    for i, (query, reason) in enumerate(refusals):
        trait = world.traits.create("main", f"refused {i}", warehouse="dw", query=query)
        result = world.runs().run(trait.id)
        assert result is not None and result.status == "failure", query
        assert result.error is not None and reason in result.error, (query, result.error)
    accounts = world.traits.create(
        "main",
        "accounts",
        warehouse="dw",
        level="accounts",
        query="select 'g1' as group_id, 'a@b.co' as email, "
        "'subscribed' as __segment_internal_email_subscription__",
    )
    result = world.runs().run(accounts.id)
    assert result is not None and result.error is not None
    assert "subscription states are set on users" in result.error
    # Only status columns beside the identifier: no trait column is needed.
    only = world.traits.create(
        "main",
        "only states",
        warehouse="dw",
        query="select email, email_state as __segment_internal_email_subscription__ from prefs",
    )
    result = world.runs().run(only.id)
    assert result is not None and result.status == "success", result
    assert world.outbox()[-1]["traits"] == {"email": "bo@example.com"}
