"""Erasing one subject from a 10 M-row DuckDB warehouse (the issue's target: within 5 minutes,
together with 1 GB of archive, which bench/erasure_archive.py measures).

    python bench/erasure_warehouse.py [--rows 10000000] [--users 1000000] [--keep DIR]

The warehouse is built with DuckDB SQL, not through the pipeline (a sync of 10 M events would
take minutes and measure the loader): a source's schema in Segment's shape — ``tracks`` (40 %),
``order_completed`` (20 %, the same events' property table), ``pages`` (25 %), ``identifies``
(10 %), ``groups`` (5 %), and ``users`` (one row per user) — with ``--users`` users, each with
an anonymous id; the subject's rows carry a marker string. The eraser then runs as the
deletion runner calls it (``WarehouseEraser.erase``, state on SQLite): the sync lease, one
``DELETE`` per table, and the file rewritten so the marker leaves its bytes. Reported: the
whole erasure, and the rewrite apart; the check that the marker is gone.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import duckdb  # noqa: E402

from headwater.privacy.erasure import Erasure, Subjects  # noqa: E402
from headwater.store.database import database_url, open_engine  # noqa: E402
from headwater.store.migrations import migrate  # noqa: E402
from headwater.store.workspace import WorkspaceStore  # noqa: E402
from headwater.warehouse.connect import duckdb_path  # noqa: E402
from headwater.warehouse.erasure import WarehouseEraser  # noqa: E402
from headwater.warehouse.loaders.duckdb import DuckDBLoader  # noqa: E402
from headwater.warehouse.store import WarehouseStore  # noqa: E402

MARKER = "bench-marker-c41e77"

_COMMON = """
    'msg-' || i AS id,
    'anon-' || (i % {users}) AS anonymous_id,
    'user-' || (i % {users}) AS user_id,
    TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * INTERVAL 1 SECOND AS received_at,
    TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * INTERVAL 1 SECOND AS sent_at,
    TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * INTERVAL 1 SECOND AS timestamp,
    TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * INTERVAL 1 SECOND AS original_timestamp,
    uuid() AS uuid,
    TIMESTAMPTZ '2024-01-01 00:00:00+00' AS uuid_ts,
    'analytics.js' AS context_library_name,
    '2.1.0' AS context_library_version,
    '10.0.' || (i % 250) || '.' || (i % 199) AS context_ip,
    'https://example.com/p/' || (i % 5000) AS context_page_url"""


def build(path: Path, rows: int, users: int, subject: int) -> dict[str, int]:
    """The schema ``web`` of ``rows`` rows in all; rows per table."""
    shares = {"tracks": 40, "order_completed": 20, "pages": 25, "identifies": 10, "groups": 5}
    extra = {
        "tracks": "'Order Completed' AS event, 'Order Completed' AS event_text",
        "order_completed": "'Order Completed' AS event, 'Order Completed' AS event_text, "
        "(i % 997) * 1.5 AS total, 'sku-' || (i % 20000) AS product_id, "
        f"CASE WHEN i % {users} = {subject} THEN '{MARKER}' ELSE 'note-' || (i % 100) END AS note",
        "pages": "'Home' AS name, '/p/' || (i % 5000) AS path",
        "identifies": "'user' || (i % {users}) || '@example.com' AS email, "
        f"CASE WHEN i % {users} = {subject} THEN '{MARKER}' ELSE 'plan-' || (i % 4) END AS plan",
        "groups": "'g-' || (i % 5000) AS group_id, 'Acme ' || (i % 5000) AS name",
    }
    counts: dict[str, int] = {}
    conn = duckdb.connect(str(path))
    try:
        conn.execute("SET TimeZone = 'UTC'")
        conn.execute("CREATE SCHEMA web")
        for table, share in shares.items():
            n = (rows - users) * share // 100  # the users table's rows count too
            counts[table] = n
            select = (_COMMON + ", " + extra[table]).format(users=users)
            conn.execute(f"CREATE TABLE web.{table} AS SELECT {select} FROM range({n}) AS r(i)")
        conn.execute(
            "CREATE TABLE web.users AS SELECT 'user-' || i AS id, "
            "'user' || i || '@example.com' AS email, "
            f"CASE WHEN i = {subject} THEN '{MARKER}' ELSE 'plan-' || (i % 4) END AS plan, "
            "TIMESTAMPTZ '2024-01-01 00:00:00+00' AS received_at, uuid() AS uuid "
            f"FROM range({users}) AS r(i)"
        )
        counts["users"] = users
    finally:
        conn.close()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, help="build in this directory and keep it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = args.keep or Path(scratch)
        data_dir.mkdir(parents=True, exist_ok=True)
        engine = open_engine(database_url(data_dir, None))
        migrate(engine)
        workspace = WorkspaceStore(engine)
        workspace_id = workspace.ensure_workspace("bench").id
        workspace.create_source("Web", slug="web")
        warehouses = WarehouseStore(workspace)
        warehouse = warehouses.create("bench", "duckdb")
        path = duckdb_path(warehouse, data_dir)

        started = time.perf_counter()
        number = args.users // 3  # the user erased
        counts = build(path, args.rows, args.users, number)
        built = time.perf_counter() - started
        size = path.stat().st_size
        tables = ", ".join(f"{t} {n:,}" for t, n in counts.items())
        # DuckDB compresses strings (FSST) in large segments: the marker may not be readable
        # in the bytes even before, so the tests check the bytes on a small file.
        before = path.read_bytes().count(MARKER.encode())
        print(
            f"built {sum(counts.values()):,} rows ({tables}) in {built:.1f} s; "
            f"file {size / 1e6:.0f} MB; marker readable in the file: {before}"
        )

        compacting = 0.0
        compact = DuckDBLoader.compact

        def timed(self: DuckDBLoader) -> None:
            nonlocal compacting
            began = time.perf_counter()
            compact(self)
            compacting += time.perf_counter() - began

        DuckDBLoader.compact = timed  # type: ignore[method-assign]
        subject = f"user-{number}"
        erasure = Erasure(
            "reg_bench",
            workspace_id,
            Subjects(user_ids=frozenset({subject}), anonymous_ids=frozenset({f"anon-{number}"})),
            created_at=time.time(),
        )
        eraser = WarehouseEraser(warehouses, warehouse, data_dir)
        started = time.perf_counter()
        outcome = eraser.erase(erasure)
        took = time.perf_counter() - started
        assert outcome is None, outcome
        left = path.read_bytes().count(MARKER.encode())
        conn = duckdb.connect(str(path), read_only=True)
        try:
            remaining = sum(
                conn.execute(f"SELECT count(*) FROM web.{t}").fetchone()[0]  # type: ignore[index]
                for t in counts
            )
            theirs = conn.execute(
                "SELECT count(*) FROM web.tracks WHERE user_id = ?", [subject]
            ).fetchone()
        finally:
            conn.close()
        print(
            f"erased {sum(counts.values()) - remaining:,} rows of {subject} in {took:.1f} s "
            f"(deletes {took - compacting:.1f} s, file rewritten in {compacting:.1f} s); "
            f"marker left in the file: {left}; the subject's tracks left: "
            f"{theirs[0] if theirs else '?'}"
        )


if __name__ == "__main__":
    main()
