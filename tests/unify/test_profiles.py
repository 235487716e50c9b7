"""Profile data on SQLite and PostgreSQL: traits with their sources and times, the event
timeline, metadata, merges and the 14-day retention, from events resolved by the ``Resolver``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.unify import profiles
from headwater.unify.profiles import ProfileData, iso, micros, prune_events
from tests.support.profiles import ProfileSpace
from tests.support.unify import DAY, START


def test_null_removes_a_trait_and_empty_string_is_kept_A_UE_22(engine: Engine) -> None:
    space = ProfileSpace(engine)
    space.send("identify", userId="u1", traits={"trait1": "x", "trait2": "y"})
    user = space.user("user_id", "u1")
    space.later(1)
    space.send("identify", userId="u1", traits={"trait1": None, "trait2": ""})
    assert space.values(user) == {"trait2": ""}
    assert space.changed[user] == {"trait1": None, "trait2": ""}


def test_latest_write_wins_with_its_source_and_time_A_UE_23(engine: Engine) -> None:
    space = ProfileSpace(engine)
    space.send("identify", "web", userId="u1", traits={"first_name": "A"})
    space.later(60)
    space.send("identify", "ios", userId="u1", traits={"first_name": "B"})
    trait = space.data.traits(space.user("user_id", "u1"))["first_name"]
    assert trait.value == "B"
    assert trait.source_id == "ios"
    assert trait.updated_at == micros(datetime.fromtimestamp(START + 60, UTC))


def test_record_returns_only_what_changed(engine: Engine) -> None:
    space = ProfileSpace(engine)
    space.send("identify", userId="u1", traits={"plan": "pro", "seats": 3})
    user = space.user("user_id", "u1")
    assert space.changed[user] == {"plan": "pro", "seats": 3}
    space.later(1)
    space.send("identify", userId="u1", traits={"plan": "pro", "seats": 4, "gone": None})
    assert space.changed[user] == {"seats": 4}  # removing an absent trait changes nothing
    space.later(1)
    space.send("identify", userId="u1", traits={"seats": 4.0})  # a float is another value
    assert space.changed[user] == {"seats": 4.0}


def test_an_older_event_arriving_late_does_not_overwrite_or_revive(engine: Engine) -> None:
    space = ProfileSpace(engine)
    space.send("identify", userId="u1", traits={"plan": "old", "city": "Oslo"})
    user = space.user("user_id", "u1")
    late = space.event("identify", userId="u1", traits={"plan": "older", "city": "Rome"})
    space.later(10)
    space.send("identify", userId="u1", traits={"plan": "new", "city": None})
    space.resolve(late)  # its timestamp is before the last identify's
    assert space.changed == {}
    assert space.values(user) == {"plan": "new"}


def test_recording_the_same_event_again_changes_nothing(engine: Engine) -> None:
    space = ProfileSpace(engine)
    event = space.event("track", userId="u1", event="Signed Up", context={"traits": {"a": 1}})
    resolution = space.resolve(event)
    user = space.user("user_id", "u1")
    before = (space.data.traits(user), space.data.events(user), space.data.metadata(user))
    with write_transaction(engine) as conn:
        assert space.data.record(conn, user, "users", event, "src") == {}
    assert (space.data.traits(user), space.data.events(user), space.data.metadata(user)) == before
    assert resolution.user == user
    assert len(before[1]) == 1


def test_nested_objects_are_stored_as_values(engine: Engine) -> None:
    space = ProfileSpace(engine)
    address = {"city": "Oslo", "lines": ["a", {"b": None}]}
    space.send("identify", userId="u1", traits={"address": address})
    assert space.values(space.user("user_id", "u1")) == {"address": address}


def test_context_traits_of_any_call_and_identify_traits_over_them(engine: Engine) -> None:
    space = ProfileSpace(engine)
    space.send("track", userId="u1", context={"traits": {"a": 1, "b": 1}})
    space.later(1)
    space.send("identify", userId="u1", traits={"b": 2}, context={"traits": {"b": 3, "c": 3}})
    assert space.values(space.user("user_id", "u1")) == {"a": 1, "b": 2, "c": 3}


def test_group_traits_go_to_the_account_profile(engine: Engine) -> None:
    space = ProfileSpace(engine)
    resolution = space.send(
        "group", userId="u1", groupId="g1", traits={"industry": "ships"},
        context={"traits": {"email": "a@b.com"}},
    )  # fmt: skip
    assert resolution.user is not None and resolution.account is not None
    assert space.values(resolution.account) == {"industry": "ships"}
    assert space.values(resolution.user) == {"email": "a@b.com"}
    assert space.data.events(resolution.user) == []  # a group call is not on the timeline
    meta = space.data.metadata(resolution.account)
    assert meta is not None and meta.collection == "accounts"


def test_timeline_holds_track_page_and_screen_never_identify_A_UE_24(engine: Engine) -> None:
    space = ProfileSpace(engine)
    space.send("identify", userId="u1", traits={"a": 1})
    space.later(1)
    space.send("page", userId="u1", name="Pricing", properties={"url": "https://x/pricing"})
    space.later(1)
    space.send("screen", userId="u1", name="Home")
    space.later(1)
    space.send("track", userId="u1", event="Order Completed", properties={"total": 3})
    user = space.user("user_id", "u1")
    events = space.data.events(user)
    assert [e.body["event"] for e in events] == ["Order Completed", "Screen Viewed", "Page Viewed"]
    page = events[2].body
    assert page["properties"] == {"url": "https://x/pricing", "name": "Pricing"}
    assert page["external_ids"] == [
        {"collection": "users", "type": "user_id", "id": "u1", "encoding": "none"}
    ]
    assert [e.message_id for e in space.data.events(user, sort="asc")] == [
        "msg-2",
        "msg-3",
        "msg-4",
    ]
    assert [e.message_id for e in space.data.events(user, include=["Page Viewed"])] == ["msg-2"]
    assert [e.message_id for e in space.data.events(user, exclude=["Page Viewed"])] == [
        "msg-4",
        "msg-3",
    ]
    third = datetime.fromtimestamp(START + 3, UTC)
    assert [e.message_id for e in space.data.events(user, start=third)] == ["msg-4"]
    assert [e.message_id for e in space.data.events(user, end=third)] == ["msg-3", "msg-2"]
    _, second = space.data.events(user, limit=2)
    assert space.data.events(user, cursor=(second.at_ns, second.message_id)) == events[1:]


def test_events_are_kept_fourteen_days_by_their_timestamp(engine: Engine) -> None:
    space = ProfileSpace(engine, now=START + 20 * DAY)
    space.send("track", userId="u1", event="Old")  # at START: 20 days before "now"
    space.later(10 * DAY)
    space.send("track", userId="u1", event="Recent")
    user = space.user("user_id", "u1")
    assert [e.body["event"] for e in space.data.events(user)] == ["Recent"]
    e = schema.unify_profile_events
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(e)).scalar() == 2
    assert space.data.prune() == 1
    assert prune_events(engine, START + 40 * DAY) == 1
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(e)).scalar() == 0


def test_merge_keeps_each_traits_latest_value_and_moves_events_A_UE_18(engine: Engine) -> None:
    space = ProfileSpace(engine)
    space.send("identify", "web", anonymousId="a1", traits={"plan": "free", "city": "Oslo"})
    first = space.user("anonymous_id", "a1")
    space.later(10)
    space.send("identify", "ios", anonymousId="a2", traits={"plan": "pro", "age": 30})
    second = space.user("anonymous_id", "a2")
    space.later(10)
    space.send("track", anonymousId="a2", event="Viewed")
    bystander = space.send("identify", anonymousId="a3", traits={"plan": "x"}).user
    assert bystander is not None
    space.later(10)
    space.send("identify", anonymousId="a1", traits={"email": "e@x.com"})
    space.later(10)
    space.send("track", anonymousId="a2", traits={}, context={"traits": {"email": "e@x.com"}})
    assert space.user("anonymous_id", "a2") == first  # a2's profile merged into a1's
    assert space.values(first) == {"plan": "pro", "city": "Oslo", "age": 30, "email": "e@x.com"}
    assert space.changed[first] == {"plan": "pro", "age": 30}
    assert space.data.traits(first)["plan"].source_id == "ios"
    assert space.data.traits(second) == {}
    assert [e.body["event"] for e in space.data.events(first)] == ["Something Happened", "Viewed"]
    assert space.data.events(second) == []
    meta = space.data.metadata(first)
    assert meta is not None
    assert (meta.first_message_id, meta.last_message_id) == ("msg-1", "msg-6")
    assert iso(meta.created_at) == "2025-01-01T00:00:00.000Z"
    assert space.data.metadata(second) is None
    assert space.values(bystander) == {"plan": "x"}


def test_merge_carries_a_newer_removal(engine: Engine) -> None:
    data = ProfileData(engine, "spa_x")
    with write_transaction(engine) as conn:
        data.record(conn, "use_a", "users", _identify("m1", 1, {"k": "v"}), "s")
        data.record(conn, "use_b", "users", _identify("m2", 2, {"k": "w"}), "s")
        data.record(conn, "use_b", "users", _identify("m3", 3, {"k": None}), "s")
        assert data.merge(conn, "use_b", "use_a") == {"k": None}
    assert data.traits("use_a") == {}
    assert [p for p, _ in data.profiles("users")] == ["use_a"]


def test_spaces_do_not_share_data(engine: Engine) -> None:
    one, other = ProfileData(engine, "spa_1"), ProfileData(engine, "spa_2")
    with write_transaction(engine) as conn:
        one.record(conn, "use_a", "users", _identify("m1", 1, {"k": "v"}), "s")
    assert other.traits("use_a") == {}
    assert other.metadata("use_a") is None


def test_traits_page_in_byte_order(engine: Engine) -> None:
    data = ProfileData(engine, "spa_x")
    keys = {"b": 1, "B": 2, "a": 3, "_": 4, "3_x": 5, "é": 6, "Campaign Name": 7}
    with write_transaction(engine) as conn:
        data.record(conn, "use_a", "users", _identify("m1", 1, keys), "s")
    expected = sorted(keys, key=lambda k: k.encode())
    assert list(data.traits("use_a")) == expected
    assert list(data.traits("use_a", after="B", limit=2)) == ["B", "Campaign Name"]
    assert list(data.traits("use_a", keys=["a", "zz"])) == ["a"]
    assert data.traits("use_a", trait_class="audience") == {}


def _identify(message_id: str, second: int, traits: dict[str, Any]) -> dict[str, Any]:
    at = datetime.fromtimestamp(START + second, UTC).isoformat()
    return {"type": "identify", "messageId": message_id, "timestamp": at, "traits": traits}


def test_pruning_goes_in_batches(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profiles, "PRUNE_BATCH", 2)
    space = ProfileSpace(engine, now=START + 20 * DAY)
    for n in range(5):
        space.send("track", userId=f"u{n % 2}", event=f"Old {n}")
    space.later(10 * DAY)
    space.send("track", userId="u0", event="Recent")
    assert prune_events(engine, START + 20 * DAY) == 5
    assert [e.body["event"] for e in space.data.events(space.user("user_id", "u0"))] == ["Recent"]


def test_a_timestamp_after_received_at_counts_as_received_at(engine: Engine) -> None:
    """A device clock years ahead must not hold a trait against the writes that follow."""
    space = ProfileSpace(engine)
    space.send("identify", userId="u1", traits={"plan": "a"}, timestamp="2035-01-01T00:00:00Z")
    user = space.user("user_id", "u1")
    assert space.data.traits(user)["plan"].updated_at == micros(datetime.fromtimestamp(START, UTC))
    space.later(1)
    space.send("identify", userId="u1", traits={"plan": "b"})
    assert space.values(user) == {"plan": "b"}
