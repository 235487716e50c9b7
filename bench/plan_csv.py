"""Tracking-plan CSV download/upload and Typewriter generation at Segment's limits.

    python bench/plan_csv.py

1,999 editor-shaped rules (8 rows each) to CSV and back; a 99,999-row upload (the most
Segment takes); Python and TypeScript clients for 500 events.
"""

from __future__ import annotations

import time

from headwater.protocols.compiled import Rule
from headwater.protocols.plan_csv import rules_from_csv, rules_to_csv
from headwater.protocols.typewriter import generate

ORDER_COMPLETED = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "labels": {},
    "properties": {
        "context": {},
        "traits": {"type": "object"},
        "properties": {
            "type": "object",
            "properties": {
                "order_id": {"type": "string", "description": "Unique id of the order."},
                "total": {"type": "number"},
                "currency": {"type": "string", "enum": ["USD", "EUR", "GBP"]},
                "products": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"product_id": {"type": "string"}},
                        "required": ["product_id"],
                    },
                },
            },
            "required": ["order_id"],
        },
    },
    "required": ["properties"],
}


def main() -> None:
    rules = [Rule("TRACK", f"Event {n}", ORDER_COMPLETED) for n in range(1_999)]
    start = time.perf_counter()
    data = rules_to_csv(rules)
    written = time.perf_counter()
    assert rules_from_csv(data) == rules
    read = time.perf_counter()
    print(
        f"1,999 rules: rules_to_csv {written - start:.3f}s ({len(data) / 1e6:.2f} MB), "
        f"rules_from_csv {read - written:.3f}s"
    )
    rows = b"Event Type,Event Name,Property Name\n" + b"".join(
        b"Track,e%d,p%d\n" % (n % 10, n) for n in range(99_998)
    )
    start = time.perf_counter()
    rules_from_csv(rows)
    print(f"99,999-row upload: rules_from_csv {time.perf_counter() - start:.3f}s")
    for language in ("python", "typescript"):
        start = time.perf_counter()
        files = generate("Bench", rules[:500], language)
        size = sum(len(text) for text in files.values()) / 1e6
        print(f"{language} client, 500 events: {time.perf_counter() - start:.3f}s, {size:.2f} MB")


if __name__ == "__main__":
    main()
