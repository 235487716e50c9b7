"""Warehouse load throughput: Segment-shaped rows into DuckDB and PostgreSQL.

    python bench/warehouse.py [--events 1000000] [--chunk 50000] [--only duckdb|postgres]
                              [--postgres-url URL]

Events are generated in the shape the rows module hands over — 60 % tracks (five event
names: a ``tracks`` row plus an ``<event>`` row with properties), 25 % pages, 10 % identifies
(``identifies`` + the ``users`` upsert), 5 % groups (``groups`` + ``accounts``) — with 1 % of
messages sent twice (dedupe) and 20,000 users. They are loaded chunk by chunk (``--chunk``
events, as a sync does), one ``load`` per table and chunk, through one loader session, as a
sync run would. Only the loader's time counts (Arrow conversion, casts, SQL, commit, and the
final close — DuckDB checkpoints then); generating the rows is reported apart.

Without ``--postgres-url`` a throwaway PostgreSQL cluster is started on a loopback port (like
tests/support/postgres.py) with its default durability settings (fsync on), and removed afterwards.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from processes import postgres_server  # noqa: E402

from headwater.warehouse.columns import ColumnType, TableRows  # noqa: E402
from headwater.warehouse.loaders import Loader, open_loader  # noqa: E402

SCHEMA = "bench_web"
EVENTS = ["Order Completed", "Product Viewed", "Product Added", "Signed Up", "Checkout Started"]
TABLES = {name: name.lower().replace(" ", "_") for name in EVENTS}
PLANS = ["free", "pro", "team", "enterprise"]
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _type(value: Any) -> ColumnType:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, datetime):
        return "timestamp"
    return "varchar"


class Generator:
    """Deterministic rows for ``count`` events starting at event number ``first``."""

    def __init__(self, users: int = 20_000, seed: int = 7) -> None:
        self.users = users
        self.random = random.Random(seed)

    def chunk(self, first: int, count: int) -> dict[str, TableRows]:
        rnd = self.random
        tables: dict[str, list[dict[str, Any]]] = {}
        now = datetime.now(UTC)
        for n in range(first, first + count):
            # 1 % of messages are sent again (a retry): same id, later in the stream.
            number = n - 50 if n % 100 == 99 and n >= 50 else n
            user = rnd.randrange(self.users)
            at = T0 + timedelta(seconds=number * 3)
            common: dict[str, Any] = {
                "id": f"msg-{number:012d}-{number * 2654435761 % 4294967296:08x}",
                "anonymous_id": f"anon-{user:08d}",
                "received_at": at + timedelta(milliseconds=120),
                "sent_at": at,
                "timestamp": at,
                "original_timestamp": at,
                "uuid": f"{number:032x}",
                "uuid_ts": now,
                "context_library_name": "analytics.js",
                "context_library_version": "5.2.0",
                "context_ip": f"203.0.113.{user % 250}",
                "context_page_path": "/shop/item",
                "context_locale": "en-US",
                "context_user_agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0",
            }
            if user % 3:
                common["user_id"] = f"user-{user:08d}"
            kind = n % 20
            if kind < 12:
                event = EVENTS[rnd.randrange(len(EVENTS))]
                track = {**common, "event": TABLES[event], "event_text": event}
                tables.setdefault("tracks", []).append(track)
                tables.setdefault(TABLES[event], []).append(
                    {
                        **track,
                        "order_id": f"o-{number}",
                        "revenue": round(rnd.random() * 200, 2),
                        "quantity": rnd.randrange(1, 5),
                        "currency": "USD",
                        "coupon": None if n % 4 else "SPRING",
                        "is_gift": n % 7 == 0,
                    }
                )
            elif kind < 17:
                tables.setdefault("pages", []).append(
                    {
                        **common,
                        "name": "Item",
                        "path": "/shop/item",
                        "url": f"https://example.com/shop/item?i={number % 500}",
                        "title": "An item",
                        "referrer": "https://search.example/",
                    }
                )
            elif kind < 19:
                traits = {
                    "email": f"user{user}@example.com",
                    "plan": PLANS[n % 4],
                    "logins": n % 50,
                    "verified": n % 2 == 0,
                }
                tables.setdefault("identifies", []).append({**common, **traits})
                if "user_id" in common:
                    tables.setdefault("users", []).append(
                        {
                            "id": common["user_id"],
                            "received_at": common["received_at"],
                            "sent_at": at,
                            "timestamp": at,
                            "original_timestamp": at,
                            "uuid": common["uuid"],
                            "uuid_ts": now,
                            **traits,
                        }
                    )
            else:
                group = f"group-{user % 500:05d}"
                traits = {
                    "name": f"Company {user % 500}",
                    "employees": user % 500 + 1,
                    "industry": "Retail",
                }
                tables.setdefault("groups", []).append({**common, "group_id": group, **traits})
                tables.setdefault("accounts", []).append(
                    {
                        "id": group,
                        "received_at": common["received_at"],
                        "timestamp": at,
                        "uuid_ts": now,
                        **traits,
                    }
                )
        out: dict[str, TableRows] = {}
        for name, rows in tables.items():
            latest: dict[str, Any] = {}
            for row in rows:
                latest.update({k: v for k, v in row.items() if v is not None})
            out[name] = TableRows(name, rows, {k: _type(v) for k, v in latest.items()})
        return out


def run(kind: str, target: str, events: int, chunk: int) -> dict[str, float]:
    generator = Generator()
    loaded = rows = inserted = notices = 0
    load_seconds = generate_seconds = 0.0
    started = time.perf_counter()
    loader: Loader = open_loader(kind, target)
    loader.ping()
    for first in range(0, events, chunk):
        t = time.perf_counter()
        tables = generator.chunk(first, min(chunk, events - first))
        generate_seconds += time.perf_counter() - t
        t = time.perf_counter()
        for table_rows in tables.values():
            result = loader.load(SCHEMA, table_rows)
            rows += len(table_rows.rows)
            inserted += result.rows
            notices += len(result.notices)
        load_seconds += time.perf_counter() - t
        loaded += min(chunk, events - first)
        print(
            f"  {kind}: {loaded:>9,}/{events:,} events, {rows:>9,} rows, "
            f"{loaded / load_seconds:>8,.0f} events/s, {rows / load_seconds:>8,.0f} rows/s",
            flush=True,
        )
    t = time.perf_counter()
    loader.close()
    load_seconds += time.perf_counter() - t
    counts = open_loader(kind, target)
    _, table_counts = counts.query(
        f"SELECT count(*) FROM {SCHEMA}.tracks"
    )  # sanity: the rows are there
    counts.close()
    return {
        "events": events,
        "rows": rows,
        "inserted": inserted,
        "notices": notices,
        "load_s": load_seconds,
        "generate_s": generate_seconds,
        "wall_s": time.perf_counter() - started,
        "tracks": table_counts[0][0],
        "events_per_s": events / load_seconds,
        "rows_per_s": rows / load_seconds,
    }


def report(kind: str, figures: dict[str, float]) -> None:
    print(
        f"{kind}: {figures['events']:,.0f} events → {figures['rows']:,.0f} rows "
        f"({figures['inserted']:,.0f} inserted/upserted, {figures['notices']:.0f} notices) "
        f"in {figures['load_s']:.1f} s of loading: "
        f"{figures['events_per_s']:,.0f} events/s, {figures['rows_per_s']:,.0f} rows/s "
        f"(generating the rows took {figures['generate_s']:.1f} s more)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=50_000, help="events per load round")
    parser.add_argument("--only", choices=["duckdb", "postgres"])
    parser.add_argument("--postgres-url", help="an existing server (its database is written)")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    if args.only in (None, "duckdb"):
        with tempfile.TemporaryDirectory(prefix="headwater-bench-") as tmp:
            print(f"DuckDB ({tmp}/warehouse.duckdb)", flush=True)
            results["duckdb"] = run("duckdb", f"{tmp}/warehouse.duckdb", args.events, args.chunk)
    if args.only in (None, "postgres"):
        if args.postgres_url:
            print("PostgreSQL (given server)", flush=True)
            results["postgres"] = run("postgres", args.postgres_url, args.events, args.chunk)
        else:
            with postgres_server() as (url, _):
                print(f"PostgreSQL (throwaway server {url})", flush=True)
                results["postgres"] = run("postgres", url, args.events, args.chunk)
    print()
    for kind, figures in results.items():
        report(kind, figures)


if __name__ == "__main__":
    main()
