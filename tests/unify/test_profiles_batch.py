"""``ProfileData.batch`` (how the identity stage writes a pass) on SQLite and PostgreSQL: the
buffered timeline entries and metadata end up exactly as one event at a time leaves them, a
merge inside the batch moves what the batch recorded before it, and a batch whose transaction
rolls back leaves nothing, in the tables or in the buffer."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.engine import Engine

from headwater.store.database import write_transaction
from headwater.unify.graph import MergeProfiles
from headwater.unify.profiles import Metadata, ProfileData, TimelineEvent, Trait
from headwater.unify.resolution import Resolution
from tests.support.unify import START, Space

Resolved = tuple[Resolution, dict[str, Any], str]
Snapshot = dict[str, tuple[Metadata, dict[str, Trait], list[TimelineEvent]]]


def _data(engine: Engine, space_id: str) -> ProfileData:
    return ProfileData(engine, space_id, clock=lambda: START + 3_600)


def _snapshot(data: ProfileData) -> Snapshot:
    """Everything the Profile API can read of the space's profiles."""
    found: Snapshot = {}
    for collection in ("users", "accounts"):
        for profile, meta in data.profiles(collection, limit=1_000):
            found[profile] = (meta, data.traits(profile), data.events(profile, limit=1_000))
    return found


def _history() -> list[Resolved]:
    """Visitors browsing, out-of-order timestamps, a repeated event, then sign-ins that merge
    one visitor's profile into another's, and events after the merges."""
    space = Space()
    out: list[Resolved] = []

    def send(type_: str, source_id: str = "web", **fields: Any) -> None:
        event = space.event(type_, **fields)
        out.append((space.resolve(event, source_id), event, source_id))

    send("page", anonymousId="a1", name="Home")
    send("track", anonymousId="a1", event="Viewed", context={"traits": {"plan": "free"}})
    space.later(10)
    send("page", "ios", anonymousId="a2", name="Pricing")
    send("identify", "ios", anonymousId="a2", traits={"plan": "pro", "age": 30})
    space.later(-5)  # an event older than a2's first: a2's created_at and first message move
    send("track", anonymousId="a2", event="Compared")
    space.later(20)
    send("identify", anonymousId="a1", traits={"email": "e@x.com", "age": None})
    event = space.event("track", anonymousId="a1", event="Viewed")
    out.append((space.resolve(event, "web"), event, "web"))
    out.append((space.resolve(dict(event), "web"), event, "web"))  # the graph's duplicate
    space.later(10)
    send("track", anonymousId="a2", context={"traits": {"email": "e@x.com"}})  # a2 → a1
    send("page", anonymousId="a2", name="After")
    send("group", userId="u1", anonymousId="a3", groupId="acct-1", traits={"tier": "gold"})
    space.later(-60)
    send("track", anonymousId="a3", event="Late", context={"traits": {"email": "e@x.com"}})
    send("track", anonymousId="a1", event="Last")
    assert sum(isinstance(c, MergeProfiles) for r, _, _ in out for c in r.changes) == 2
    return out


def _apply(data: ProfileData, conn: Any, history: list[Resolved]) -> list[dict[str, Any]]:
    changed: list[dict[str, Any]] = []
    for resolution, event, source_id in history:
        if resolution.status in ("resolved", "unresolved"):
            changed.append(data.apply(conn, resolution, event, source_id))
    return changed


def test_a_batch_with_merges_in_it_equals_one_event_at_a_time(engine: Engine) -> None:
    """A merge in the middle of a batch sees the batch's earlier timeline entries and metadata:
    the result (and what each event reports as changed) is the one-by-one result."""
    history = _history()
    one = _data(engine, "spa_one")
    one_changed: list[dict[str, Any]] = []
    for item in history:
        with write_transaction(engine) as conn:
            one_changed += _apply(one, conn, [item])
    batched = _data(engine, "spa_batch")
    with write_transaction(engine) as conn, batched.batch(conn):
        batched_changed = _apply(batched, conn, history)

    expected = _snapshot(one)
    assert len(expected) == 2  # the survivor of the three visitors, the account
    assert _snapshot(batched) == expected
    assert batched_changed == one_changed
    survivor = history[0][0].user
    assert survivor is not None
    meta, _, events = expected[survivor]
    # the merged-away visitors' timelines moved, the batch's repeated event is there once
    assert sorted(e.message_id for e in events) == sorted(
        {str(e["messageId"]) for _, e, _ in history if e["type"] in ("track", "page")}
    )
    # the earliest event (Late), and of the two latest (at the same time) the first
    assert (meta.first_message_id, meta.last_message_id) == ("msg-11", "msg-8")


def test_a_batch_whose_transaction_rolls_back_leaves_nothing_behind(engine: Engine) -> None:
    """Neither rows in the tables nor rows in the buffer: the next batch writes only its own."""
    history = _history()
    data = _data(engine, "spa_x")
    with (
        pytest.raises(RuntimeError, match="inside"),
        write_transaction(engine) as conn,
        data.batch(conn),
    ):
        _apply(data, conn, history)
        raise RuntimeError("a failure inside the batch")
    assert _snapshot(data) == {}
    with pytest.raises(RuntimeError, match="after"), write_transaction(engine) as conn:
        with data.batch(conn):
            _apply(data, conn, history)
        raise RuntimeError("a failure after the batch wrote, before the commit")
    assert _snapshot(data) == {}

    last = history[-1]
    with write_transaction(engine) as conn, data.batch(conn):
        _apply(data, conn, [last])
    reference = _data(engine, "spa_reference")
    with write_transaction(engine) as conn:
        _apply(reference, conn, [last])
    assert _snapshot(data) == _snapshot(reference) != {}


def test_batches_do_not_nest(engine: Engine) -> None:
    data = _data(engine, "spa_x")
    with (
        write_transaction(engine) as conn,
        data.batch(conn),
        pytest.raises(RuntimeError, match="already open"),
        data.batch(conn),
    ):
        pass
