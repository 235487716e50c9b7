"""Per-event cost of the privacy controls stage (spec §9.7, §24 step 3).

    python bench/privacy_controls.py [--events 20000]

Records of 100 typical Track events (a dozen properties, a context) go through
`PrivacyControlsStage.process` with an Inventory of 20 fields and a control blocking Red on the
source, three shapes: (a) events that carry a blocked field (decode, strip, encode), (b) events
that carry none (the raw-bytes check only), (c) a source without a control (one dict probe per
record). Then the same for `Matchers.classify_key` on fresh and cached keys, which the Inbox
and masking pay.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import msgspec  # noqa: E402

from headwater.privacy.controls import Controls, PrivacyControlsStage  # noqa: E402
from headwater.privacy.inventory import Inventory  # noqa: E402
from headwater.privacy.matchers import Matchers  # noqa: E402
from headwater.store.database import database_url, open_engine  # noqa: E402
from headwater.store.migrations import migrate  # noqa: E402
from headwater.store.record import VERSION, LogRecord  # noqa: E402
from headwater.store.workspace import WorkspaceStore  # noqa: E402


def _event(n: int, blocked: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {f"p{k}": k for k in range(10)}
    properties["total"] = 9.5
    if blocked:
        properties["card_number"] = "4111111111111111"
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"u{n}",
        "messageId": f"m{n}",
        "timestamp": "2026-12-07T10:00:00.000Z",
        "properties": properties,
        "context": {"library": {"name": "analytics.js", "version": "2.0"}, "ip": "1.2.3.4"},
    }


def _records(source: str, events: int, blocked: bool) -> list[LogRecord]:
    raws = [msgspec.Raw(msgspec.json.encode(_event(n, blocked))) for n in range(events)]
    return [
        LogRecord(VERSION, "ws", source, "2026-12-07T10:00:00.000Z", events=raws[i : i + 100])
        for i in range(0, events, 100)
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=20000)
    events = parser.parse_args().events
    with tempfile.TemporaryDirectory() as tmp:
        engine = open_engine(database_url(Path(tmp), None))
        migrate(engine)
        store = WorkspaceStore(engine)
        store.ensure_workspace("bench")
        source = store.create_source("android").id
        inventory = Inventory(store)
        inventory.classify("properties.card_number", "RED")
        for k in range(19):
            inventory.classify(f"properties.secret_{k}", "RED" if k % 2 else "YELLOW")
        Controls(store).set(source, block_red=True, block_yellow=False)
        stage = PrivacyControlsStage(engine, config_version=store.config_version, clock=time.time)
        stage.refresh()

        def per_event(label: str, source_id: str, blocked: bool) -> None:
            """The best of five passes, each over freshly built records (the stage changes
            the records it is given), the building left out of the time."""
            best = float("inf")
            for _ in range(5):
                records = _records(source_id, events, blocked)
                started = time.perf_counter()
                stage.process(0, records)
                best = min(best, time.perf_counter() - started)
            print(f"{label:<58} {best / events * 1e6:7.2f} µs/event")

        per_event("(a) controlled source, the event carries a Red field", source, True)
        per_event("(b) controlled source, no blocked field in the event", source, False)
        per_event("(c) a source without a control", "other", True)

        matchers = Matchers()
        keys = [f"properties.field_{n}" for n in range(events)]
        started = time.perf_counter()
        for key in keys:
            matchers.classify_key(key)
        fresh = time.perf_counter() - started
        started = time.perf_counter()
        for key in keys:
            matchers.classify_key(key)
        cached = time.perf_counter() - started
        print(f"{'classify_key, a key first seen':<58} {fresh / events * 1e6:7.2f} µs/key")
        print(
            f"{'classify_key, a key seen before (cached)':<58} {cached / events * 1e6:7.2f} µs/key"
        )


if __name__ == "__main__":
    main()
