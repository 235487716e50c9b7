"""CPU per event of the Source Schema consumer (``SchemaObserver``) on SQLite.

    python bench/source_schema.py [--passes 50] [--records 200] [--events 10] [--names 50]

Each pass hands the observer ``--records`` processed records of ``--events`` track events
each, as the consumer runner does; events are drawn from ``--names`` event names with a dozen
properties (two nested, one array of objects), so after the first passes every upsert updates
an existing row, as in steady state. What is timed is the handler's thread CPU time (decode,
aggregation, the pass's one transaction) per event, and the wall time per pass.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from headwater.protocols.source_schema import SchemaObserver
from headwater.store.database import database_url, open_engine
from headwater.store.migrations import migrate
from headwater.store.record import VERSION


def event(n: int, names: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": f"Event {n % names}",
        "userId": f"u{n}",
        "messageId": f"m{n}",
        "receivedAt": "2026-01-01T10:00:00.000Z",
        "properties": {
            **{f"p{i}": i for i in range(8)},
            "order": {"id": str(n), "total": n},
            "products": [{"sku": "a", "price": 1}, {"sku": "b", "price": 2}],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--passes", type=int, default=50)
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--events", type=int, default=10)
    parser.add_argument("--names", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(database_url(Path(tmp), None))
        migrate(engine)
        observe = SchemaObserver(engine)
        offset, n, cpu, wall = 0, 0, 0.0, 0.0
        for _ in range(args.passes):
            batch = []
            for _ in range(args.records):
                events = [event(n + i, args.names) for i in range(args.events)]
                n += args.events
                offset += 1
                record = {
                    "v": VERSION,
                    "workspace_id": "ws",
                    "source_id": "src",
                    "received_at": "2026-01-01T10:00:00.000Z",
                    "events": events,
                }
                batch.append((0, offset, msgspec.json.encode(record)))
            started, started_cpu = time.perf_counter(), time.thread_time()
            observe(batch)
            cpu += time.thread_time() - started_cpu
            wall += time.perf_counter() - started
        engine.dispose()
    print(
        f"{n} events in {args.passes} passes: {cpu / n * 1e6:.1f} µs CPU an event, "
        f"{wall / args.passes * 1e3:.1f} ms wall a pass ({args.records * args.events} events)"
    )


if __name__ == "__main__":
    main()
