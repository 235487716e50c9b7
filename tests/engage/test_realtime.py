"""The real-time engine's core (``engage/realtime.py``) without a database: the computed
trait checks (A-UE-31, A-UE-32, A-UE-33, A-UE-34, A-UE-36), windows precise to the hour,
audiences over traits and other computations, and what merges and time do to a profile's
state."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from typing import Any

from headwater.engage.compare import holds
from headwater.engage.definition import (
    And,
    Compare,
    CompareOp,
    Definition,
    Literal,
    Not,
    PropertyRef,
    Reduce,
    ReduceOp,
    Stream,
    TraitRef,
    Window,
)
from headwater.engage.realtime import (
    Computation,
    Plan,
    ProfileState,
    decode_state,
    encode_state,
    realtime_reason,
)
from headwater.timestamps import format_timestamp

NOW = datetime(2026, 3, 1, 12, 30, tzinfo=UTC).timestamp()
HOUR = 3600.0
DAY = 86_400.0


def stream(event: str, *where: Any, days: int | None = None, hours: int | None = None) -> Stream:
    window = None
    if days is not None or hours is not None:
        window = Window(0, (days or 0) * 24 + (hours or 0))
    return Stream(event, tuple(where), window=window)


def reduce(s: Stream, op: ReduceOp, prop: str | None = None, **kw: Any) -> Reduce:
    return Reduce(s, op, PropertyRef(prop) if prop else None, **kw)


def where(prop: str, op: CompareOp, *args: Any) -> Compare:
    return Compare(PropertyRef(prop), op, tuple(Literal(a) for a in args))


def trait(key: str, root: Any) -> Computation:
    return Computation(f"tra_{key}", key, "trait", Definition("users", root))


def audience(key: str, root: Any, *, anonymous: bool = False) -> Computation:
    return Computation(f"aud_{key}", key, "audience", Definition("users", root), anonymous)


def track(name: str, at: float, **properties: Any) -> dict[str, Any]:
    stamp = format_timestamp(datetime.fromtimestamp(at, UTC))
    return {"type": "track", "event": name, "timestamp": stamp, "properties": properties}


def page(at: float, **properties: Any) -> dict[str, Any]:
    stamp = format_timestamp(datetime.fromtimestamp(at, UTC))
    return {"type": "page", "name": "Pricing", "timestamp": stamp, "properties": properties}


class Profile:
    """One profile's state driven through a plan, with the values each step changed."""

    def __init__(self, *computations: Computation, eligible: bool = True) -> None:
        self.plan = Plan(computations)
        self.state = ProfileState()
        self.eligible = eligible

    def send(self, event: dict[str, Any], now: float = NOW) -> dict[str, Any]:
        vectors = self.plan.apply_event(self.state, event, "src_web", now)
        return self._evaluate(vectors, set(), now)

    def traits(self, now: float = NOW, **traits: Any) -> dict[str, Any]:
        changed = self.plan.apply_traits(self.state, traits)
        return self._evaluate(set(), changed, now)

    def tick(self, now: float) -> dict[str, Any]:
        self.plan.prune(self.state, now)
        return self._evaluate(set(), set(), now, everything=True)

    def _evaluate(
        self, vectors: set[str], traits: set[str], now: float, everything: bool = False
    ) -> dict[str, Any]:
        changes = self.plan.evaluate(
            self.state, vectors, traits, now, lambda: self.eligible, everything=everything
        )
        return {c.computation.key: c.after for c in changes}


# --- computed traits --------------------------------------------------------------------------


def test_a31_an_event_counter_counts_pricing_page_visits_and_ignores_other_events() -> None:
    visits = trait(
        "pricing_page_visits",
        reduce(stream("Page Viewed", where("url", "contains", "pricing")), "count"),
    )
    p = Profile(visits)
    for i in range(4):
        p.send(page(NOW - 100 + i, url="https://x.com/pricing"))
    assert p.send(page(NOW - 10, url="https://x.com/pricing")) == {"pricing_page_visits": 5}
    assert p.send(page(NOW - 5, url="https://x.com/pricing")) == {"pricing_page_visits": 6}
    assert p.send(page(NOW - 4, url="https://x.com/about")) == {}
    assert p.send(track("Signed Up", NOW - 3)) == {}


def test_a32_a_sum_over_90_days_of_cosmetics_revenue() -> None:
    revenue = trait(
        "sum_cosmetics_revenue_90_days",
        reduce(
            stream("Order Completed", where("category", "equals", "cosmetics"), days=90),
            "sum",
            "revenue",
        ),
    )
    p = Profile(revenue)
    p.send(track("Order Completed", NOW - 91 * DAY, category="cosmetics", revenue=100))
    p.send(track("Order Completed", NOW - DAY, category="cosmetics", revenue=10))
    p.send(track("Order Completed", NOW - DAY, category="shoes", revenue=20))
    assert p.send(track("Order Completed", NOW, category="cosmetics", revenue=5)) == {
        "sum_cosmetics_revenue_90_days": 15
    }


def test_a33_most_frequent_breaks_ties_alphabetically_and_needs_two_occurrences() -> None:
    mode = trait("fav", reduce(stream("Viewed"), "mode", "category", min_frequency=2))
    p = Profile(mode)
    for value in ["b", "a", "b"]:
        p.send(track("Viewed", NOW, category=value))
    assert p.plan.current(p.state, mode) == "b"
    assert p.send(track("Viewed", NOW, category="a")) == {"fav": "a"}
    once = Profile(mode)
    assert once.send(track("Viewed", NOW, category="x")) == {}
    assert once.plan.current(once.state, mode) is None


def test_a34_unique_list_count_first_and_last_by_timestamp() -> None:
    unique = trait("cats", reduce(stream("Viewed"), "unique", "category"))
    count = trait("cats_count", reduce(stream("Viewed"), "unique_count", "category"))
    first = trait("first_cat", reduce(stream("Viewed"), "first", "category"))
    last = trait("last_cat", reduce(stream("Viewed"), "last", "category"))
    p = Profile(unique, count, first, last)
    p.send(track("Viewed", NOW - 10, category="shoes"))
    p.send(track("Viewed", NOW - 20, category="bags"))  # arrives late, happened first
    p.send(track("Viewed", NOW - 5, category="shoes"))
    values = {c.key: p.plan.current(p.state, c) for c in (unique, count, first, last)}
    assert values == {
        "cats": ["bags", "shoes"],
        "cats_count": 2,
        "first_cat": "bags",
        "last_cat": "shoes",
    }


def test_average_minimum_and_maximum_as_numbers_or_as_strings() -> None:
    avg = trait("avg", reduce(stream("Order"), "avg", "total"))
    low = trait("low", reduce(stream("Order"), "min", "total"))
    high = trait("high", reduce(stream("Order"), "max", "total"))
    word = trait("word", reduce(stream("Order"), "max", "total", as_type="string"))
    p = Profile(avg, low, high, word)
    for total in (9, 10, "11", "not a number", 20):
        p.send(track("Order", NOW, total=total))
    assert {c.key: p.plan.current(p.state, c) for c in (avg, low, high, word)} == {
        "avg": 12.5,
        "low": 9.0,
        "high": 20.0,
        "word": "not a number",
    }


def test_a36_a_90_day_window_is_2160_hours_precise_to_the_hour() -> None:
    count = trait("orders_90_days", reduce(stream("Order", days=90), "count"))
    p = Profile(count)
    p.send(track("Order", NOW - 2_161 * HOUR))
    assert p.plan.current(p.state, count) is None  # too old: counted nowhere
    assert p.send(track("Order", NOW - 2_159 * HOUR)) == {"orders_90_days": 1}
    due = p.plan.due(p.state, NOW)
    assert due is not None and NOW < due <= NOW + 2 * HOUR
    assert p.tick(due - 1) == {}
    assert p.tick(due) == {"orders_90_days": 0}  # aged out without any new event
    assert p.plan.due(p.state, due) is None and p.state.v == {}


def test_readers_of_one_stream_share_its_buckets_whatever_their_windows() -> None:
    week = trait("week", reduce(stream("Order", days=7), "count"))
    ever = trait("ever", reduce(stream("Order"), "count"))
    p = Profile(week, ever)
    p.send(track("Order", NOW - 30 * DAY))
    assert p.send(track("Order", NOW - DAY)) == {"week": 1, "ever": 2}
    assert len(p.state.v) == 1  # one vector
    p.tick(NOW + 10 * DAY)  # the week's bucket leaves; "ever" still counts it (folded)
    assert p.plan.current(p.state, week) == 0
    assert p.plan.current(p.state, ever) == 2
    assert list(next(iter(p.state.v.values()))) == [-1]


# --- audiences ----------------------------------------------------------------------------------


def orders_30_days() -> Computation:
    return audience(
        "order_completed_last_30days",
        Compare(reduce(stream("Order Completed", days=30), "count"), "at_least", (Literal(1),)),
    )


def test_a37_a_member_enters_on_the_event_and_exits_when_it_ages_out() -> None:
    member = orders_30_days()
    p = Profile(member)
    assert p.send(track("Order Completed", NOW)) == {"order_completed_last_30days": True}
    assert p.send(track("Order Completed", NOW + 1)) == {}  # still a member: no change
    assert p.tick(NOW + 29 * DAY) == {}
    assert p.tick(NOW + 30 * DAY) == {"order_completed_last_30days": False}


def test_audiences_read_traits_and_other_computations_in_dependency_order() -> None:
    total = trait("total_spend", reduce(stream("Order"), "sum", "amount"))
    # Declared before what it reads: the plan orders it after.
    big = audience(
        "big_spender",
        And(
            (
                Compare(TraitRef("total_spend"), "greater_than", (Literal(200),)),
                Not(Compare(TraitRef("plan"), "equals", (Literal("free"),))),
            )
        ),
    )
    vip = audience("vip", Compare(TraitRef("big_spender"), "equals", (Literal(True),)))
    p = Profile(vip, big, total)
    assert p.send(track("Order", NOW, amount=150)) == {"total_spend": 150}
    assert p.send(track("Order", NOW, amount=100)) == {
        "total_spend": 250,
        "big_spender": True,
        "vip": True,
    }
    assert p.traits(plan="free") == {"big_spender": False, "vip": False}
    assert p.traits(plan=None) == {"big_spender": True, "vip": True}


def test_a40_a_profile_without_a_known_identifier_is_not_a_member_unless_anonymous() -> None:
    root = Compare(reduce(stream("Viewed"), "count"), "at_least", (Literal(1),))
    known_only = Profile(audience("viewers", root), eligible=False)
    assert known_only.send(track("Viewed", NOW)) == {}
    anonymous = Profile(audience("viewers", root, anonymous=True), eligible=False)
    assert anonymous.send(track("Viewed", NOW)) == {"viewers": True}


def test_a_merge_folds_the_other_profiles_buckets_into_the_survivors() -> None:
    member = orders_30_days()
    count = trait("orders", reduce(stream("Order Completed"), "count"))
    first = trait("first_total", reduce(stream("Order Completed"), "first", "total"))
    a, b = Profile(member, count, first), Profile(member, count, first)
    a.send(track("Order Completed", NOW - 40 * DAY, total=1))
    b.send(track("Order Completed", NOW - DAY, total=2))
    b.send(track("Order Completed", NOW - 50 * DAY, total=3))
    changed = a.plan.merge(a.state, b.state)
    changes = a.plan.evaluate(a.state, changed, set(), NOW, lambda: True)
    assert {c.computation.key: c.after for c in changes} == {
        "orders": 3,
        "first_total": 3,
        "order_completed_last_30days": True,
    }


def test_the_state_survives_encoding() -> None:
    p = Profile(orders_30_days(), trait("m", reduce(stream("Order Completed"), "mode", "x")))
    p.send(track("Order Completed", NOW, x="a"))
    assert decode_state(encode_state(p.state)) == p.state


def test_batch_only_definitions_are_named_and_left_out_of_the_plan() -> None:
    funnel = Compare(
        reduce(
            stream(
                "Cart Viewed",
                Compare(
                    Reduce(Stream("Order Completed", window=Window(0, 24, parent=True)), "count"),
                    "equals",
                    (Literal(0),),
                ),
                days=30,
            ),
            "count",
        ),
        "at_least",
        (Literal(1),),
    )
    between = Compare(
        Reduce(Stream("Order", window=Window(168, 240)), "count"), "at_least", (Literal(1),)
    )
    dynamic = Compare(
        reduce(
            stream("Order", Compare(PropertyRef("price"), "at_least", (TraitRef("avg"),))), "count"
        ),
        "at_least",
        (Literal(1),),
    )
    assert realtime_reason(Definition("users", funnel)) == "funnels are batch"
    assert realtime_reason(Definition("users", between)) == "'between' windows are batch"
    assert realtime_reason(Definition("users", dynamic)) == "dynamic property references are batch"
    assert realtime_reason(Definition("accounts", between)) is not None
    assert realtime_reason(Definition("users", orders_30_days().definition.root)) is None
    assert Plan([audience("f", funnel)]).empty


def test_an_event_reads_only_the_buckets_inside_the_window_at_its_own_time() -> None:
    count = trait("orders_7_days", reduce(stream("Order", days=7), "count"))
    p = Profile(count)
    p.send(track("Order", NOW - 1), now=NOW)
    later = NOW + 7 * DAY  # the first order's hour is exactly 168 hours old now
    assert p.send(track("Order", later), now=later) == {}  # 1 then, 1 now (not 2)
    assert p.plan.current(p.state, count) == 1


def test_an_ordering_against_a_number_means_what_holds_says_for_every_kind_of_value() -> None:
    """The compiled audience's shortcut for numbers (``count >= n``) agrees with ``holds``
    whatever the trait holds: numbers, numeric strings, bools, NaN, lists, nothing."""
    values: list[Any] = [3, 3.0, 2.5, 4, -1, 10**20, "3", "2.5", "abc", True, False]
    values += [float("nan"), "nan", [1, 5], [], None]
    for op in ("greater_than", "at_least", "less_than", "at_most"):
        for constant in (3, 2.5, "3", "nan", -1):
            member = audience("m", Compare(TraitRef("x"), op, (Literal(constant),)), anonymous=True)
            for value in values:
                p = Profile(member)
                p.state.t["x"] = value
                p.tick(NOW)
                expected = holds(op, value, [constant])
                assert p.plan.current(p.state, member) is expected, (op, constant, value)


def test_counts_in_windows_are_the_events_inside_them_hour_by_hour() -> None:
    """Counters over windows and over all time, as a trait that had no value reads them
    (None, not 0, until an event counts) and as an audience reads them."""
    rng = random.Random(5)
    for days in (None, 1, 7):
        count = trait("n", reduce(stream("Order", days=days), "count"))
        none = audience(
            "none",
            Not(Compare(reduce(stream("Order", days=days), "count"), "at_least", (Literal(1),))),
            anonymous=True,
        )
        p = Profile(count, none)
        p.tick(NOW)
        assert p.plan.current(p.state, count) is None
        assert p.plan.current(p.state, none) is True
        hours: list[float] = []
        for _ in range(30):
            ago = rng.uniform(0, 10 * 24)
            hours.append(ago)
            p.send(track("Order", NOW - ago * HOUR))
            inside = [
                h
                for h in hours
                if days is None
                or math.floor(NOW / HOUR) - math.floor((NOW - h * HOUR) / HOUR) < days * 24
            ]
            # no event inside yet: the trait never had a value (None, not 0)
            assert p.plan.current(p.state, count) == (len(inside) if inside else None)
            assert p.plan.current(p.state, none) is (not inside)
        later = NOW + 2 * DAY  # time alone moves events out of the window
        p.tick(later)
        left = [
            h
            for h in hours
            if days is None
            or math.floor(later / HOUR) - math.floor((NOW - h * HOUR) / HOUR) < days * 24
        ]
        assert p.plan.current(p.state, count) == len(left)  # it had a value: 0, not None
        assert p.plan.current(p.state, none) is (not left)


def test_a46_within_last_on_a_custom_trait_is_real_time_and_moves_with_the_clock() -> None:
    """A-UE-46: `within last 7 days` on `last_login` is a real-time audience; a member leaves
    when the date gets older than 7 days, with no new event. A value without its `Z` is read
    as UTC by both engines (Segment would compute that audience in batch instead)."""
    root = Compare(TraitRef("last_login"), "within_last", (), hours=7 * 24)
    recent = audience("recent_login", root)
    assert realtime_reason(recent.definition) is None
    p = Profile(recent)
    assert p.traits(last_login="2026-02-27T10:00:00Z") == {"recent_login": True}
    assert p.tick(NOW + 4 * DAY) == {}  # 6 days and 2.5 hours old
    assert p.tick(NOW + 5 * DAY) == {"recent_login": False}  # 7 days and 2.5 hours old
    no_zone = Profile(recent)
    assert no_zone.traits(last_login="2026-02-27T10:00:00") == {"recent_login": True}
    assert no_zone.traits(last_login="2026-01-01T00:00:00") == {"recent_login": False}
