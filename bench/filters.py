"""Per-event cost of the router's per-destination stages: filters, triggers, mappings.

    python bench/filters.py [--events 20000]

Each stage is compiled once (as the router does per configuration change) and timed over a
set of typical Segment track events; the figures are microseconds per event, on one core.
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

from headwater.destinations.actions import ActionMapping, Mappings  # noqa: E402
from headwater.destinations.catalog.webhook_actions import DEFINITION  # noqa: E402
from headwater.destinations.filters import check_filters, compile_filters  # noqa: E402
from headwater.fql import parse  # noqa: E402


def events(n: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "track",
            "event": "Order Completed" if i % 3 else "Product Viewed",
            "userId": f"user-{i}",
            "messageId": f"m-{i}",
            "properties": {
                "order_id": f"o-{i}",
                "total": i % 100,
                "email": f"u{i}@example.com",
                "products": [{"id": "p1", "price": 19}, {"id": "p2", "price": 8}],
            },
            "context": {
                "library": {"name": "analytics.js", "version": "2.11.1"},
                "traits": {"email": f"u{i}@example.com"},
                "ip": "203.0.113.7",
            },
        }
        for i in range(n)
    ]


def timed(name: str, run: Callable[[dict[str, Any]], Any], sample: list[dict[str, Any]]) -> None:
    for event in sample[:1000]:  # warm up
        run(event)
    started = time.perf_counter()
    for event in sample:
        run(event)
    elapsed = time.perf_counter() - started
    print(f"{name:58} {elapsed / len(sample) * 1e6:8.2f} µs/event")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    sample = events(parser.parse_args().events)

    statement = parse(
        "type = 'track' and (event = 'Order Completed' or "
        "match(event, 'Product *')) and !contains(properties.email, '@segment.com')"
    )
    timed("FQL statement (and/or, match, contains)", statement.matches, sample)

    filters = compile_filters(
        check_filters(
            [
                {"id": "a", "if": "length(userId) < 1", "actions": [{"type": "DROP"}]},
                {
                    "id": "b",
                    "if": "all",
                    "actions": [{"type": "SAMPLE", "percent": 0.5, "path": "userId"}],
                },
                {
                    "id": "c",
                    "if": "all",
                    "actions": [
                        {
                            "type": "DROP_PROPERTIES",
                            "fields": {
                                "properties": ["email"],
                                "context": ["ip"],
                                "properties.products": ["price"],
                            },
                        }
                    ],
                },
            ]
        )
    )
    assert filters is not None
    timed("three filters (drop, sample by userId, drop properties)", filters, sample)

    mapping = ActionMapping(
        id="m1",
        name="Orders",
        enabled=True,
        action="send",
        trigger='type = "track" and event = "Order Completed"',
        fields={
            "url": "http://127.0.0.1:9/orders",
            "data": {
                "order": {"@path": "$.properties.order_id"},
                "email": {"@path": "$.context.traits.email"},
                "total": {"@path": "$.properties.total"},
                "who": {"@template": "{{userId}} ({{context.traits.email}})"},
            },
        },
    )
    mappings = Mappings.compile(DEFINITION.actions, [mapping])
    timed("trigger of one mapping", mappings.matching, sample)
    fields = mappings.by_id["m1"].fields
    timed("mapping of four fields (path, template)", fields, sample)


if __name__ == "__main__":
    main()
