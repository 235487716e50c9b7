"""Profiles Sync's cost: recording resolved events in the outbox, and loading them into DuckDB.

    python bench/profiles_sync.py [--profiles 20000] [--events 50000] [--batch 500]
                                  [--postgres] [--one-by-one]

A SQLite state database and a DuckDB warehouse in a temporary directory; with ``--postgres``
both on a throwaway PostgreSQL cluster (fsync on), the warehouse in a schema of its own.
``--profiles`` known users are resolved first (before Profiles Sync: not recorded), then
``--events`` events of ``bench/unify_resolution.py``'s mix (70 % known users, 20 % anonymous
visitors, 10 % identifies with an email) are resolved on the in-memory graph and recorded,
``--batch`` events per state transaction as the identity stage commits them, through
``record_many`` (``--one-by-one``: ``record`` per event). Reported: the feed's own time per
event (resolution apart), then one warehouse sync that loads the whole outbox into the space's
schema (raw, event and materialized tables, views) and prunes it.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from processes import postgres_server  # noqa: E402
from unify_resolution import _event, mix  # noqa: E402

from headwater.store.archive import Archive  # noqa: E402
from headwater.store.database import database_url, open_engine, write_transaction  # noqa: E402
from headwater.store.migrations import migrate  # noqa: E402
from headwater.store.workspace import WorkspaceStore  # noqa: E402
from headwater.unify.memory import MemoryGraph  # noqa: E402
from headwater.unify.profile_ids import ProfileIds  # noqa: E402
from headwater.unify.profiles_sync import ProfilesSyncFeed, Resolved  # noqa: E402
from headwater.unify.resolution import Resolver  # noqa: E402
from headwater.unify.spaces import SpaceStore  # noqa: E402
from headwater.warehouse.store import WarehouseStore  # noqa: E402
from headwater.warehouse.sync import WarehouseSync  # noqa: E402

NOW = 1740830400.0  # 2025-03-01T12:00:00Z, the events' time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--one-by-one", action="store_true", help="record, not record_many")
    args = parser.parse_args()
    if args.postgres:
        with postgres_server() as (url, _):
            run(args, url)
    else:
        run(args, None)


def run(args: argparse.Namespace, postgres: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        engine = open_engine(database_url(data, postgres))
        migrate(engine)
        workspace = WorkspaceStore(engine)
        workspace.ensure_workspace("bench")
        source = workspace.create_source("web", slug="web")
        warehouses = WarehouseStore(workspace)
        if postgres is None:
            warehouse = warehouses.create("wh", "duckdb")
        else:
            parts = urlsplit(postgres)
            settings = {
                "host": parts.hostname,
                "port": parts.port,
                "database": parts.path.lstrip("/"),
                "user": parts.username,
            }
            warehouse = warehouses.create("wh", "postgres", settings=settings)
        space = SpaceStore(workspace).create(
            "Bench Space", sources=[source.id], profiles_sync=(warehouse.id, None)
        )
        resolver = Resolver(MemoryGraph(), ids=ProfileIds(5))
        for u in range(args.profiles):
            traits = {"email": f"user-{u}@example.com"}
            known = _event(-u - 1, "identify", userId=f"user-{u}", anonymousId=f"anon-{u}")
            resolver.resolve({**known, "traits": traits}, source.id)
        events = mix(args.profiles, args.events, random.Random(5))
        feed = ProfilesSyncFeed()

        resolving = recording = 0.0
        for start in range(0, len(events), args.batch):
            t0 = time.perf_counter()
            done = []
            for event in events[start : start + args.batch]:
                resolution = resolver.resolve(event, source.id)
                traits = dict(event.get("traits") or {})
                told = [(resolution.user, traits)] if traits and resolution.user else []
                done.append(Resolved(source.id, event, resolution, told))
            t1 = time.perf_counter()
            with write_transaction(engine) as conn:
                if args.one_by_one:
                    for item in done:
                        feed.record(
                            conn, space.id, item.source_id, item.event, item.resolution, item.traits
                        )
                else:
                    feed.record_many(conn, space.id, done)
            recording += time.perf_counter() - t1
            resolving += t1 - t0
        n = len(events)
        print(f"resolve: {n} events in {resolving:.2f} s ({n / resolving:,.0f} events/s)")
        print(
            f"record:  {n} events in {recording:.2f} s ({n / recording:,.0f} events/s, "
            f"{recording / n * 1e6:.0f} µs/event, batches of {args.batch})"
        )

        (data / "archive").mkdir()
        sync = WarehouseSync(warehouses, Archive(data / "archive"), data, clock=lambda: NOW)
        t0 = time.perf_counter()
        result = sync.run(warehouses.require(warehouse.id))
        took = time.perf_counter() - t0
        rows = result.rows.get("bench_space", {})
        print(
            f"load:    {n} events in {took:.2f} s ({n / took:,.0f} events/s) status "
            f"{result.status}; rows: {dict(sorted(rows.items()))}"
        )


if __name__ == "__main__":
    main()
