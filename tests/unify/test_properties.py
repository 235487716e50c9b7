"""Properties of resolution over random event sequences (hypothesis).

Whatever the events: no profile holds two values of a merge-protected type, or more values of a
type than its limit allows over its period, or more than the caps (identifier values, merges);
every identifier value is on exactly one canonical profile and none is ever lost; a resolved
event's profile holds one of its identifiers; and replaying the sequence gives the same graph
(into a fresh graph: the same; into the same graph: no change).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.unify.graph import AddIdentifier
from headwater.unify.identifiers import extract
from headwater.unify.settings import (
    SUGGESTED_BLOCKED,
    IdentifierSetting,
    IdentitySettings,
)
from tests.support.unify import DAY, Space


def _with(base: IdentitySettings, *changes: IdentifierSetting) -> IdentitySettings:
    for change in changes:
        base = base.with_identifier(change)
    return base


SETTINGS = {
    "default": IdentitySettings(),
    # Tight limits and caps, so that demotions, refusals and windows happen often.
    "tight": _with(
        IdentitySettings(max_merges=3, max_mappings=6),
        IdentifierSetting(type="user_id", limit=1, priority=1, blocked=SUGGESTED_BLOCKED),
        IdentifierSetting(type="email", limit=1, priority=2),
        IdentifierSetting(type="anonymous_id", limit=2, period="weekly"),
        IdentifierSetting(type="ios.id", limit=1, period="monthly"),
        IdentifierSetting(type="phone", key="phone_number", limit=1),
    ),
    # Limits high enough that profiles merge freely, into the merge cap.
    "merging": _with(
        IdentitySettings(max_merges=2),
        IdentifierSetting(type="user_id", limit=50, priority=1),
        IdentifierSetting(type="email", limit=50, priority=2),
        IdentifierSetting(type="anonymous_id", limit=50),
        IdentifierSetting(type="android.id", limit=50),
        IdentifierSetting(type="ios.id", limit=50),
    ),
    "loose": _with(
        IdentitySettings(max_merges=2, max_mappings=9),
        IdentifierSetting(type="user_id", limit=2, priority=1),
        IdentifierSetting(type="email", limit=3, period="monthly", priority=4),
        IdentifierSetting(type="anonymous_id", limit=50, priority=2),
        IdentifierSetting(type="group_id", limit=2, collection="accounts", priority=3),
    ),
}


# What an event may carry: (where, value). An event carries one to three of these (a later
# userId, anonymousId or device replaces an earlier one), so most events hold few identifiers,
# profiles stay apart until an event bridges them, and merges pile up.
FACTS = [
    *(("userId", v) for v in ("u0", "u1", "u2", "null")),
    *(("anonymousId", f"a{n}") for n in range(6)),
    *((place, v) for place in ("traits", "context.traits", "properties") for v in ("e0", "e1")),
    *((f"device.{kind}", f"d{n}") for kind in ("ios", "android") for n in range(3)),
    *(("externalIds", v) for v in ("p0", "p1")),
]


@dataclass
class Step:
    kind: str
    facts: list[tuple[str, str]]
    group: str
    gap: float
    repeat: int | None  # send an earlier event again (its index modulo the count so far)


steps = st.builds(
    Step,
    kind=st.sampled_from(["track", "identify", "page", "group"]),
    facts=st.lists(st.sampled_from(FACTS), min_size=1, max_size=3),
    group=st.sampled_from(["g0", "g1", "g2"]),
    gap=st.sampled_from([0.0, 3600.0, DAY, 4 * DAY, 20 * DAY]),
    repeat=st.sampled_from([None, None, None, None, None, 0, 1, 2, 3, 5, 8, 13]),
)


def _event(space: Space, step: Step) -> dict[str, Any]:
    fields: dict[str, Any] = {"context": {}}
    context = fields["context"]
    for where, value in step.facts:
        if where in ("userId", "anonymousId"):
            fields[where] = value
        elif where == "context.traits":
            context.setdefault("traits", {})["email"] = value
        elif where in ("traits", "properties"):
            fields.setdefault(where, {})["email"] = value
        elif where.startswith("device."):
            context["device"] = {"type": where.removeprefix("device."), "id": value}
        else:
            context.setdefault("externalIds", []).append(
                {"id": value, "type": "phone", "collection": "users", "encoding": "none"}
            )
    if step.kind == "group":
        fields["groupId"] = step.group
    return space.event(step.kind, **fields)


def _check(space: Space, rules: IdentitySettings) -> None:
    graph = space.graph
    for collection in ("users", "accounts"):
        for profile_id in graph.profiles(collection):
            record = graph.profile(profile_id)
            assert record.mappings <= rules.max_mappings
            assert record.merges <= rules.max_merges
            rows = graph.identifiers(profile_id)
            assert record.mappings == len(rows)
            for row in rows:
                assert graph.find(collection, row.type, row.value) == profile_id
            for setting in rules.identifiers:
                values = [r for r in rows if r.type == setting.type]
                if setting.merge_protected:
                    assert len(values) <= 1, (profile_id, values)
                since = float("-inf") if setting.window is None else space.at - setting.window
                recent = [r for r in values if r.first_seen > since]
                assert len(recent) <= setting.limit, (profile_id, setting, values)


@settings(max_examples=300, deadline=None, database=None)
@given(name=st.sampled_from(sorted(SETTINGS)), sequence=st.lists(steps, min_size=20, max_size=60))
def test_random_sequences_keep_every_rule(name: str, sequence: list[Step]) -> None:
    rules = SETTINGS[name]
    space = Space(rules, seed=11)
    added: set[tuple[str, str, str]] = set()
    for step in sequence:
        space.later(step.gap)
        if step.repeat is not None and space.history:
            event, source = space.history[step.repeat % len(space.history)]
            assert space.resolver.resolve(event, source).status == "duplicate"
            continue
        event = _event(space, step)
        done = space.resolve(event)
        for change in done.changes:
            if isinstance(change, AddIdentifier):
                added.add((change.collection, change.type, change.value))
        if done.user is not None:
            carried = {(i.type, i.value) for i in extract(event, rules).identifiers}
            held = {(r.type, r.value) for r in space.graph.identifiers(done.user)}
            assert carried & held
        _check(space, rules)
    for collection, type_, value in added:
        assert space.graph.find(collection, type_, value) is not None

    replay = Space(rules, seed=11)
    replay.at = space.at
    for event, source in space.history:
        replay.resolve(event, source)
    assert replay.graph.snapshot() == space.graph.snapshot()

    fresh_ids = Space(rules, seed=None)
    for event, source in space.history:
        fresh_ids.resolve(event, source)
    assert fresh_ids.graph.shape() == space.graph.shape()

    before = space.graph.snapshot()
    for event, source in space.history:
        assert space.resolver.resolve(event, source).status == "duplicate"
    assert space.graph.snapshot() == before
