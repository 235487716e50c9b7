"""Per-event cost of suppression at ingest with 100,000 suppressed users (issue 16's target).

    python bench/suppression.py [--events 200000] [--suppressed 100000]

A state database gets ``--suppressed`` users suppressed workspace-wide (SUPPRESS_ONLY
regulations of 5,000, processed by the deletion runner as the worker does), plus 1,000 more
for the source. Then records of 100 typical track events (about 600 bytes each) go through
``SuppressionStage.process``: none of them suppressed (the common case: decode the userId,
probe two sets), and one in ten suppressed (the record is rebuilt without them). The figure
is the stage's time per event; the target is ≤ 2 µs per event.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import msgspec  # noqa: E402

from headwater.privacy.regulations import (  # noqa: E402
    MAX_SUBJECTS_PER_CALL,
    SOURCE,
    WORKSPACE,
    Regulations,
)
from headwater.privacy.runner import DeletionRunner  # noqa: E402
from headwater.privacy.suppression import SuppressionStage  # noqa: E402
from headwater.store.database import database_url, open_engine  # noqa: E402
from headwater.store.migrations import migrate  # noqa: E402
from headwater.store.record import VERSION, LogRecord  # noqa: E402

PER_RECORD = 100


def event(user_id: str, n: int) -> msgspec.Raw:
    return msgspec.Raw(
        msgspec.json.encode(
            {
                "type": "track",
                "event": "Order Completed",
                "messageId": f"m-{n}",
                "anonymousId": f"anon-{n}",
                "userId": user_id,
                "timestamp": "2026-01-01T00:00:00.000Z",
                "receivedAt": "2026-01-01T00:00:00.100Z",
                "context": {
                    "library": {"name": "analytics.js", "version": "next-1.70.0"},
                    "ip": "203.0.113.9",
                    "page": {"path": "/checkout", "url": "https://shop.test/checkout"},
                    "userAgent": "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
                },
                "properties": {"order_id": f"o-{n}", "total": 42.5, "currency": "EUR"},
            }
        )
    )


def records(events: list[msgspec.Raw]) -> list[LogRecord]:
    return [
        LogRecord(
            v=VERSION,
            workspace_id="ws",
            source_id="web",
            received_at="2026-01-01T00:00:00.100Z",
            events=events[i : i + PER_RECORD],
        )
        for i in range(0, len(events), PER_RECORD)
    ]


def timed(stage: SuppressionStage, batches: list[LogRecord], fresh: bool) -> float:
    """Seconds per event of one pass (best of three)."""
    best = float("inf")
    total = sum(len(r.events) for r in batches)
    for _ in range(3):
        work = (
            [
                LogRecord(r.v, r.workspace_id, r.source_id, r.received_at, list(r.events))
                for r in batches
            ]
            if fresh
            else batches
        )
        start = time.perf_counter()
        stage.process(0, work)
        best = min(best, time.perf_counter() - start)
    return best / total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--suppressed", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(database_url(Path(tmp), None))
        migrate(engine)
        regulations = Regulations(engine)
        ids = [f"suppressed-user-{n}" for n in range(args.suppressed)]
        for start in range(0, len(ids), MAX_SUBJECTS_PER_CALL):
            chunk = ids[start : start + MAX_SUBJECTS_PER_CALL]
            regulations.create("ws", WORKSPACE, "SUPPRESS_ONLY", "USER_ID", chunk)
        regulations.create(
            "ws",
            SOURCE,
            "SUPPRESS_ONLY",
            "USER_ID",
            [f"src-{n}" for n in range(1000)],
            source_id="web",
        )
        DeletionRunner(engine, [], []).run_due()
        stage = SuppressionStage(engine)
        (Path(tmp) / "empty").mkdir()
        bare = open_engine(database_url(Path(tmp) / "empty", None))
        migrate(bare)
        empty = SuppressionStage(bare)

        clean = records([event(f"user-{n}", n) for n in range(args.events)])
        mixed = records(
            [
                event(ids[n % len(ids)] if n % 10 == 0 else f"user-{n}", n)
                for n in range(args.events)
            ]
        )
        loaded = sum(len(s) for s in stage._sets.get().values())
        print(f"suppressed subjects loaded: {loaded}")
        print(f"events per pass: {args.events} in records of {PER_RECORD}")
        print(f"none suppressed:      {timed(stage, clean, fresh=False) * 1e6:.2f} µs/event")
        print(f"one in ten suppressed: {timed(stage, mixed, fresh=True) * 1e6:.2f} µs/event")
        print(f"no suppressions at all: {timed(empty, clean, fresh=False) * 1e6:.3f} µs/event")
        engine.dispose()


if __name__ == "__main__":
    main()
