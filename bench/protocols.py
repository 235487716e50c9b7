"""Per-event cost of Protocols validation and enforcement (issue 13's targets).

    python bench/protocols.py [--events 20000]

A 200-rule plan (196 Track events with 6 typed properties each, Identify, Group, Page and a
common schema) is compiled once, as the stage does per plan change, then `enforce` is timed
over typical events (valid, unplanned-property omission, a violation). Target: ≤ 10 µs/event.

A source with no plan must cost ≤ 0.2 µs/event: the stage does one dict lookup per RECORD
(a batch of events), and passes the record on untouched when it finds nothing — that shape is
timed here too, per event, for single-event records and for 50-event batches.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from headwater.protocols.compiled import CompiledPlan, Rule, compile_plan  # noqa: E402
from headwater.protocols.enforce import SchemaSettings, enforce  # noqa: E402

DRAFT7 = "http://json-schema.org/draft-07/schema#"
PROPS = {
    "order_id": {"type": "string"},
    "total": {"type": "number", "minimum": 0},
    "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},
    "coupon": {"type": ["string", "null"]},
    "quantity": {"type": "integer"},
    "products": {
        "type": "array",
        "items": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]},
    },
}


def plan_rules() -> list[Rule]:
    rules = [
        Rule(
            "TRACK",
            f"Event {i}",
            {
                "$schema": DRAFT7,
                "type": "object",
                "properties": {
                    "properties": {"type": "object", "properties": PROPS, "required": ["order_id"]}
                },
            },
        )
        for i in range(196)
    ]
    traits = {"properties": {"traits": {"type": "object", "properties": {"email": {}, "name": {}}}}}
    rules += [Rule("IDENTIFY", "", traits), Rule("GROUP", "", traits)]
    rules.append(Rule("PAGE", "Page Viewed", {"properties": {"properties": {"type": "object"}}}))
    common = {"type": "object", "properties": {"context": {"type": "object"}}}
    rules.append(Rule("COMMON", "", common))
    assert len(rules) == 200
    return rules


def track(i: int, **extra: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "order_id": f"o-{i}",
        "total": 33.5,
        "currency": "USD",
        "coupon": None,
        "quantity": 2,
        "products": [{"id": "p1"}, {"id": "p2"}],
    }
    properties.update(extra)
    return {
        "type": "track",
        "event": f"Event {i % 196}",
        "userId": f"user-{i}",
        "messageId": f"m-{i}",
        "properties": properties,
        "context": {"library": {"name": "analytics.js", "version": "2.11.1"}},
    }


def timed(name: str, n: int, run: Callable[[], None], per: int = 1) -> None:
    run()
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    print(f"{name:62} {best / (n * per) * 1e6:8.3f} µs/event")


def bench_plan(n: int, plan: CompiledPlan) -> None:
    allow = SchemaSettings()
    omit = SchemaSettings.from_segment(
        {"track": {"allowUnplannedEventProperties": False, "allowPropertiesOnViolations": False}}
    )
    valid = [track(i) for i in range(n)]
    unplanned = [track(i, campaign="x") for i in range(n)]
    invalid = [track(i, quantity=1.5) for i in range(n)]

    def over(events: list[dict[str, Any]], settings: SchemaSettings) -> Callable[[], None]:
        def run() -> None:
            for event in events:
                enforce(event, plan, settings, "src")

        return run

    timed("200 rules: valid track, all allowed", n, over(valid, allow))
    timed("200 rules: valid track, omit settings on", n, over(valid, omit))
    timed("200 rules: one unplanned property omitted", n, over(unplanned, omit))
    timed("200 rules: one Invalid Type violation, property omitted", n, over(invalid, omit))


def bench_no_plan(n: int) -> None:
    plans: dict[str, CompiledPlan] = {}  # source id → plan; this source has none
    singles = [("src-1", [track(i)]) for i in range(n)]
    batches = [("src-1", [track(i) for i in range(50)]) for _ in range(n // 50)]

    def stage(records: list[tuple[str, list[dict[str, Any]]]]) -> Callable[[], None]:
        def run() -> None:
            out = []
            for source_id, events in records:
                plan = plans.get(source_id)  # the whole check, once per record
                if plan is None:
                    out.append(events)
                    continue

        return run

    timed("no plan: 1-event records (lookup per record)", n, stage(singles))
    timed("no plan: 50-event records (lookup per record)", n // 50, stage(batches), per=50)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    start = time.perf_counter()
    plan = compile_plan(plan_rules())
    print(f"compile 200 rules: {(time.perf_counter() - start) * 1e3:.1f} ms")
    bench_plan(args.events, plan)
    bench_no_plan(args.events)


if __name__ == "__main__":
    main()
