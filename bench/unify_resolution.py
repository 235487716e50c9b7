"""Identity resolution on one core: events per second, on the in-memory graph or the SQL graph.

    python bench/unify_resolution.py [--store memory|sqlite|postgresql] [--preload N]
                                     [--events 50000] [--batch 1000] [--built 20000]
                                     [--postgres-url URL] [--profile]

The graph is preloaded with ``--preload`` known users (user_id, anonymous_id, email; default
1,000,000 for the SQL stores, 100,000 in memory): in memory through the Resolver, on SQL in bulk
(rows written straight into the tables), after which the SQL stores also build ``--built``
profiles through the Resolver, in batches, to time that, and report the disk the graph takes.
Then a fresh graph (an empty cache, as after a restart) resolves Segment's realistic mix: 70 %
events of known users, 20 % of anonymous visitors (half new, half returning), 10 % identifies
(half new users signing up with an email, half known users logging in on a visitor's device:
the visitor's profile merges into theirs). On SQL the events go in batches of ``--batch`` per
transaction, as the pipeline stage resolves them: one ``applied_many`` and one ``find_many`` of
the batch's identifiers, then each event (its identifiers extracted once, as the stage does).

Without ``--postgres-url`` a throwaway PostgreSQL cluster (fsync on, shared_buffers 1 GiB) is
started and removed. Figures are CPU time (this process, and the server's processes by kind)
as well as wall time: the machine is shared.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from processes import postgres_server  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from headwater.store.database import (  # noqa: E402
    database_url,
    is_sqlite,
    open_engine,
    write_transaction,
)
from headwater.store.migrations import migrate  # noqa: E402
from headwater.unify.identifiers import Extractor  # noqa: E402
from headwater.unify.memory import MemoryGraph  # noqa: E402
from headwater.unify.profile_ids import ProfileIds  # noqa: E402
from headwater.unify.resolution import Resolver  # noqa: E402
from headwater.unify.sql_graph import SqlGraph  # noqa: E402

STAMP = "2025-03-01T12:00:00.000Z"
AT = 1_740_830_400.0  # STAMP in seconds
SPACE = "spa_bench"
MARKS = ", ".join("?" * 9)
TABLES = ("unify_profiles", "unify_identities", "unify_links", "unify_merges", "unify_applied")


def _event(n: int, kind: str, **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "type": kind,
        "messageId": f"m-{n}",
        "timestamp": STAMP,
        "receivedAt": STAMP,
        "context": {"library": {"name": "analytics.js", "version": "2.11.1"}},
    }
    if kind == "track":
        event["event"] = "Product Viewed"
        event["properties"] = {"product_id": f"p{n % 97}", "price": 19.5}
    event.update(fields)
    return event


def known_user(u: int, n: int) -> dict[str, Any]:
    event = _event(n, "identify", userId=f"user-{u}", anonymousId=f"anon-{u}")
    event["traits"] = {"email": f"user-{u}@example.com"}
    return event


def mix(profiles: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    events = []
    visitors: list[str] = []
    for n in range(count):
        roll = rng.random()
        if roll < 0.7:
            u = rng.randrange(profiles)
            events.append(_event(n, "track", userId=f"user-{u}", anonymousId=f"anon-{u}"))
        elif roll < 0.9:
            if visitors and rng.random() < 0.5:
                visitor = rng.choice(visitors)
            else:
                visitor = f"visitor-{n}"
                visitors.append(visitor)
            events.append(_event(n, "page", anonymousId=visitor))
        else:
            visitor = visitors.pop() if visitors else f"visitor-{n}"
            if rng.random() < 0.5:  # a sign-up: the visitor's profile gets a user id and email
                traits = {"email": f"new-{n}@example.com", "name": "New User"}
                user = f"new-{n}"
            else:  # a known user logs in on this device: the visitor's profile merges
                u = rng.randrange(profiles)
                traits = {"email": f"user-{u}@example.com"}
                user = f"user-{u}"
            events.append(_event(n, "identify", userId=user, anonymousId=visitor, traits=traits))
    return events


# --- the stores -------------------------------------------------------------------------------


@contextmanager
def database(store: str, postgres_url: str | None) -> Iterator[tuple[Engine, int | None]]:
    """A migrated engine, and the pid of the PostgreSQL server when this started it."""
    if store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="headwater-bench-unify-") as tmp:
            engine = open_engine(database_url(Path(tmp), None))
            migrate(engine)
            yield engine, None
            engine.dispose()
        return
    if postgres_url:
        engine = open_engine(database_url(Path("."), postgres_url))
        migrate(engine)
        yield engine, None
        engine.dispose()
        return
    # 1 GiB of shared buffers (128 MiB by default): a server sized for a million profiles
    with postgres_server({"shared_buffers": "1GB"}) as (url, pid):
        engine = open_engine(database_url(Path("."), url))
        migrate(engine)
        yield engine, pid
        engine.dispose()


def server_cpu(postmaster: int | None) -> dict[str, float]:
    """CPU seconds each kind of the PostgreSQL server's processes has used (the backends that
    answer the bench, autovacuum, the checkpointer…; empty when the server is not ours to
    see): the machine is shared, so the figure that counts is CPU time, not wall time."""
    if postmaster is None:
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    used: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode()
        except OSError:
            continue
        if int(entry.name) == postmaster or int(fields[1]) == postmaster:
            kind = "backend" if "127.0.0.1(" in title else title.removeprefix("postgres: ")
            seconds = (int(fields[11]) + int(fields[12])) / tick  # utime + stime
            used[kind] = used.get(kind, 0.0) + seconds
    return used


def bulk_preload(engine: Engine, space: str, profiles: int) -> None:
    """``profiles`` known users written straight into the tables (the Resolver would give the
    same rows: one profile with user_id, anonymous_id and email each)."""
    ids = ProfileIds(5)
    with write_transaction(engine) as conn:
        first = int(
            conn.exec_driver_sql("SELECT COALESCE(MAX(seq), 0) FROM unify_profiles").scalar_one()
        )
        first_identity = int(
            conn.exec_driver_sql("SELECT COALESCE(MAX(seq), 0) FROM unify_identities").scalar_one()
        )
        cursor: Any = conn.connection.cursor()
        profile_rows: list[tuple[Any, ...]] = []
        identity_rows: list[tuple[Any, ...]] = []
        for u in range(profiles):
            seq, mid = first + u + 1, f"preload-{u}"
            profile_rows.append((seq, space, ids.new(AT), "users", AT, 0, 3, "preload", mid))
            for n, (kind, value) in enumerate(
                (
                    ("user_id", f"user-{u}"),
                    ("anonymous_id", f"anon-{u}"),
                    ("email", f"user-{u}@example.com"),
                )
            ):
                identity_rows.append(
                    (
                        first_identity + 3 * u + n + 1,
                        space,
                        "users",
                        kind,
                        value,
                        seq,
                        AT,
                        "preload",
                        mid,
                    )
                )
        profile_columns = (
            "seq, space_id, segment_id, collection, created_at, merges, mappings, source_id, "
            "message_id"
        )
        identity_columns = (
            "seq, space_id, collection, type, value, profile, first_seen, source_id, message_id"
        )
        # the messageIds of the events that made them, as the Resolver would have recorded
        applied_rows = [(space, f"preload-{u}", int(AT)) for u in range(profiles)]
        applied_columns = "space_id, message_id, applied_at"
        if is_sqlite(engine):
            cursor.executemany(
                f"INSERT INTO unify_applied ({applied_columns}) VALUES (?, ?, ?)", applied_rows
            )
            cursor.executemany(
                f"INSERT INTO unify_profiles ({profile_columns}) VALUES ({MARKS})",
                profile_rows,
            )
            cursor.executemany(
                f"INSERT INTO unify_identities ({identity_columns}) VALUES ({MARKS})",
                identity_rows,
            )
        else:
            for table, columns, rows in (
                ("unify_applied", applied_columns, applied_rows),
                ("unify_profiles", profile_columns, profile_rows),
                ("unify_identities", identity_columns, identity_rows),
            ):
                with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
                if table != "unify_applied":
                    cursor.execute(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'seq'), "
                        f"(SELECT MAX(seq) FROM {table}))"
                    )
    # A database at rest, as it is long after its profiles were made: statistics taken, and on
    # PostgreSQL the bulk load vacuumed and checkpointed, so that autovacuum and the checkpointer
    # do not run (and count) during the measurement.
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if is_sqlite(engine):
            conn.exec_driver_sql("ANALYZE")
        else:
            conn.exec_driver_sql("VACUUM ANALYZE unify_profiles, unify_identities, unify_applied")
            conn.exec_driver_sql("CHECKPOINT")


def disk_bytes(engine: Engine) -> int:
    """What the graph's tables take: SQLite's file (its WAL checkpointed into it), PostgreSQL's
    tables with their indexes and TOAST."""
    if is_sqlite(engine):
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        return Path(str(engine.url.database)).stat().st_size
    with engine.connect() as conn:
        names = ", ".join(f"'{t}'" for t in TABLES)
        return int(
            conn.exec_driver_sql(
                "SELECT SUM(pg_total_relation_size(c.oid)) FROM pg_class c "
                f"WHERE c.relname IN ({names})"
            ).scalar_one()
        )


def resolve_batches(
    engine: Engine, graph: SqlGraph, resolver: Resolver, events: list[dict[str, Any]], size: int
) -> dict[str, int]:
    """Resolve ``events`` as the pipeline stage does (``IdentityStage._resolve`` without the
    profile data): a transaction per batch, warmed with one ``applied_many`` and one
    ``find_many``; each event's identifiers extracted once."""
    extractor = Extractor(resolver.settings)
    statuses: dict[str, int] = {}
    for start in range(0, len(events), size):
        batch = events[start : start + size]
        with write_transaction(engine) as conn, graph.batch(conn):
            seen = graph.applied_many([e["messageId"] for e in batch])
            extractions = [extractor.extract(e) for e in batch]
            graph.warm([e.identifiers for e in extractions])
            for event, extraction in zip(batch, extractions, strict=True):
                if event["messageId"] in seen:
                    status = "duplicate"
                else:
                    seen.add(event["messageId"])
                    resolution = resolver.plan(event, "web", extraction)
                    status = resolution.status
                    if status != "dropped":
                        graph.apply(event["messageId"], resolution.changes)
                statuses[status] = statuses.get(status, 0) + 1
    return statuses


class Measured:
    """Wall time and CPU time (this process's, and the PostgreSQL server's when it is ours)
    of what runs inside ``with``; optionally under cProfile. The server's processes that used
    less than ``floor`` seconds are left out (noise over a long run; pass 0 when the block is
    short: a bench adding up many blocks would otherwise drop each one's share)."""

    def __init__(
        self, postmaster: int | None = None, profile: bool = False, floor: float = 0.05
    ) -> None:
        self.postmaster = postmaster
        self.floor = floor
        self.profiler = cProfile.Profile() if profile else None
        self.wall = self.cpu = self.server = 0.0
        self.by_kind: dict[str, float] = {}

    def __enter__(self) -> Measured:
        self._server = server_cpu(self.postmaster)
        self._cpu = time.process_time()
        self._wall = time.perf_counter()
        if self.profiler:
            self.profiler.enable()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.profiler:
            self.profiler.disable()
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        after = server_cpu(self.postmaster)
        self.by_kind = {
            kind: seconds - self._server.get(kind, 0.0)
            for kind, seconds in after.items()
            if seconds - self._server.get(kind, 0.0) >= self.floor
        }
        self.server = sum(self.by_kind.values())

    def rate(self, count: int) -> str:
        cpu = self.cpu + self.server
        kinds = ", ".join(f"{k} {v:.1f}" for k, v in sorted(self.by_kind.items()))
        server = f" + server {self.server:.1f} s ({kinds})" if self.postmaster is not None else ""
        return (
            f"{count / cpu:,.0f}/s per CPU second ({cpu / count * 1e6:.1f} µs: this process "
            f"{self.cpu:.1f} s{server}); {count / self.wall:,.0f}/s wall clock"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--store", choices=["memory", "sqlite", "postgresql"], default="memory")
    parser.add_argument("--preload", type=int, help="known users (1,000,000 SQL, 100,000 memory)")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=1000, help="events per transaction (SQL)")
    parser.add_argument("--built", type=int, default=20_000, help="profiles built via Resolver")
    parser.add_argument("--postgres-url", help="an existing server (its database is written)")
    parser.add_argument("--profile", action="store_true", help="cProfile the mix: top functions")
    args = parser.parse_args()
    preload = args.preload
    if preload is None:
        preload = 100_000 if args.store == "memory" else 1_000_000
    events = mix(preload, args.events, random.Random(5))
    statuses: dict[str, int] = {}

    if args.store == "memory":
        resolver = Resolver(MemoryGraph(), ids=ProfileIds(5))
        with Measured() as took:
            for u in range(preload):
                resolver.resolve(known_user(u, -u - 1), "preload")
        print(f"preload: {preload:,} profiles through the Resolver in {took.wall:.1f} s")
        with Measured(profile=args.profile) as run:
            for event in events:
                status = resolver.resolve(event, "web").status
                statuses[status] = statuses.get(status, 0) + 1
    else:
        with database(args.store, args.postgres_url) as (engine, postmaster):
            with Measured() as took:
                bulk_preload(engine, SPACE, preload)
            size = disk_bytes(engine)
            print(
                f"preload ({args.store}): {preload:,} profiles in bulk in {took.wall:.1f} s; "
                f"the graph's tables take {size / 2**20:,.0f} MiB "
                f"({size / preload * 1e6 / 2**20:,.0f} MiB per 1M profiles)"
            )
            if args.built:
                built_graph = SqlGraph(engine, "spa_built")
                built = [known_user(u, -u - 1) for u in range(args.built)]
                with Measured(postmaster) as took:
                    resolve_batches(
                        engine,
                        built_graph,
                        Resolver(built_graph, ids=ProfileIds(6)),
                        built,
                        args.batch,
                    )
                print(
                    f"built through the Resolver: {args.built:,} profiles, "
                    f"{took.rate(args.built)}: {took.wall / args.built * 1e6 / 60:,.1f} min "
                    "per 1M"
                )
            sql = SqlGraph(engine, SPACE)  # a fresh one: an empty cache
            resolver = Resolver(sql, ids=ProfileIds(7))
            with Measured(postmaster, args.profile) as run:
                statuses = resolve_batches(engine, sql, resolver, events, args.batch)
    print(
        f"mix on {args.store} (70 % known, 20 % anonymous, 10 % identifying; {preload:,} "
        f"profiles preloaded): {run.rate(args.events)}; {statuses}"
    )
    if run.profiler:
        pstats.Stats(run.profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
