"""CPU per record of the worker's consumer groups (archive, observer, router) on SQLite.

    python bench/consumers.py [--records 40000] [--events 1] [--pass-records 50] [--rate 13000]
                              [--no-coalesce | --coalesce-bytes 262144]

In one process, with the server's own classes and no HTTP: the stage chain's appends are
replayed (``--pass-records`` records a pass, each pass to the next partition, as the chain
writes them: small records coalesced, unless ``--no-coalesce`` gives the chain before it
did), and after every few passes each consumer group runs one pass, as its thread would
at the live rate; each consumer truncates every 5 s of records. What is timed is each
consumer's thread CPU time, split into the log's share (poll, commit, truncate) and its
handler's. Records hold ``--events`` ~1 KB track events each (1 = single events, 100 =
batches); ``--rate`` is the events a second the replay pretends to run at, which sets how
many records a consumer pass carries. Figures are per ingest record (per request); the chain's
cost to coalesce a pass is given apart. ``bench/ingest.py`` measures the same worker from
outside under real load; this one varies far less when the machine is shared.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from headwater.delivery.queue import DeliveryQueue
from headwater.destinations.store import DestinationCache, DestinationStore
from headwater.pipeline.chain import COALESCE_BYTES, coalesce
from headwater.pipeline.consumer import Consumer
from headwater.pipeline.observer import Observer
from headwater.pipeline.router import GROUP as ROUTER_GROUP
from headwater.pipeline.router import Router
from headwater.store.archive import ArchiveWriter
from headwater.store.database import database_url, open_engine, write_transaction
from headwater.store.log import EventLog, IngestRef
from headwater.store.migrations import migrate
from headwater.store.record import decode_record, encode_record
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import format_timestamp

CONSUMER_INTERVAL = 0.25  # seconds between a consumer's passes (pipeline/consumer.py)
TRUNCATE_EVERY = 5.0  # seconds


def track_event(n: int, received_at: str) -> dict[str, Any]:
    """One event as the Tracking API stores it: bench/track.lua's body, normalised."""
    return {
        "userId": f"user-{n % 1000}",
        "event": "Order Completed",
        "messageId": f"bench-{n}",
        "properties": {
            "order_id": f"o-{n}",
            "total": 27.5,
            "revenue": 25.0,
            "currency": "USD",
            "products": [
                {"product_id": "507f1f77bcf86cd799439011", "sku": "45790-32", "price": 19},
                {"product_id": "505bd76785ebb509fc183733", "sku": "46493-32", "price": 3},
            ],
        },
        "context": {
            "library": {"name": "analytics-python", "version": "2.3.4"},
            "page": {"path": "/checkout", "url": "https://shop.example.com/checkout"},
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36",
            "ip": "203.0.113.7",
        },
        "type": "track",
        "receivedAt": received_at,
        "timestamp": received_at,
        "originalTimestamp": received_at,
        "sentAt": received_at,
        "integrations": {},
    }


def records(count: int, events: int, per_second: float = 13_000) -> list[bytes]:
    out = []
    start = time.time()
    for i in range(count):
        at = format_timestamp_at(start + i / per_second)
        batch = [track_event(i * events + j, at) for j in range(events)]
        out.append(encode_record("ws_bench", "src_bench", at, batch))
    return out


def format_timestamp_at(seconds: float) -> str:
    from datetime import UTC, datetime

    return format_timestamp(datetime.fromtimestamp(seconds, UTC))


class Timed:
    """Wraps an EventLog method: adds its thread CPU time to a named bucket."""

    def __init__(self, spent: dict[str, float], name: str, method: Callable[..., Any]) -> None:
        self._spent, self._name, self._method = spent, name, method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.thread_time()
        try:
            return self._method(*args, **kwargs)
        finally:
            self._spent[self._name] += time.thread_time() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=40_000)
    parser.add_argument("--events", type=int, default=1, help="events a record")
    parser.add_argument("--pass-records", type=int, default=50, help="records a chain pass")
    parser.add_argument("--rate", type=int, default=13_000, help="events a second replayed")
    parser.add_argument(
        "--no-coalesce", action="store_true", help="append one record per request, as before"
    )
    parser.add_argument("--coalesce-bytes", type=int, default=COALESCE_BYTES)
    args = parser.parse_args()
    rate = args.rate / args.events  # records a second
    payloads = records(args.records, args.events, rate)
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(database_url(Path(tmp), None), background_checkpoint=False)
        migrate(engine)
        log = EventLog(engine)
        store = WorkspaceStore(engine)
        cache = DestinationCache(DestinationStore(store), store)
        handlers: dict[str, Callable[[list[tuple[int, int, bytes]]], None]] = {
            "archive": ArchiveWriter(Path(tmp) / "archive"),
            "observer": Observer(engine),
            ROUTER_GROUP: Router(log, cache, DeliveryQueue(engine), owner="bench:router"),
        }
        spent: dict[str, float] = defaultdict(float)
        consumers = {
            name: Consumer(
                log,
                name,
                Timed(spent, name, handler),
                owner="bench:router" if name == ROUTER_GROUP else "bench",
            )
            for name, handler in handlers.items()
        }
        for name in consumers:
            log.register(name)
        for method in ("poll_many", "commit_many", "truncate"):
            setattr(log, method, Timed(spent, method, getattr(log, method)))
        per_interval = max(1, round(rate * CONSUMER_INTERVAL))
        per_truncate = max(1, round(rate * TRUNCATE_EVERY))
        since_poll = since_truncate = 0
        total: dict[str, float] = defaultdict(float)
        appended = 0
        for start in range(0, len(payloads), args.pass_records):
            sent = payloads[start : start + args.pass_records]
            chunk: list[bytes | IngestRef] = list(sent)
            if not args.no_coalesce:
                decoded = [decode_record(p) for p in sent]  # the chain has them decoded
                before = time.thread_time()
                sizes = [len(p) for p in sent]
                chunk = coalesce(decoded, sent, sizes, max_bytes=args.coalesce_bytes)
                spent["chain_coalesce"] += time.thread_time() - before
            appended += len(chunk)
            with write_transaction(engine) as conn:  # one chain pass
                log.append_in(conn, chunk)
            since_poll += args.pass_records
            since_truncate += args.pass_records
            last = start + args.pass_records >= len(payloads)
            if since_poll < per_interval and not last:
                continue
            since_poll = 0
            for name, consumer in consumers.items():
                before = time.thread_time()
                while consumer.run_once():
                    if not last:
                        break
                if since_truncate >= per_truncate or last:
                    log.truncate()
                total[name] += time.thread_time() - before
            if since_truncate >= per_truncate:
                since_truncate = 0
        left = sum(log.lag(name) for name in consumers)
        engine.dispose()
    n = len(payloads)

    def per_record(seconds: dict[str, float]) -> str:
        return " ".join(f"{k}={v * 1e6 / n:.1f}" for k, v in seconds.items())

    print(
        f"{n} records of {args.events} event(s), passes of {args.pass_records}, "
        f"{appended} processed records: CPU-µs a record "
        f"all={sum(total.values()) * 1e6 / n:.1f} ({per_record(total)}) | handlers and log: "
        f"{per_record(spent)} | left unconsumed: {left}"
    )


if __name__ == "__main__":
    main()
