"""Profiles Insights' cost in the identity stage's transaction, and a profile CSV's checks and
sending: what Unify's bookkeeping adds per event and per row.

    python bench/unify_insights.py [--events 50000] [--rows 200000] [--only sqlite|postgres]
                                   [--postgres-url URL]

Insights: the realistic mix of bench/unify_resolution.py (70 % known users, 20 % anonymous
visitors, 10 % identifying) is resolved on the in-memory graph first (not timed); then its
resolutions are recorded the way the stage would, in transactions of 2,000 events (the chain's
batch): ``record_many`` once per transaction, and ``record`` once per event. The figure is the
time recording adds per event of the mix (most events write nothing).

CSV: a file of ``--rows`` rows (user_id, email, three traits) is checked (``check``) and turned
into Identify calls in chunks (``send_rows``) appended to the ingest log through
``InternalAppend``: rows per second for each.

Without ``--postgres-url`` a throwaway PostgreSQL cluster is started (bench/processes.py).
"""

from __future__ import annotations

import argparse
import io
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from processes import postgres_server  # noqa: E402
from unify_resolution import _event, mix  # noqa: E402

from headwater.ingest.internal import InternalAppend  # noqa: E402
from headwater.store.database import open_engine, write_transaction  # noqa: E402
from headwater.store.ingest_log import open_ingest_log  # noqa: E402
from headwater.store.migrations import migrate  # noqa: E402
from headwater.unify import csv_upload  # noqa: E402
from headwater.unify.insights import Entry, Insights  # noqa: E402
from headwater.unify.memory import MemoryGraph  # noqa: E402
from headwater.unify.profile_ids import ProfileIds  # noqa: E402
from headwater.unify.resolution import Resolver  # noqa: E402
from headwater.unify.settings import IdentitySettings  # noqa: E402

BATCH = 2000


def resolutions(profiles: int, events: int) -> list[Entry]:
    resolver = Resolver(MemoryGraph(), ids=ProfileIds(5))
    for u in range(profiles):
        event = _event(-u - 1, "identify", userId=f"user-{u}", anonymousId=f"anon-{u}")
        event["traits"] = {"email": f"user-{u}@example.com"}
        resolver.resolve(event, "preload")
    settings = resolver.settings
    return [
        Entry("spa_bench", "src_web", event, resolver.resolve(event, "web"), settings)
        for event in mix(profiles, events, random.Random(5))
    ]


def bench_insights(url: str, entries: list[Entry]) -> dict[str, float]:
    engine = open_engine(url)
    migrate(engine)
    figures: dict[str, float] = {}
    writing = sum(1 for e in entries if Insights().rows(e, 0))
    print(f"  {writing} of {len(entries)} events make records", flush=True)
    started = time.perf_counter()
    for _ in range(0, len(entries), BATCH):
        with write_transaction(engine) as conn:
            conn.exec_driver_sql("SELECT 1")
    baseline = (time.perf_counter() - started) / len(entries) * 1e6
    print(f"  an empty transaction per batch: {baseline:.1f} µs per event (included below)")
    for label in ("record_many", "record"):
        insights = Insights()
        started = time.perf_counter()
        written = 0
        for at in range(0, len(entries), BATCH):
            batch = entries[at : at + BATCH]
            with write_transaction(engine) as conn:
                if label == "record_many":
                    written += insights.record_many(conn, batch)
                else:
                    for entry in batch:
                        written += insights.record(conn, *entry)
        elapsed = time.perf_counter() - started
        figures[label] = elapsed / len(entries) * 1e6
        print(
            f"  {label}: {figures[label]:.1f} µs per event of the mix, "
            f"{len(entries) / elapsed:,.0f} events/s ({written} rows written, the bound "
            "trims the rest)",
            flush=True,
        )
    engine.dispose()
    return figures


def csv_file(rows: int) -> bytes:
    out = io.StringIO()
    out.write("user_id,email,First Name,plan,city\n")
    for n in range(rows):
        out.write(f"user-{n},user-{n}@example.com,Name {n},pro,Lisbon\n")
    return out.getvalue().encode()


def bench_csv(url: str, data_dir: Path, rows: int) -> dict[str, float]:
    engine = open_engine(url)
    migrate(engine)
    path = data_dir / "people.csv"
    path.write_bytes(csv_file(rows))
    settings = IdentitySettings()
    started = time.perf_counter()
    with path.open("rb") as binary:
        checked = csv_upload.check(csv_upload.text_lines(binary), settings)
    check_seconds = time.perf_counter() - started
    log = open_ingest_log(engine, data_dir, durability="normal", clock=time.time)
    appender = InternalAppend(log, clock=time.time)
    started = time.perf_counter()
    with path.open("rb") as binary:
        sent = csv_upload.send_rows(
            csv_upload.text_lines(binary),
            checked.columns,
            "upl_bench",
            lambda chunk: appender.append("ws", "src", chunk),
            lambda _: None,
        )
    send_seconds = time.perf_counter() - started
    log.close()
    engine.dispose()
    size = path.stat().st_size / 1e6
    figures = {"check": rows / check_seconds, "send": sent / send_seconds}
    print(
        f"  {rows} rows ({size:.1f} MB): check {figures['check']:,.0f} rows/s, "
        f"send as Identify calls {figures['send']:,.0f} rows/s "
        f"({csv_upload.CHUNK_ROWS} per ingest record)",
        flush=True,
    )
    return figures


def run(name: str, url: str, data_dir: Path, entries: list[Entry], rows: int) -> None:
    print(f"{name}:", flush=True)
    bench_insights(url, entries)
    bench_csv(url, data_dir, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--profiles", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    parser.add_argument("--postgres-url", help="an existing server (its database is written)")
    args = parser.parse_args()
    entries = resolutions(args.profiles, args.events)
    if args.only in (None, "sqlite"):
        with tempfile.TemporaryDirectory(prefix="headwater-bench-") as tmp:
            run("SQLite", f"sqlite:///{tmp}/state.db", Path(tmp), entries, args.rows)
    if args.only in (None, "postgres"):
        with tempfile.TemporaryDirectory(prefix="headwater-bench-") as tmp:
            if args.postgres_url:
                run("PostgreSQL", args.postgres_url, Path(tmp), entries, args.rows)
            else:
                with postgres_server() as (url, _):
                    run("PostgreSQL", url, Path(tmp), entries, args.rows)


if __name__ == "__main__":
    main()
