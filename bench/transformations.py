"""Per-event cost of Protocols transformations on the router's path (issue 13).

    python bench/transformations.py [--events 50000]

The router does, per event: decode, the source's transformations (one dict lookup per record
for the source, one per event for its name), then encode only what changed. Timed here, per
event, against the same loop without the transformation step:

* no transformation for the source (must be ~0: a lookup per record, nothing per event);
* one source-scoped transformation for another event of the source (one dict miss);
* one source-scoped property rename that applies (copy, move, encode).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from headwater.protocols.transformations import Transformations, from_api  # noqa: E402

decode = msgspec.json.Decoder().decode
encode = msgspec.json.Encoder().encode


def event(n: int) -> bytes:
    return encode(
        {
            "type": "track",
            "event": "Order Completed",
            "userId": f"u{n}",
            "messageId": f"m-{n}",
            "properties": {"order": {"id": str(n), "total": n}, "currency": "USD"},
            "context": {"library": {"name": "analytics.js", "version": "2.1"}},
        }
    )


def rename(if_: str) -> Transformations:
    return Transformations(
        [
            from_api(
                {
                    "name": "r",
                    "sourceId": "src",
                    "enabled": True,
                    "if": if_,
                    "propertyRenames": [
                        {"oldName": "properties.order.id", "newName": "properties.order_id"}
                    ],
                }
            )
        ]
    )


def baseline(raws: list[bytes]) -> int:
    out = 0
    for raw in raws:
        original = decode(raw)
        out += len(raw) if original else 0
    return out


def with_step(transformations: Transformations) -> Callable[[list[bytes]], int]:
    def run(raws: list[bytes]) -> int:
        out = 0
        scope = transformations.for_source("src")  # once per record (here: per batch)
        for raw in raws:
            original: dict[str, Any] = decode(raw)
            event_ = original
            if scope is not None:
                changed = scope.apply(event_)
                if changed is None:
                    continue
                event_ = changed
            out += len(raw) if event_ is original else len(encode(event_))
        return out

    return run


def timed(run: Callable[[list[bytes]], int], raws: list[bytes], repeat: int) -> float:
    """Median µs per event over ``repeat`` passes."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        run(raws)
        samples.append((time.perf_counter() - start) / len(raws) * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    raws = [event(n) for n in range(args.events)]
    base = timed(baseline, raws, args.repeat)
    cases = {
        "no transformation for the source": Transformations(),
        "one rename for another event": rename("event = 'Checkout Started'"),
        "one rename that applies": rename("event = 'Order Completed'"),
    }
    print(f"decode only (baseline): {base:.3f} µs/event")
    for name, transformations in cases.items():
        cost = timed(with_step(transformations), raws, args.repeat)
        print(f"{name}: {cost:.3f} µs/event ({cost - base:+.3f} over the baseline)")


if __name__ == "__main__":
    main()
