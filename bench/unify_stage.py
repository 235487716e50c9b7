"""Identity resolution as the server runs it: the ``unify`` stage's passes, events per second.

    python bench/unify_stage.py [--store sqlite|postgresql] [--preload 1000000]
                                [--events 50000] [--postgres-url URL] [--profile]

Where ``bench/unify_resolution.py`` measures the graph alone, this runs ``IdentityStage`` on
processed-stream records (20 events a record, 2,000 events a pass, as the consumer hands them
over): per pass one transaction with the graph's changes, each event's profile data (traits,
timeline, metadata), Profiles Insights and the Profiles Sync feed (the space syncs to a
warehouse), and the offsets. The space is preloaded with ``--preload`` known users, then
resolves ``unify_resolution.mix``: 70 % known users, 20 % anonymous visitors, 10 % identifying.
The figure that counts is CPU time on one core (this process, plus PostgreSQL's backends when
the bench started the server): the machine may be shared.
"""

from __future__ import annotations

import argparse
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from unify_resolution import Measured, bulk_preload, database, disk_bytes, mix  # noqa: E402

from headwater.store.archive import Archive  # noqa: E402
from headwater.store.record import encode_record  # noqa: E402
from headwater.store.workspace import WorkspaceStore  # noqa: E402
from headwater.unify.spaces import SpaceStore  # noqa: E402
from headwater.unify.stage import IdentityStage  # noqa: E402
from headwater.warehouse.store import WarehouseStore  # noqa: E402

EVENTS_PER_RECORD = 20
RECORDS_PER_PASS = 100
PARTITIONS = 8


def records(workspace_id: str, source_id: str, events: list[dict[str, Any]]) -> list[bytes]:
    return [
        encode_record(
            workspace_id,
            source_id,
            events[i]["receivedAt"],
            events[i : i + EVENTS_PER_RECORD],
        )
        for i in range(0, len(events), EVENTS_PER_RECORD)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--preload", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--postgres-url", default=None)
    parser.add_argument("--profile", action="store_true", help="cProfile the passes")
    args = parser.parse_args()

    with database(args.store, args.postgres_url) as (engine, postmaster):
        workspace = WorkspaceStore(engine)
        workspace_id = workspace.ensure_workspace("bench").id
        source_id = workspace.create_source("web").id
        WarehouseStore(workspace).create("lake-house", "duckdb")
        space = SpaceStore(workspace).create(
            "bench", sources=["web"], profiles_sync=("lake-house", None)
        )
        started = time.perf_counter()
        bulk_preload(engine, space.id, args.preload)
        print(
            f"preload: {args.preload:,} profiles written in {time.perf_counter() - started:.0f} s"
        )
        events = mix(args.preload, args.events, random.Random(9))
        warm, payloads = (
            records(workspace_id, source_id, events[:1]),
            records(workspace_id, source_id, events[1:]),
        )
        with tempfile.TemporaryDirectory(prefix="headwater-bench-archive-") as archive:
            stage = IdentityStage(engine, Archive(archive))
            stage([(0, 1, warm[0])])  # the space loaded, the statements prepared
            offset = PARTITIONS
            with Measured(postmaster, args.profile) as measured:
                for start in range(0, len(payloads), RECORDS_PER_PASS):
                    handed = []
                    for payload in payloads[start : start + RECORDS_PER_PASS]:
                        offset += 1
                        handed.append((offset % PARTITIONS, offset, payload))
                    stage(handed)
        print(
            f"stage, mix (70 % known, 20 % anonymous, 10 % identifying) over "
            f"{args.preload:,} profiles on {args.store}: {measured.rate(len(events) - 1)}"
        )
        print(f"disk: {disk_bytes(engine) / 1e6:,.0f} MB (graph tables; SQLite: the whole file)")
        if measured.profiler:
            pstats.Stats(measured.profiler).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main()
