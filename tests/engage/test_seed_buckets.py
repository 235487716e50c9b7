"""Seeding a new real-time computation's buckets from history: ``batch.compile_buckets`` over
the Profiles Sync tables real identity resolution and a real warehouse sync wrote (DuckDB and
PostgreSQL), combined with the buckets real time adds from the cut on, equals real time over
every event."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from headwater.engage import batch
from headwater.engage.language import parse
from headwater.engage.realtime import (
    FOLDED,
    HOUR,
    Computation,
    Plan,
    ProfileState,
    _combine,
    _Vector,
)
from headwater.store.database import database_url, open_engine
from headwater.store.migrations import migrate
from headwater.timestamps import parse_timestamp
from headwater.warehouse.connect import loader_for
from headwater.warehouse.naming import naming_for
from tests.engage.batch_world import SCHEMA, World
from tests.engage.test_batch import _definitions, _events
from tests.support.postgres import pg_settings


def _world(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> World:
    engine = open_engine(database_url(tmp_path, None))
    migrate(engine)
    settings = {} if kind == "duckdb" else pg_settings(request.getfixturevalue("pg_database"))
    return World.make(tmp_path, engine, kind, settings)


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def space(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    """A space loading into a DuckDB or PostgreSQL warehouse."""
    world = _world(request, tmp_path, request.param)
    yield world
    world.engine.dispose()


# --- running the seed ---------------------------------------------------------------------------


def _seed(
    world: World, vector: _Vector, cut: float, ignore_sources: tuple[str, ...] = ()
) -> dict[str, dict[int, Any]]:
    """A vector's buckets from the events received before ``cut``, at the world's now."""
    loader = loader_for(world.warehouses.require(world.warehouse.id), world.tmp)
    try:
        columns = loader.columns(SCHEMA)
    finally:
        loader.close()
    dialect: batch.Dialect = "duckdb" if world.kind == "duckdb" else "postgresql"
    sql = batch.compile_buckets(
        vector.reduce,
        family=vector.family,
        keep=vector.keep,
        folds=vector.folds,
        received_before=cut,
        dialect=dialect,
        schema=SCHEMA,
        naming=naming_for("duckdb" if world.kind == "duckdb" else "postgres"),
        columns=columns,
        now=world.now.timestamp(),
        ignore_sources=ignore_sources,
    )
    return batch.buckets(world.rows(sql), vector.family)


def _received(event: Mapping[str, Any]) -> float:
    parsed = parse_timestamp(event.get("receivedAt"))
    assert parsed is not None
    return parsed.timestamp()


def _live(world: World, plan: Plan, since: float | None) -> dict[str, ProfileState]:
    """Real time: the events received at or after ``since`` (all with None) applied, in the
    order they arrived, to their profiles' states at the world's now."""
    now = world.now.timestamp()
    states: dict[str, ProfileState] = {}
    for source_id, event, resolution in world.sent:
        if resolution.user is None or (since is not None and _received(event) < since):
            continue
        state = states.setdefault(world.canonical(resolution.user), ProfileState())
        plan.apply_event(state, event, source_id, now)
    return states


def _seeded(
    world: World, plan: Plan, cut: float, seed_cut: float | None = None
) -> dict[str, ProfileState]:
    """What the stage will hold: real time from the cut on, the seed combined under it
    (``seed_cut``: a seed cut elsewhere, the mutation the test must catch)."""
    states = _live(world, plan, cut)
    for vector in plan._vectors.values():
        for profile, seeded in _seed(world, vector, cut if seed_cut is None else seed_cut).items():
            mine = states.setdefault(profile, ProfileState()).v.setdefault(vector.key, {})
            for hour, bucket in seeded.items():
                mine[hour] = _combine(vector.family, bucket, mine.get(hour))
    return states


def _close(a: Any, b: Any) -> bool:
    """Equal, floats within 1e-9 (SQL adds in another order), at every depth."""
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
            return bool(a == b)
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def _differences(
    want: Mapping[str, ProfileState], got: Mapping[str, ProfileState]
) -> list[tuple[str, str]]:
    """(profile, vector) pairs whose buckets differ."""
    found: list[tuple[str, str]] = []
    for profile in sorted(set(want) | set(got)):
        a = want[profile].v if profile in want else {}
        b = got[profile].v if profile in got else {}
        for key in sorted(set(a) | set(b)):
            if not _close(a.get(key, {}), b.get(key, {})):
                found.append((profile, key))
    return found


def _values(
    plan: Plan, states: Mapping[str, ProfileState], profiles: set[str], now: float
) -> dict[str, Any]:
    """Every computation's value on each profile at ``now``."""
    values: dict[str, Any] = {}
    for profile in profiles:
        state = states.get(profile) or ProfileState()
        plan.evaluate(state, set(), set(), now, lambda: True, everything=True)
        values[profile] = dict(state.c)
    return values


# --- the differential test ----------------------------------------------------------------------


# Every bucket type, windowed (kept apart), unwindowed (folded) and both, whatever the draw.
EVERY_FAMILY = [
    Computation(f"f{i}", f"f{i}", "trait", parse(text, purpose="trait"))
    for i, text in enumerate(
        (
            "event('Viewed').within(7 days).count()",
            "event('Viewed').count()",
            "event('Order Completed').where(property('price') > 10).sum(property('price'))",
            "event('Order Completed').within(36 hours).avg(property('amount'))",
            "event('Logged In').within(30 days).min(property('price'))",
            "event('Logged In').max(property('category') as string)",
            "event('Viewed').within(1 days).mode(property('tags'), 1)",
            "event('Viewed').unique(property('category'))",
            "event('Viewed').within(90 days).unique(property('category')).count()",
            "event('Order Completed').first(property('category'))",
            "event('Logged In').within(7 days).last(property('price'))",
        )
    )
]


@pytest.mark.parametrize(
    ("kind", "seed", "cut_hours", "shift", "history"),
    [
        ("duckdb", 1, 6.0, -24 * HOUR, 1000),  # a cut inside the last day
        # exactly when every event older than a day arrived: those are real time's, and a
        # seed that took them too (received at or before) counts them twice
        ("duckdb", 2, 24.0, 1.0, 0),
        ("duckdb", 3, 0.0, -24 * HOUR, 1000),  # everything before now is history
        pytest.param("postgres", 4, 24.0, 1.0, 0, marks=pytest.mark.postgres),
        pytest.param("postgres", 5, 3.5, -24 * HOUR, 1000, marks=pytest.mark.postgres),
    ],
)
def test_seed_and_real_time_equal_real_time_over_every_event(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    kind: str,
    seed: int,
    cut_hours: float,
    shift: float,
    history: int,
) -> None:
    """Random users, merges and events over 120 days, random real-time definitions (the
    batch differential test's): the seed of every vector from the events received before the
    cut, combined with real time over the events received from the cut on, gives every
    profile the buckets — and so the values — real time gives it over all the events. The
    same with the cut moved (``shift`` seconds) does not (the test can fail)."""
    world = _world(request, tmp_path, kind)
    rng = random.Random(seed)
    plan = Plan([*_definitions(rng), *EVERY_FAMILY])
    _events(world, rng)
    world.sync()
    now = world.now.timestamp()
    cut = now - cut_hours * HOUR
    families = {v.family for v in plan._vectors.values()}
    assert families == set(batch.FAMILIES)  # the definitions cover every bucket type
    assert {(v.keep is None, v.folds) for v in plan._vectors.values()} >= {
        (True, True),
        (False, False),
    }
    everything = _live(world, plan, None)
    seeded = _seeded(world, plan, cut)
    before = sum(1 for _, e, r in world.sent if r.user is not None and _received(e) < cut)
    assert before >= history  # the seed carries most of it (or, at 24 h, none)
    assert sum(len(b) for s in everything.values() for b in s.v.values()) > 1000
    assert _differences(everything, seeded) == []
    profiles = set(everything) | set(seeded)
    want, got = _values(plan, everything, profiles, now), _values(plan, seeded, profiles, now)
    assert sum(len(v) for v in want.values()) > 500
    for profile, values in want.items():
        assert _close(values, got[profile]), profile
    assert _differences(everything, _seeded(world, plan, cut, cut + shift)) != []
    world.engine.dispose()


# --- each family ----------------------------------------------------------------------------------


U1 = {"userId": "u1"}
U2 = {"userId": "u2"}


def _vector(*texts: str) -> _Vector:
    """The one vector the traits' definitions share."""
    plan = Plan(
        Computation(f"c{i}", f"c{i}", "trait", parse(text, purpose="trait"))
        for i, text in enumerate(texts)
    )
    (vector,) = plan._vectors.values()
    return vector


def _hour(world: World, hours_ago: float) -> int:
    return math.floor((world.now.timestamp() - hours_ago * HOUR) / HOUR)


def test_counts_fold_or_drop_what_every_window_left(space: World) -> None:
    """Hourly counts; older than the longest window: folded when an unwindowed reader counts
    them, else dropped; another source excluded; a merged visitor's events count for the
    profile they belong to now."""
    first = space.track(U1, "Viewed", 1)
    space.track(U1, "Viewed", 1.2)  # 11:30 and 11:18: one hour
    space.track(U1, "Viewed", 30)
    space.track(U1, "Viewed", 200)
    space.track(U1, "Viewed", 300)
    space.track(U1, "Viewed", 2, source="ios")
    space.track({"anonymousId": "v1"}, "Viewed", 5)
    space.identify({"anonymousId": "v1", "userId": "u1"}, 4)
    b = space.profile(space.track(U2, "Viewed", 400))
    space.track(U2, "Other", 1)
    space.sync()
    a = space.profile(first)  # after the merge
    now = space.now.timestamp()
    ios = space.sources["ios"]
    both = _vector(
        f"event('Viewed').sources(exclude: '{ios}').within(7 days).count()",
        f"event('Viewed').sources(exclude: '{ios}').count()",
    )
    assert (both.keep, both.folds) == (168, True)
    h = _hour(space, 0)
    assert _seed(space, both, now + 1) == {
        a: {h - 1: 2, h - 5: 1, h - 30: 1, FOLDED: 2},
        b: {FOLDED: 1},
    }
    windowed = _vector(f"event('Viewed').sources(exclude: '{ios}').within(7 days).count()")
    assert _seed(space, windowed, now + 1) == {a: {h - 1: 2, h - 5: 1, h - 30: 1}}
    everything = _vector("event('Viewed').count()")
    assert (everything.keep, everything.folds) == (None, True)
    assert _seed(space, everything, now + 1) == {a: {FOLDED: 7}, b: {FOLDED: 1}}
    # events received from the cut on are real time's: strictly before it (every event older
    # than a day arrived exactly 24 h ago in this world)
    assert _seed(space, windowed, now - 1.5 * HOUR) == {a: {h - 5: 1, h - 30: 1}}
    assert _seed(space, windowed, now - 24 * HOUR) == {}
    assert _seed(space, everything, now - 24 * HOUR) == {}
    assert _seed(space, windowed, now - 24 * HOUR + 0.001) == {a: {h - 30: 1}}
    assert _seed(space, everything, now - 24 * HOUR + 0.001) == {a: {FOLDED: 3}, b: {FOLDED: 1}}
    # Engage's own source computes nothing
    assert _seed(space, everything, now + 1, ignore_sources=(space.sources["web"],)) == {
        a: {FOLDED: 1}
    }


def test_sums_and_extremes(space: World) -> None:
    """A sum bucket is [total, n] of the values that are numbers (numeric text too, never a
    bool); min/max as numbers, or as text ordered by code point."""
    a = space.profile(space.track(U1, "Order", 1, price=10.0, category="shoes"))
    space.track(U1, "Order", 1.1, price="2.5", category="Bags")
    space.track(U1, "Order", 1.2, price="n/a", category="bags")
    space.track(U1, "Order", 1.3, category="hats")
    space.track(U1, "Order", 50, price=4.0, category="Zebra")
    space.sync()
    now = space.now.timestamp()
    h = _hour(space, 0)
    total = _vector("event('Order').within(1 days).sum(property('price'))")
    assert total.family == "sum"
    assert _seed(space, total, now) == {a: {h - 1: [12.5, 2]}}
    assert _seed(space, _vector("event('Order').avg(property('price'))"), now) == {
        a: {FOLDED: [16.5, 3]}
    }
    low = _seed(space, _vector("event('Order').within(3 days).min(property('price'))"), now)
    assert low == {a: {h - 1: 2.5, h - 50: 4.0}}
    assert type(low[a][h - 1]) is float
    high = _vector("event('Order').within(3 days).max(property('category') as string)")
    assert _seed(space, high, now) == {a: {h - 1: "shoes", h - 50: "Zebra"}}
    lowest = _vector("event('Order').within(3 days).min(property('category') as string)")
    assert _seed(space, lowest, now) == {a: {h - 1: "Bags", h - 50: "Zebra"}}


def test_most_frequent_and_unique_values_count_each_element(space: World) -> None:
    """mode/unique buckets are {value: n}: an array property adds each element, a number
    its text, an empty array nothing; ``mode(… as array)`` counts the array whole."""
    a = space.profile(space.track(U1, "Tagged", 1, tags=["red", "blue"], size=2.0))
    space.track(U1, "Tagged", 1.1, tags=["red", "red"], size=2.0)
    space.track(U1, "Tagged", 1.2, tags=[], size=3.5)
    space.track(U1, "Tagged", 1.3, tags="gold")
    space.track(U1, "Tagged", 90, tags=["teal"])
    space.sync()
    now = space.now.timestamp()
    h = _hour(space, 0)
    unique = _vector(
        "event('Tagged').within(1 days).unique(property('tags'))",
        "event('Tagged').unique(property('tags')).count()",
    )
    assert unique.family == "unique"
    assert _seed(space, unique, now) == {
        a: {h - 1: {"red": 3, "blue": 1, "gold": 1}, FOLDED: {"teal": 1}}
    }
    mode = _vector("event('Tagged').within(1 days).mode(property('size'), 1)")
    assert _seed(space, mode, now) == {a: {h - 1: {"2": 2, "3.5": 1}}}
    whole = _vector("event('Tagged').within(1 days).mode(property('tags') as array, 1)")
    assert _seed(space, whole, now) == {
        a: {h - 1: {'["red","blue"]': 1, '["red","red"]': 1, "[]": 1, "gold": 1}}
    }


def test_first_and_last_keep_the_time_and_value(space: World) -> None:
    """first/last buckets are [at, value], at the event's time in seconds; the value as the
    event held it (a float stays a float)."""
    a = space.profile(space.track(U1, "Order", 1.1, price=10.0, category="shoes"))
    space.track(U1, "Order", 1.3, price=12.5, category="bags")
    space.track(U1, "Order", 1.2, category="hats")
    space.track(U1, "Order", 100, price=7.0)
    space.sync()
    now = space.now.timestamp()
    h = _hour(space, 0)

    def at(hours_ago: float) -> float:
        return (space.ago(hours_ago)).timestamp()

    first = _seed(space, _vector("event('Order').first(property('price'))"), now)
    assert first == {a: {FOLDED: [at(100), 7.0]}}
    last = _seed(space, _vector("event('Order').within(7 days).last(property('price'))"), now)
    assert last == {a: {h - 1: [at(1.1), 10.0], h - 100: [at(100), 7.0]}}
    assert type(last[a][h - 1][1]) is float
    named = _seed(space, _vector("event('Order').within(2 days).first(property('category'))"), now)
    assert named == {a: {h - 1: [at(1.3), "bags"]}}


HOSTILE = "x'; DROP TABLE batch_space.profile_merges; --"


def test_where_conditions_and_unknown_events(space: World) -> None:
    """The stream's conditions as batch evaluates them; an event or property nobody sent
    seeds nothing (no error); an event's name reaches the SQL only quoted."""
    a = space.profile(space.track(U1, "Order", 1, category="shoes", tags=["red"]))
    space.track(U1, "Order", 1, category="bags", tags=["blue"])
    space.track(U1, HOSTILE, 3)
    space.sync()
    now = space.now.timestamp()
    h = _hour(space, 0)
    shoes = _vector("event('Order').where(property('category') = 'shoes').count()")
    assert _seed(space, shoes, now) == {a: {FOLDED: 1}}
    red = _vector("event('Order').where(property('tags') = 'red').within(1 days).count()")
    assert _seed(space, red, now) == {a: {h - 1: 1}}
    escaped = HOSTILE.replace("'", "\\'")
    assert _seed(space, _vector(f"event('{escaped}').count()"), now) == {a: {FOLDED: 1}}
    assert space.rows(f"SELECT count(*) FROM {SCHEMA}.profile_merges")[0][0] >= 1
    assert _seed(space, _vector("event('Never').count()"), now) == {}
    assert _seed(space, _vector("event('Order').sum(property('nope'))"), now) == {}
    with pytest.raises(ValueError, match="family"):
        batch.buckets([], "median")
