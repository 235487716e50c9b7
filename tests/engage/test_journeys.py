"""Classic journeys (§15) through the real identity stage and Engage stage, on SQLite and
PostgreSQL: entry, delays, conditions, splits, exit and re-entry, send steps and their keys
(A-UE-48, A-UE-49, A-UE-50, A-UE-51, A-UE-52, A-UE-53)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.errors import InvalidError
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore
from headwater.unify.spaces import SpaceStore
from tests.engage.journey_world import DAY, HOOK, HOUR, LIST, World
from tests.support.clock import Clock

DAY_INT = int(DAY)


@pytest.fixture
def world(engine: Engine, tmp_path: Path, clock: Clock) -> World:
    return World(engine, tmp_path, clock)


def _send(*targets: dict[str, object]) -> dict[str, object]:
    return {"destinations": list(targets) or [{"name": HOOK}]}


def test_a48_a_delay_holds_the_next_step_until_it_ends_and_the_condition_still_holds(
    world: World,
) -> None:
    w = world
    w.audience("Signed Up", "event('Signed Up').count() >= 1")
    w.audience("Viewed Pricing", "event('Viewed Pricing').within(2 days).count() >= 1")
    journey = w.journey(
        "First Purchase",
        {
            "entry": {"audience": "signed_up"},
            "steps": [
                {"name": "Wait 5 days", "delay": {"days": 5}},
                {"name": "Viewed pricing", "condition": {"audience": "viewed_pricing"}},
                {"name": "Opened email", "send": _send()},
            ],
        },
    )
    w.send(event="Signed Up", userId="u1")
    w.send(event="Signed Up", userId="u2")
    assert w.steps(journey, "u1") == [] and w.steps(journey, "u2") == []
    w.later(DAY)
    w.send(event="Viewed Pricing", userId="u1")  # meets C at t0 + 1 day
    w.send(event="Viewed Pricing", userId="u2")
    assert w.steps(journey, "u1") == []  # the delay is not over
    w.later(3 * DAY)
    w.send(event="Viewed Pricing", userId="u1")  # u1 still satisfies C at t0 + 5 days
    assert w.messages() == []
    w.later(DAY - HOUR)
    assert w.steps(journey, "u1") == []
    w.later(HOUR)  # t0 + 5 days: the delay ends
    assert w.steps(journey, "u1") == ["wait_5_days", "viewed_pricing", "opened_email"]
    # u2's view left the 2-day window: the wait is over, the condition is not met.
    assert w.steps(journey, "u2") == ["wait_5_days"]
    sent = w.messages()
    assert {m["userId"] for m in sent} == {"u1"}
    traits = w.traits("u1")
    prefix = "j_first_purchase__"
    stamp = "2026-03-06T12:00:00.000Z"
    assert traits[f"{prefix}viewed_pricing__step_joined_time"] == stamp
    assert traits[f"{prefix}entry__step_joined_time"] == "2026-03-01T12:00:00.000Z"
    assert traits[f"{prefix}opened_email__step_joined_time"] == stamp
    w.later(DAY)
    w.send(event="Viewed Pricing", userId="u2")  # u2 meets C later: joins then
    assert w.steps(journey, "u2") == ["wait_5_days", "viewed_pricing", "opened_email"]


def test_a49_true_false_sides_are_final_and_multi_branch_allows_both(world: World) -> None:
    w = world
    w.audience("Entered", "event('Start').count() >= 1")
    w.audience("Premium", "trait('plan') = 'premium'")
    w.audience("Email Reachable", "trait('email_opt_in') = true")
    w.audience("SMS Reachable", "trait('sms_opt_in') = true")
    split = w.journey(
        "Split",
        {
            "entry": {"audience": "entered"},
            "steps": [
                {
                    "name": "Is premium",
                    "true_false": {
                        "condition": {"audience": "premium"},
                        "true": [{"name": "Premium offer", "send": _send()}],
                        "false": [{"name": "Basic offer", "send": _send()}],
                    },
                }
            ],
        },
    )
    multi = w.journey(
        "Channels",
        {
            "entry": {"audience": "entered"},
            "steps": [
                {
                    "name": "Channel",
                    "multi_branch": [
                        {"name": "Email", "condition": {"audience": "email_reachable"}},
                        {"name": "SMS", "condition": {"audience": "sms_reachable"}},
                    ],
                }
            ],
        },
    )
    w.send("identify", userId="u1", traits={"plan": "premium", "email_opt_in": True})
    w.send(event="Start", userId="u1")
    assert w.steps(split, "u1") == ["is_premium", "is_premium__true", "premium_offer"]
    w.send("identify", userId="u1", traits={"plan": "free", "sms_opt_in": True})
    w.later(DAY)
    assert w.steps(split, "u1") == ["is_premium", "is_premium__true", "premium_offer"]
    assert set(w.steps(multi, "u1")) == {"channel", "channel__email", "channel__sms"}
    w.send(event="Start", userId="u2")
    assert w.steps(split, "u2") == ["is_premium", "is_premium__false", "basic_offer"]
    assert w.steps(multi, "u2") == ["channel"]  # waits in the split for a condition


def test_a50_a_randomized_split_keeps_its_proportions_and_its_branch_on_re_entry(
    world: World,
) -> None:
    w = world
    w.audience("Active", "event('Ping').within(1 days).count() >= 1")
    journey = w.journey(
        "AB Test",
        {
            "entry": {"audience": "active"},
            "exit": {"after": {"days": 2}},
            "reentry": {"after": {"days": 1}},
            "steps": [
                {
                    "name": "Groups",
                    "randomized": [
                        {"name": "A", "percent": 40},
                        {"name": "B", "percent": 40},
                        {"name": "C", "percent": 20},
                    ],
                }
            ],
        },
    )
    users = [f"u{n}" for n in range(300)]
    w.send_many([{"event": "Ping", "userId": user} for user in users])
    first = {user: w.steps(journey, user)[1] for user in users}
    counts = Counter(first.values())
    assert 90 <= counts["groups__a"] <= 150 and 90 <= counts["groups__b"] <= 150
    assert 35 <= counts["groups__c"] <= 85
    w.later(2 * DAY)  # all exit
    w.later(DAY)  # re-entry window open; they are no longer active
    w.send_many([{"event": "Ping", "userId": user} for user in users[:20]])  # re-enter
    for user in users[:20]:
        assert w.steps(journey, user)[1] == first[user]
    assert w.steps(journey, users[20]) == []  # exited, not back
    # 10,000 entrants: the same hash, without the stage, lands within 1.5 points of 40/40/20.
    from headwater.engage.journeys.runner import _bucket

    tally = Counter(
        "a" if b < 40 else "b" if b < 80 else "c"
        for b in (_bucket(journey.id, "groups", f"p{n}") for n in range(10_000))
    )
    assert abs(tally["a"] - 4000) < 150 and abs(tally["b"] - 4000) < 150
    assert abs(tally["c"] - 2000) < 150


def test_a51_exit_after_7_days_and_re_entry_30_days_after_the_exit(world: World) -> None:
    w = world
    w.audience("Browsers", "event('Browse').count() >= 1")
    journey = w.journey(
        "Winback",
        {
            "entry": {"audience": "browsers"},
            "exit": {"after": {"days": 7}},
            "reentry": {"after": {"days": 30}},
            "steps": [{"name": "Offer", "send": _send({"name": HOOK, "send_track": True})}],
        },
    )
    w.send(event="Browse", userId="u1")
    entered = w.messages()
    assert [m.get("event") or m["type"] for m in entered] == ["identify", "Audience Entered"]
    key = entered[1]["properties"]["audience_key"]
    w.later(7 * DAY)
    assert w.steps(journey, "u1") == []  # removed from every step
    exited = w.messages()
    assert [(m.get("event") or m["type"]) for m in exited] == ["identify", "Audience Exited"]
    assert exited[0]["traits"] == {key: False}
    assert exited[1]["properties"] == {"audience_key": key, key: False}
    w.later(29 * DAY)  # d36: not yet
    w.send(event="Browse", userId="u1")
    assert w.steps(journey, "u1") == [] and w.messages() == []
    w.later(DAY)  # d37: re-enters, still matching entry
    assert w.steps(journey, "u1") == ["offer"]
    again = w.messages()
    assert [m["properties"]["audience_key"] for m in again if m["type"] == "track"] == [key]
    assert again[0]["messageId"] != entered[0]["messageId"]


def test_a51_without_re_entry_settings_a_profile_enters_once(world: World) -> None:
    w = world
    w.audience("Browsers", "event('Browse').count() >= 1")
    journey = w.journey(
        "Once",
        {
            "entry": {"audience": "browsers"},
            "exit": {"after": {"days": 1}},
            "steps": [{"name": "Offer", "send": _send()}],
        },
    )
    w.send(event="Browse", userId="u1")
    w.later(40 * DAY)
    w.send(event="Browse", userId="u1")
    assert w.steps(journey, "u1") == []
    with w.engine.connect() as conn:
        entries = conn.execute(
            sa.select(sa.func.count())
            .select_from(schema.engage_journey_log)
            .where(schema.engage_journey_log.c.step == "@entry")
        ).scalar_one()
    assert entries == 1


def test_a52_a_send_step_key_and_a_list_destination_that_never_gets_removals(
    world: World,
) -> None:
    w = world
    w.audience("Buyers", "event('Order Completed').count() >= 1")
    journey = w.journey(
        "First Purchase",
        {
            "entry": {"audience": "buyers"},
            "exit": {"after": {"days": 7}},
            "steps": [
                {
                    "name": "Opened Email",
                    "send": _send(
                        {"name": HOOK, "send_track": True, "send_identify": False},
                        {"name": LIST, "list": True},
                    ),
                }
            ],
        },
    )
    key = journey.latest.definition["steps"][0]["key"]
    assert (
        key.startswith("j_o_first_purchase__opened_email_")
        and len(key) == len("j_o_first_purchase__opened_email_") + 6
    )
    w.send("identify", userId="u1", traits={"email": "a@x.com"})
    w.send("identify", userId="u1", traits={"email": "b@x.com"})
    w.send(event="Order Completed", userId="u1")
    sent = w.messages()
    summary = sorted(
        (
            next(iter(m["integrations"].keys() - {"All"})),
            m.get("event") or m["type"],
            (m.get("traits") or m["context"].get("traits") or {}).get("email"),
        )
        for m in sent
    )
    assert summary == [
        (LIST, "Audience Entered", "a@x.com"),
        (LIST, "Audience Entered", "b@x.com"),
        (LIST, "identify", "a@x.com"),
        (LIST, "identify", "b@x.com"),
        (HOOK, "Audience Entered", "a@x.com"),
        (HOOK, "Audience Entered", "b@x.com"),
    ]
    track = next(m for m in sent if m["type"] == "track")
    assert track["properties"] == {"audience_key": key, key: True}
    assert track["context"]["personas"]["computation_key"] == key
    assert track["context"]["personas"]["computation_id"] == journey.id
    assert track["context"]["personas"]["computation_class"] == "audience"
    w.later(7 * DAY)
    exits = w.messages()
    assert {next(iter(m["integrations"].keys() - {"All"})) for m in exits} == {HOOK}
    assert {m["event"] for m in exits} == {"Audience Exited"}


def test_a_new_version_keeps_send_step_keys_and_a_draft_sends_nothing(world: World) -> None:
    w = world
    w.audience("Buyers", "event('Order Completed').count() >= 1")
    definition = {
        "entry": {"audience": "buyers"},
        "steps": [{"name": "Thanks", "send": _send()}],
    }
    journey = w.journeys.create("main", "Thanks", definition)
    w.send(event="Order Completed", userId="u1")
    assert w.messages() == [] and w.steps(journey, "u1") == []  # a draft
    journey = w.journeys.publish("main", "thanks")
    key = journey.latest.definition["steps"][0]["key"]
    w.send(event="Order Completed", userId="u2")
    assert w.steps(journey, "u2") == ["thanks"]
    assert {m["userId"] for m in w.messages()} == {"u2"}
    changed = {
        **definition,
        "steps": [{"name": "Wait", "delay": {"hours": 1}}, {"name": "Thanks", "send": _send()}],
    }
    journey = w.journeys.update("main", "thanks", definition=changed)
    assert [(v.version, v.status) for v in journey.versions] == [(1, "published"), (2, "draft")]
    assert journey.versions[1].definition["steps"][1]["key"] == key
    journey = w.journeys.publish("main", "thanks")
    assert [(v.version, v.status) for v in journey.versions] == [
        (1, "archived"),
        (2, "published"),
    ]
    w.send(event="Order Completed", userId="u3")
    w.later(HOUR)
    sent = w.messages()
    assert {m["userId"] for m in sent} == {"u3"}
    assert {m["traits"][key] for m in sent if m["type"] == "identify"} == {True}


def test_a53_analytics_as_a_share_of_the_previous_step_or_of_the_entry_step(
    world: World,
) -> None:
    w = world
    w.audience("Visitors", "event('Visit').count() >= 1")
    w.audience("Carters", "event('Add to Cart').count() >= 1")
    w.audience("Buyers", "event('Order Completed').count() >= 1")
    journey = w.journey(
        "Funnel",
        {
            "entry": {"audience": "visitors"},
            "steps": [
                {"name": "Carted", "condition": {"audience": "carters"}},
                {"name": "Bought", "condition": {"audience": "buyers"}},
            ],
        },
    )
    w.send_many([{"event": "Visit", "userId": f"u{n}"} for n in range(100)])
    w.send_many([{"event": "Add to Cart", "userId": f"u{n}"} for n in range(50)])
    w.send_many([{"event": "Order Completed", "userId": f"u{n}"} for n in range(25)])
    w.send_many([{"event": "Order Completed", "userId": f"u{n}"} for n in range(60, 70)])
    since, until = int(w.clock.now - DAY), int(w.clock.now + DAY)
    previous = w.journeys.analytics("main", "funnel", since=since, until=until)
    assert previous.entered == 100
    assert [(s.step, s.users, s.percent) for s in previous.steps] == [
        ("carted", 50, 50.0),
        ("bought", 25, 50.0),
    ]
    assert (previous.completed, previous.in_progress, previous.exits) == (25, 75, 0)
    entry = w.journeys.analytics("main", journey.id, since=since, until=until, mode="entry")
    assert [(s.users, s.percent) for s in entry.steps] == [(50, 50.0), (25, 25.0)]
    earlier = w.journeys.analytics("main", "funnel", since=since - DAY_INT, until=since)
    assert earlier.entered == 0 and earlier.steps[0].percent is None
    with pytest.raises(InvalidError):
        w.journeys.analytics("main", "funnel", since=since, until=since + 181 * DAY_INT)


def test_a_paused_version_lets_no_one_in_and_its_members_move_on(world: World) -> None:
    w = world
    w.audience("Buyers", "event('Order Completed').count() >= 1")
    definition: dict[str, Any] = {
        "entry": {"audience": "buyers", "use_historical_data": True},  # u2 is in buyers by v2
        "exclude_previous": True,
        "steps": [{"name": "Wait", "delay": {"days": 1}}, {"name": "Thanks", "send": _send()}],
    }
    journey = w.journey("Thanks", definition)
    w.send(event="Order Completed", userId="u1")
    w.journeys.set_status("main", "thanks", "paused")
    w.send(event="Order Completed", userId="u2")
    assert w.steps(journey, "u2") == []  # no entries while paused
    w.later(DAY)
    assert w.steps(journey, "u1") == ["wait", "thanks"]  # members carry on
    w.journeys.set_status("main", "thanks", "published")
    # Version 2 excludes the users of version 1 (version exclusion, §15.4).
    w.journeys.update("main", "thanks", definition={**definition, "steps": definition["steps"][1:]})
    v2 = w.journeys.publish("main", "thanks")
    w.send_many([{"event": "Order Completed", "userId": u} for u in ("u1", "u2", "u3")])
    with w.engine.connect() as conn:
        members = conn.execute(
            sa.select(schema.engage_journey_members.c.version, sa.func.count())
            .group_by(schema.engage_journey_members.c.version)
            .order_by(schema.engage_journey_members.c.version)
        ).all()
    assert [tuple(m) for m in members] == [(1, 1), (2, 2)]  # u1 in v1; u2 and u3 in v2
    assert w.steps(v2, "u3") == ["thanks"]


def test_a_merged_away_profile_carries_on_as_the_survivor_keeping_the_further_instance(
    world: World,
) -> None:
    w = world
    w.audience("Started", "event('Start').count() >= 1")
    w.audience("Browsed", "event('Browse').count() >= 1")
    both = w.journey(
        "Both",
        {
            "entry": {"audience": "started"},
            "steps": [
                {"name": "Wait", "delay": {"hours": 2}},
                {"name": "Hello", "send": _send()},
            ],
        },
    )
    one = w.journey(
        "One", {"entry": {"audience": "browsed"}, "steps": [{"name": "Hi", "send": _send()}]}
    )
    w.send(event="Start", userId="u1")
    w.later(HOUR)
    by_email = {"anonymousId": "a1", "context": {"traits": {"email": "z@x.com"}}}
    w.send_many([{"event": "Start", **by_email}, {"event": "Browse", **by_email}])
    w.later(HOUR)  # u1's wait is over: u1 is further along in "Both"
    assert w.steps(both, "u1") == ["wait", "hello"]
    sent = [
        m["context"]["personas"]["computation_key"] for m in w.messages() if m["type"] == "track"
    ]
    assert sorted(k[4:8] for k in sent) == ["both", "one_"]  # u1's Hello, a1's Hi
    w.send("identify", userId="u1", traits={"email": "z@x.com"})  # merges the two profiles
    survivor = w.profile("u1")
    with w.engine.connect() as conn:
        rows = conn.execute(
            sa.select(
                schema.engage_journey_members.c.journey_id,
                schema.engage_journey_members.c.profile_id,
            )
        ).all()
    # One instance per journey, both on the survivor: "One" moved, "Both" kept u1's.
    assert sorted((r.journey_id, r.profile_id) for r in rows) == sorted(
        [(both.id, survivor), (one.id, survivor)]
    )
    assert w.steps(both, "u1") == ["wait", "hello"]
    assert w.steps(one, "u1") == ["hi"]
    w.later(2 * HOUR)  # a1's wait would have ended now: it is gone, nothing more is sent
    assert [m for m in w.messages() if m["type"] == "track"] == []


def test_a_deleted_space_takes_its_journeys_versions_members_and_step_log(world: World) -> None:
    w = world
    w.audience("Buyers", "event('Order Completed').count() >= 1")
    w.journey(
        "Thanks", {"entry": {"audience": "buyers"}, "steps": [{"name": "Hi", "send": _send()}]}
    )
    w.send(event="Order Completed", userId="u1")
    tables = (
        schema.engage_journeys,
        schema.engage_journey_versions,
        schema.engage_journey_members,
        schema.engage_journey_log,
    )

    def counts() -> list[int]:
        with w.engine.connect() as conn:
            return [
                conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one() for t in tables
            ]

    assert counts() == [1, 1, 1, 2]  # the entry and Hi
    SpaceStore(WorkspaceStore(w.engine)).delete("main")
    assert counts() == [0, 0, 0, 0]


def test_use_historical_data_lets_in_the_entry_audience_at_publication_and_only_then(
    world: World,
) -> None:
    w = world
    w.audience("Buyers", "event('Order Completed').count() >= 1")
    w.send_many([{"event": "Order Completed", "userId": u} for u in ("u1", "u2")])
    steps = [{"name": "Hi", "send": _send()}]
    later = w.journey("Later", {"entry": {"audience": "buyers"}, "steps": steps})
    backfill = w.journey(
        "Backfill", {"entry": {"audience": "buyers", "use_historical_data": True}, "steps": steps}
    )
    w.later(0)  # the stage's idle work lets the members at publication in
    assert [w.steps(backfill, u) for u in ("u1", "u2")] == [["hi"], ["hi"]]
    assert [w.steps(later, u) for u in ("u1", "u2")] == [[], []]
    with w.engine.connect() as conn:
        pending = conn.execute(sa.select(schema.engage_journey_versions.c.backfill_after))
        assert set(pending.scalars()) == {None}  # the backfill is over
    w.send(event="Order Completed", userId="u1")  # still a member: not a new entry
    w.send(event="Order Completed", userId="u3")  # joins the audience after publication
    assert w.steps(later, "u1") == []
    assert w.steps(later, "u3") == ["hi"] and w.steps(backfill, "u3") == ["hi"]
    hello = [m["userId"] for m in w.messages() if m["type"] == "track"]
    assert Counter(hello) == {"u1": 1, "u2": 1, "u3": 2}
    with pytest.raises(InvalidError) as refused:
        w.journey("Bad", {"entry": {"audience": "buyers", "use_historical_data": "yes"}})
    assert refused.value.field == "definition.entry.use_historical_data"
