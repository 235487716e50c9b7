"""Delivery throughput and isolation: from the event log to a loopback destination.

    python bench/delivery.py [--events 20000]

One worker process (this one, pinned to core 0) runs the router and the delivery engine on an
embedded SQLite state; the destination is bench/noop_app.py on uvicorn, pinned to core 1. The
log is filled first, then the clock runs until every event is delivered. Three runs:

- unbatched: a Webhooks destination, one request per event;
- batched: a Segment (HTTP API) forward destination, batches of up to its limit;
- isolation: the webhook again, fed a steady 500 events a second, while a second destination
  never answers; the healthy one's P95 latency (receivedAt → delivered, from Event Delivery)
  is the figure;
- insert functions (``--insert``): the webhook with a small enriching insert function
  (§11.4), in JavaScript and in Python, run by the functions' sandbox (its processes are not
  pinned: they share the cores with the rest).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from processes import pin, start_noop  # noqa: E402

from headwater.delivery.engine import DeliveryEngine  # noqa: E402
from headwater.delivery.functions import FunctionCatalog  # noqa: E402
from headwater.delivery.report import event_delivery  # noqa: E402
from headwater.destinations import registry  # noqa: E402
from headwater.destinations.store import DestinationCache, DestinationStore  # noqa: E402
from headwater.functions.logs import FunctionLogs  # noqa: E402
from headwater.functions.store import FunctionStore  # noqa: E402
from headwater.pipeline.consumer import Consumer  # noqa: E402
from headwater.pipeline.router import GROUP, Router  # noqa: E402
from headwater.store.database import database_url, open_engine  # noqa: E402
from headwater.store.log import EventLog  # noqa: E402
from headwater.store.migrations import migrate  # noqa: E402
from headwater.store.workspace import WorkspaceStore  # noqa: E402
from headwater.timestamps import format_timestamp  # noqa: E402

HERE = Path(__file__).resolve().parent
EVENT = {
    "type": "track",
    "event": "Order Completed",
    "userId": "user-1",
    "properties": {
        "order_id": "o-1",
        "total": 27.5,
        "currency": "USD",
        "products": [{"product_id": "507f1f77bcf86cd799439011", "price": 19}],
    },
    "context": {"library": {"name": "analytics-python", "version": "2.3.4"}, "ip": "203.0.113.7"},
}


# A small enrichment, as Segment's insert function template does it.
ENRICH = {
    "javascript": """
async function onTrack(event, settings) {
  event.properties.enriched = true
  event.properties.plan = settings.plan
  return event
}
""",
    "python": """
def on_track(event, settings):
    event['properties']['enriched'] = True
    event['properties']['plan'] = settings['plan']
    return event
""",
}


def hanging_server() -> str:
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            conn, _ = sock.accept()
            held.append(conn)

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{sock.getsockname()[1]}"


def run(
    kind: str, receiver: str, events: int, hang: bool, insert: str | None = None
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(database_url(Path(tmp), None))
        migrate(engine)
        workspace = WorkspaceStore(engine)
        workspace.ensure_workspace("bench")
        source = workspace.create_source("web")
        destinations = DestinationStore(workspace)
        if kind == "batched":
            healthy = destinations.create(
                "fwd", "segment", "web", settings={"write_key": "WK", "endpoint": receiver}
            )
        else:
            healthy = destinations.create(
                "hook", "webhook", "web", settings={"url": receiver + "/hook"}
            )
        catalog = None
        if insert is not None:
            functions = FunctionStore(workspace)
            catalog = FunctionCatalog(functions, FunctionLogs(workspace))
            registry.use_functions(catalog)
            declared = [{"name": "plan", "label": "Plan", "type": "string"}]
            functions.create("enrich", "insert", insert, ENRICH[insert], settings=declared)
            functions.attach_insert("hook", "enrich", {"plan": "pro"})
        if hang:
            destinations.create(
                "stuck", "webhook", "web", settings={"url": hanging_server() + "/never"}
            )
        log = EventLog(engine)
        log.register(GROUP)

        def append(first: int, count: int) -> None:
            received = format_timestamp(datetime.now(UTC))
            batch = [
                {**EVENT, "messageId": f"m-{i}", "receivedAt": received, "timestamp": received}
                for i in range(first, first + count)
            ]
            log.append(
                [
                    msgspec.json.encode(
                        {
                            "v": 1,
                            "workspace_id": "ws",
                            "source_id": source.id,
                            "received_at": received,
                            "events": batch,
                            "dropped": [],
                            "duplicates": 0,
                        }
                    )
                ]
            )

        if not hang:  # throughput: the whole backlog first, then drain it
            for start in range(0, events, 100):
                append(start, 100)
        else:  # latency: a steady 500 events a second, as live traffic

            def feed() -> None:
                for start in range(0, events, 10):
                    append(start, 10)
                    time.sleep(0.02)

            threading.Thread(target=feed, daemon=True).start()
        cache = DestinationCache(destinations, workspace)
        delivery = DeliveryEngine(engine, cache, functions=catalog)
        router = Consumer(
            log, GROUP, Router(log, cache, delivery.queue, owner="bench"), owner="bench"
        )
        started = time.perf_counter()
        router.start()
        delivery.start()
        last = -1
        while True:
            time.sleep(0.5)
            report = event_delivery(engine, healthy)
            done = report["delivered"] + report["notDelivered"]
            if done != last:
                print(
                    f"  {kind}{' +hanging' if hang else ''}: {done}/{events} delivered",
                    file=sys.stderr,
                )
                last = done
            if done >= events:
                break
        elapsed = time.perf_counter() - started
        router.stop()
        delivery.stop()
        registry.use_functions(None)
        engine.dispose()
        return {
            "events_per_s": events / elapsed,
            "p95_ms": report["p95LatencyMs"] if hang else None,
            "not_delivered": report["notDelivered"],
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--insert", action="store_true", help="only the insert-function runs")
    args = parser.parse_args()
    if pin(0):
        os.sched_setaffinity(0, {0})
    receiver, url = start_noop(1)
    try:
        if args.insert:
            results = {
                "unbatched": run("unbatched", url, args.events, hang=False),
                **{
                    f"unbatched + insert ({language})": run(
                        "unbatched", url, args.events, hang=False, insert=language
                    )
                    for language in ("javascript", "python")
                },
            }
        else:
            results = {
                "unbatched": run("unbatched", url, args.events, hang=False),
                "batched": run("batched", url, args.events, hang=False),
                "unbatched, hanging neighbour": run("unbatched", url, 10_000, hang=True),
            }
    finally:
        receiver.terminate()
        receiver.wait()
    print(f"{'run':32} {'events/s':>10} {'p95 ms':>8}")
    for name, r in results.items():
        print(
            f"{name:32} {r['events_per_s']:10.0f} {r['p95_ms']!s:>8}  "
            f"not delivered={r['not_delivered']}"
        )


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
