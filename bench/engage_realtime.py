"""Real-time Engage: events per second through 20 computed traits and 20 audiences.

    python bench/engage_realtime.py [--store sqlite|postgresql] [--preload 200000]
                                    [--events 50000] [--postgres-url URL] [--profile]

Runs the ``unify`` stage as the server does (``bench/unify_stage.py``'s passes: 2,000 events
a pass, ``unify_resolution.mix`` over ``--preload`` known users) with Engage observing it. Track
events are spread over eight event names with properties, and their timestamps over the last
120 days, so windows of 7 to 180 days keep and drop them. The space has 20 computed traits
(counters, sums, averages, minimums, maximums, most frequent, first, last, unique lists and
counts; some with conditions) and 20 audiences (event counts in windows, property conditions,
computed traits, other audiences); five audiences and two traits are connected to a
destination, so their changes are queued as messages.

The figure the issue names is Engage's own work per event: the CPU time spent in its observer
(this process, plus PostgreSQL's backends when the bench started the server), as
``bench/unify_resolution.py`` reports the identity graph's. The whole stage's rate with Engage
is printed beside it.
"""

from __future__ import annotations

import argparse
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from unify_resolution import Measured, bulk_preload, database, mix  # noqa: E402
from unify_stage import PARTITIONS, RECORDS_PER_PASS, records  # noqa: E402

from headwater.engage.activation import Connection  # noqa: E402
from headwater.engage.definition import (  # noqa: E402
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
from headwater.engage.realtime import Computation  # noqa: E402
from headwater.engage.stage import EngageStage  # noqa: E402
from headwater.store.archive import Archive  # noqa: E402
from headwater.store.workspace import WorkspaceStore  # noqa: E402
from headwater.timestamps import format_timestamp  # noqa: E402
from headwater.unify.spaces import SpaceStore  # noqa: E402
from headwater.unify.stage import IdentityStage  # noqa: E402

NAMES = [
    "Order Completed",
    "Product Viewed",
    "Product Added",
    "Cart Viewed",
    "Signed In",
    "Checkout Started",
    "Video Played",
    "Coupon Applied",
]
CATEGORIES = ["shoes", "bags", "cosmetics", "hats", "books", "toys"]


def _stream(event: str, days: int | None = None, *where: Compare) -> Stream:
    return Stream(event, tuple(where), window=Window(0, days * 24) if days else None)


def _where(prop: str, op: CompareOp, value: Any) -> Compare:
    return Compare(PropertyRef(prop), op, (Literal(value),))


def _reduce(stream: Stream, op: ReduceOp, prop: str | None = None, **kw: Any) -> Reduce:
    return Reduce(stream, op, PropertyRef(prop) if prop else None, **kw)


def computations() -> list[Computation]:
    cosmetics = _where("category", "equals", "cosmetics")
    traits: list[tuple[str, Reduce]] = [
        ("orders_30_days", _reduce(_stream("Order Completed", 30), "count")),
        ("orders_90_days", _reduce(_stream("Order Completed", 90), "count")),
        ("revenue_180_days", _reduce(_stream("Order Completed", 180), "sum", "revenue")),
        (
            "cosmetics_revenue_90_days",
            _reduce(_stream("Order Completed", 90, cosmetics), "sum", "revenue"),
        ),
        ("avg_order_180_days", _reduce(_stream("Order Completed", 180), "avg", "revenue")),
        ("max_order", _reduce(_stream("Order Completed"), "max", "revenue")),
        ("min_order", _reduce(_stream("Order Completed"), "min", "revenue")),
        (
            "favourite_category",
            _reduce(_stream("Product Viewed", 90), "mode", "category", min_frequency=2),
        ),
        ("first_category", _reduce(_stream("Product Viewed"), "first", "category")),
        ("last_category", _reduce(_stream("Product Viewed"), "last", "category")),
        ("categories_viewed", _reduce(_stream("Product Viewed", 30), "unique", "category")),
        (
            "categories_viewed_count",
            _reduce(_stream("Product Viewed", 30), "unique_count", "category"),
        ),
        ("views_7_days", _reduce(_stream("Product Viewed", 7), "count")),
        ("adds_30_days", _reduce(_stream("Product Added", 30), "count")),
        ("carts_14_days", _reduce(_stream("Cart Viewed", 14), "count")),
        ("sign_ins_30_days", _reduce(_stream("Signed In", 30), "count")),
        ("checkouts_60_days", _reduce(_stream("Checkout Started", 60), "count")),
        ("videos_30_days", _reduce(_stream("Video Played", 30), "count")),
        ("coupons_ever", _reduce(_stream("Coupon Applied"), "count")),
        (
            "pricing_visits",
            _reduce(_stream("Page Viewed", 30, _where("url", "contains", "pricing")), "count"),
        ),
    ]
    out = [Computation(f"tra_{k}", k, "trait", Definition("users", r)) for k, r in traits]

    def at_least(reduce: Reduce, n: float) -> Compare:
        return Compare(reduce, "at_least", (Literal(n),))

    def trait(key: str, op: CompareOp, value: Any) -> Compare:
        return Compare(TraitRef(key), op, (Literal(value),))

    audiences: list[tuple[str, Any]] = [
        ("ordered_30_days", at_least(_reduce(_stream("Order Completed", 30), "count"), 1)),
        ("ordered_7_days", at_least(_reduce(_stream("Order Completed", 7), "count"), 1)),
        ("repeat_buyers", at_least(_reduce(_stream("Order Completed", 90), "count"), 3)),
        (
            "big_orders",
            at_least(
                _reduce(
                    _stream("Order Completed", 60, _where("revenue", "greater_than", 150)), "count"
                ),
                1,
            ),
        ),
        ("high_value", trait("revenue_180_days", "greater_than", 500)),
        ("cosmetics_fans", trait("cosmetics_revenue_90_days", "at_least", 100)),
        ("browsers", at_least(_reduce(_stream("Product Viewed", 7), "count"), 5)),
        (
            "cart_abandoners",
            And(
                (
                    at_least(_reduce(_stream("Cart Viewed", 14), "count"), 1),
                    Not(at_least(_reduce(_stream("Order Completed", 14), "count"), 1)),
                )
            ),
        ),
        ("active_30_days", at_least(_reduce(_stream("Signed In", 30), "count"), 1)),
        (
            "lapsed",
            And(
                (
                    at_least(_reduce(_stream("Signed In"), "count"), 1),
                    Not(at_least(_reduce(_stream("Signed In", 30), "count"), 1)),
                )
            ),
        ),
        ("video_fans", at_least(_reduce(_stream("Video Played", 30), "count"), 3)),
        ("coupon_users", at_least(_reduce(_stream("Coupon Applied"), "count"), 1)),
        (
            "checkout_no_order",
            And(
                (
                    at_least(_reduce(_stream("Checkout Started", 7), "count"), 1),
                    Not(at_least(_reduce(_stream("Order Completed", 7), "count"), 1)),
                )
            ),
        ),
        ("shoe_lovers", trait("favourite_category", "equals", "shoes")),
        ("wide_browsers", trait("categories_viewed_count", "at_least", 4)),
        ("pricing_curious", trait("pricing_visits", "at_least", 2)),
        ("vip", And((trait("high_value", "equals", True), trait("repeat_buyers", "equals", True)))),
        ("adders", at_least(_reduce(_stream("Product Added", 30), "count"), 2)),
        ("big_average", trait("avg_order_180_days", "greater_than", 120)),
        (
            "engaged",
            And((trait("browsers", "equals", True), trait("active_30_days", "equals", True))),
        ),
    ]
    out += [Computation(f"aud_{k}", k, "audience", Definition("users", c)) for k, c in audiences]
    return out


def shape(events: list[dict[str, Any]], now: float, rng: random.Random) -> list[dict[str, Any]]:
    """The mix's events with Engage's event names, properties and 120 days of timestamps
    (received now: the stage orders by receivedAt)."""
    for event in events:
        at = now - rng.random() * 120 * 86_400
        event["timestamp"] = format_timestamp(datetime.fromtimestamp(at, UTC))
        if event["type"] == "track":
            event["event"] = rng.choice(NAMES)
            event["properties"] = {
                "category": rng.choice(CATEGORIES),
                "revenue": round(rng.uniform(5, 250), 2),
            }
        elif event["type"] == "page":
            event["properties"] = {"url": rng.choice(["https://x.com/pricing", "https://x.com/"])}
    return events


class Timed:
    """The Engage observer, with the CPU time of its calls measured (the server's processes
    with no floor: a pass's share of the backend can be under ``Measured``'s default)."""

    def __init__(self, inner: EngageStage, postmaster: int | None, profile: bool) -> None:
        self.inner = inner
        self.postmaster = postmaster
        self.profile = profile
        self.measured: list[Measured] = []

    def observe(self, *args: Any) -> None:
        with Measured(self.postmaster, self.profile, floor=0.0) as measured:
            self.inner.observe(*args)
        self.measured.append(measured)

    def expire(self, *args: Any) -> int:
        with Measured(self.postmaster, floor=0.0) as measured:
            done = self.inner.expire(*args)
        self.measured.append(measured)
        return done

    def cpu(self) -> tuple[float, float]:
        return sum(m.cpu for m in self.measured), sum(m.server for m in self.measured)

    def server_kinds(self) -> str:
        kinds: dict[str, float] = {}
        for m in self.measured:
            for kind, seconds in m.by_kind.items():
                kinds[kind] = kinds.get(kind, 0.0) + seconds
        return ", ".join(f"{k} {v:.2f}" for k, v in sorted(kinds.items()) if v >= 0.005)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--preload", type=int, default=200_000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--profile", action="store_true", help="cProfile the observer")
    parser.add_argument(
        "--no-activation",
        dest="activation",
        action="store_false",
        help="connect no computation to a destination (no messages)",
    )
    parser.add_argument("--sort", default="cumulative", help="the profile's order (tottime, …)")
    args = parser.parse_args(argv)

    plan = computations()
    activated = (
        {"ordered_30_days", "high_value", "vip", "lapsed", "cart_abandoners"}
        | {"revenue_180_days", "favourite_category"}
        if args.activation
        else set()
    )
    connected = {
        c.id: [Connection("engage-hook", send_identify=True, send_track=True)]
        for c in plan
        if c.key in activated
    }
    with database(args.store, args.postgres_url) as (engine, postmaster):
        workspace = WorkspaceStore(engine)
        workspace_id = workspace.ensure_workspace("bench").id
        source_id = workspace.create_source("web").id
        space = SpaceStore(workspace).create("bench", sources=["web"])
        started = time.perf_counter()
        bulk_preload(engine, space.id, args.preload)
        print(f"preload: {args.preload:,} profiles in {time.perf_counter() - started:.0f} s")
        now = time.time()
        rng = random.Random(11)
        events = shape(mix(args.preload, args.events, rng), now, rng)
        warm, payloads = (
            records(workspace_id, source_id, events[:1]),
            records(workspace_id, source_id, events[1:]),
        )
        engage = EngageStage(
            engine, lambda _space: plan, lambda computation: connected.get(computation, [])
        )
        timed = Timed(engage, postmaster, args.profile)
        with tempfile.TemporaryDirectory(prefix="headwater-bench-archive-") as archive:
            stage = IdentityStage(engine, Archive(archive), observers=[timed])
            stage([(0, 1, warm[0])])
            timed.measured.clear()
            offset = PARTITIONS
            with Measured(postmaster) as whole:
                for start in range(0, len(payloads), RECORDS_PER_PASS):
                    handed = []
                    for payload in payloads[start : start + RECORDS_PER_PASS]:
                        offset += 1
                        handed.append((offset % PARTITIONS, offset, payload))
                    stage(handed)
        count = len(events) - 1
        cpu, server = timed.cpu()
        total = cpu + server
        print(
            f"Engage (20 traits, 20 audiences) on {args.store}: {count / total:,.0f} events/s "
            f"per CPU second ({total / count * 1e6:.1f} µs: this process {cpu:.2f} s"
            + (f" + server {server:.2f} s: {timed.server_kinds()}" if postmaster else "")
            + ")"
        )
        print(f"the whole stage with Engage: {whole.rate(count)}")
        from headwater.engage import outbox

        print(f"messages queued: {outbox.waiting(engine):,}")
        if args.profile:
            stats = [m.profiler for m in timed.measured if m.profiler is not None]
            if stats:
                combined = pstats.Stats(stats[0])
                for other in stats[1:]:
                    combined.add(other)
                combined.sort_stats(args.sort).print_stats(35)


if __name__ == "__main__":
    main()
