"""Per-event cost of Protocols validation and enforcement (issue 13's targets).

    python bench/protocols.py [--events 20000]

A 200-rule plan (196 Track events with 6 typed properties each, Identify, Group, Page and a
common schema) is compiled once, as the stage does per plan change, then `enforce` is timed
over typical events (valid, unplanned-property omission, a violation). Target: ≤ 10 µs/event.

A source with no plan must cost ≤ 0.2 µs/event: the stage does one dict lookup per RECORD
(a batch of events), and passes the record on untouched when it finds nothing — that shape is
timed here too, per event, for single-event records and for 50-event batches.

Stage level: records of 100 events through `ProtocolsStage.process` (decode, enforce, encode
what changed) with the 200-rule plan, with a source absent from the lookup, and with an empty
lookup; and `MtuStage.process` (monthly tracked users) over the same records.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import msgspec  # noqa: E402

from headwater.protocols.compiled import CompiledPlan, Rule, compile_plan  # noqa: E402
from headwater.protocols.connected import SourceProtocols  # noqa: E402
from headwater.protocols.enforce import SchemaSettings, enforce  # noqa: E402
from headwater.protocols.mtu import MtuStage  # noqa: E402
from headwater.protocols.stage import ProtocolsStage  # noqa: E402
from headwater.store.database import database_url, open_engine  # noqa: E402
from headwater.store.migrations import migrate  # noqa: E402
from headwater.store.record import VERSION, LogRecord  # noqa: E402

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


def records_of(events: list[dict[str, Any]], source_id: str, per: int = 100) -> bytes:
    """The chain's records of ``per`` events, encoded (each run decodes a fresh copy)."""
    out = [
        {
            "v": VERSION,
            "workspace_id": "ws",
            "source_id": source_id,
            "received_at": "2026-12-06T12:00:00.000Z",
            "events": events[i : i + per],
        }
        for i in range(0, len(events), per)
    ]
    return msgspec.json.encode(out)


def bench_stage(n: int, plan: CompiledPlan, directory: Path) -> None:
    engine = open_engine(database_url(directory, None))
    migrate(engine)
    omit = SchemaSettings.from_segment(
        {"track": {"allowUnplannedEventProperties": False, "allowPropertiesOnViolations": False}}
    )
    planned = SourceProtocols("src-plan", "Plan", "plan", "tp", "TP", plan)
    omitting = SourceProtocols("src-omit", "Omit", "omit", "tp", "TP", plan, omit)
    lookups: dict[str, dict[str, SourceProtocols]] = {
        "plan": {"src-plan": planned, "src-omit": omitting},
        "empty": {},
    }
    decode_all = msgspec.json.Decoder(list[LogRecord]).decode

    def through(
        name: str, payload: bytes, lookup: dict[str, SourceProtocols], per: int = 100
    ) -> None:
        stage = ProtocolsStage(
            lambda: lookup, config_version=lambda: 1, engine=engine, clock=time.time
        )
        copies = [decode_all(payload) for _ in range(6)]
        done = []  # freed after timing: freeing 20,000 records is not the stage's cost

        def run() -> None:
            records = copies.pop()
            stage.process(0, records)
            stage.abandoned()
            done.append(records)

        timed(name, n, run)

    valid = [track(i) for i in range(n)]
    unplanned = [track(i, campaign="x") for i in range(n)]
    invalid = [track(i, quantity=1.5) for i in range(n)]
    plan_lookup = lookups["plan"]
    through(
        "stage, 100-event records, 200 rules: valid", records_of(valid, "src-plan"), plan_lookup
    )
    through(
        "stage, 100-event records, 200 rules: 1 property omitted",
        records_of(unplanned, "src-omit"),
        plan_lookup,
    )
    through(
        "stage, 100-event records, 200 rules: 1 violation (counted)",
        records_of(invalid, "src-plan"),
        plan_lookup,
    )
    through(
        "stage, 100-event records, source not in the lookup",
        records_of(valid, "src-other"),
        plan_lookup,
    )
    through(
        "stage, 1-event records, source not in the lookup",
        records_of(valid, "src-other", per=1),
        plan_lookup,
    )
    through(
        "stage, 100-event records, empty lookup", records_of(valid, "src-other"), lookups["empty"]
    )

    mtu = MtuStage(engine)
    payload = records_of(valid, "src-mtu")
    copies = [decode_all(payload) for _ in range(6)]
    first = [True]

    done = []

    def count() -> None:
        records = copies.pop()
        mtu.process(0, records)
        done.append(records)
        if first[0]:
            first[0] = False  # the first run's identities are new; later runs find them known
            mtu.committed()
        else:
            mtu.abandoned()

    timed("mtu stage, 100-event records, known users", n, count)
    fresh = [track(i, userId=f"new-{i}") for i in range(n)]
    new_copies = [decode_all(records_of(fresh, f"src-mtu-{k}")) for k in range(6)]

    def count_new() -> None:
        records = new_copies.pop()
        mtu.process(0, records)
        done.append(records)
        mtu.abandoned()

    timed("mtu stage, 100-event records, new users", n, count_new)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    args = parser.parse_args()
    start = time.perf_counter()
    plan = compile_plan(plan_rules())
    print(f"compile 200 rules: {(time.perf_counter() - start) * 1e3:.1f} ms")
    bench_plan(args.events, plan)
    bench_no_plan(args.events)
    with tempfile.TemporaryDirectory() as directory:
        bench_stage(args.events, plan, Path(directory))


if __name__ == "__main__":
    main()
