"""Batch Engage: a full recompute of 20 audiences over Profiles Sync tables.

    python bench/engage_batch.py [--profiles 1000000] [--events 20000000] [--file PATH]
                                 [--database postgresql://…] [--keep]

Writes ``--profiles`` profiles and ``--events`` events straight into a DuckDB file in the
shape Profiles Sync gives a space's schema (``profile_merges`` with a merged-away id for one
profile in ten, ``user_identifiers``, ``user_traits``, ``pages`` and one table per Track event
with one column per property, every row with ``segment_id`` and ``event_source_id``), made by
DuckDB's own ``range()`` SQL, so generating 20 million rows takes seconds. Event timestamps
spread over the last 120 days. Then 20 audiences — counts in windows, property conditions,
sums, trait conditions, a ``between`` window, a funnel, a dynamic trait reference, audiences
built on others' computed traits — are compiled by ``headwater.engage.batch`` and run one
after the other, each fetching its members (as the engine would). Prints the time per
audience and in total, the peak RSS of this process (DuckDB runs in it) and the file's size.

``--database``: the same data copied into that PostgreSQL database (schema ``bench_batch``)
and the audiences run there too (bulk COPY from the DuckDB file; practical at smaller scales).
"""

# ruff: noqa: E501  (the audiences read best one definition a line)

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import duckdb  # noqa: E402

from headwater.engage import batch  # noqa: E402
from headwater.engage.language import parse  # noqa: E402
from headwater.warehouse.loaders import sql_column_type  # noqa: E402
from headwater.warehouse.naming import naming_for  # noqa: E402

SCHEMA = "bench_batch"
NOW = 1_772_368_200.0  # 2026-03-01 12:30 UTC
DAYS = 120
# (table, event name, share of the events, property columns as SQL over the row number i)
EVENTS: list[tuple[str, str, float, dict[str, str]]] = [
    (
        "pages",
        "Page Viewed",
        0.30,
        {
            "url": "CASE i % 5 WHEN 0 THEN 'https://shop.example/pricing' "
            "WHEN 1 THEN 'https://shop.example/docs' ELSE 'https://shop.example/' END",
            "name": "CASE i % 3 WHEN 0 THEN 'Home' WHEN 1 THEN 'Pricing' ELSE 'Docs' END",
        },
    ),
    (
        "product_viewed",
        "Product Viewed",
        0.25,
        {
            "category": "['shoes','bags','hats','socks','cosmetics','books'][1 + (i * 7) % 6]",
            "sku": "'sku-' || CAST((i * 13) % 500 AS VARCHAR)",
            "price": "CAST(5 + (i * 11) % 200 AS DOUBLE)",
        },
    ),
    (
        "product_added",
        "Product Added",
        0.15,
        {
            "sku": "'sku-' || CAST((i * 17) % 500 AS VARCHAR)",
            "price": "CAST(5 + (i * 3) % 200 AS DOUBLE)",
        },
    ),
    (
        "order_completed",
        "Order Completed",
        0.10,
        {
            "category": "['shoes','bags','hats','socks','cosmetics','books'][1 + (i * 5) % 6]",
            "revenue": "CAST(10 + (i * 31) % 490 AS DOUBLE)",
            "coupon": "CASE WHEN i % 4 = 0 THEN 'SPRING' END",
        },
    ),
    (
        "logged_in",
        "Logged In",
        0.15,
        {"method": "CASE i % 2 WHEN 0 THEN 'password' ELSE 'sso' END"},
    ),
    ("signed_up", "Signed Up", 0.05, {"plan": "CASE i % 3 WHEN 0 THEN 'pro' ELSE 'free' END"}),
]

TRAITS = {
    "revenue_180_days": "event('Order Completed').within(180 days).sum(property('revenue'))",
    "orders_30_days": "event('Order Completed').within(30 days).count()",
    "favourite_category": "event('Product Viewed').mode(property('category'), 2)",
}
AUDIENCES: list[tuple[str, str]] = [
    ("active_7_days", "event('Logged In').within(7 days).count() >= 1"),
    ("active_30_days", "event('Logged In').within(30 days).count() >= 3"),
    (
        "dormant",
        "event('Logged In').count() >= 1 AND event('Logged In').within(60 days).count() = 0",
    ),
    (
        "pricing_curious",
        "event('Page Viewed').where(property('url').contains('pricing')).within(14 days).count() >= 2",
    ),
    ("repeat_buyers", "event('Order Completed').within(90 days).count() >= 3"),
    (
        "cosmetics_fans",
        "event('Order Completed').where(property('category') = 'cosmetics').within(90 days).sum(property('revenue')) >= 200",
    ),
    ("coupon_users", "event('Order Completed').where(property('coupon').exists()).count() >= 1"),
    ("browsers", "event('Product Viewed').within(30 days).count() >= 5"),
    (
        "wide_browsers",
        "event('Product Viewed').within(90 days).unique(property('category')).count() >= 4",
    ),
    (
        "big_ticket",
        "event('Product Viewed').where(property('price') > 150).within(30 days).count() >= 2",
    ),
    ("pro_plan", "trait('plan') = 'pro'"),
    ("high_score", "trait('score') >= 80"),
    ("high_value", "trait('revenue_180_days') > 1000"),
    ("shoe_lovers", "trait('favourite_category') = 'shoes'"),
    (
        "lapsed_buyers",
        "event('Order Completed').between(30 days, 90 days).count() >= 1 AND trait('orders_30_days') = 0",
    ),
    (
        "abandoned_cart",
        "event('Product Added').where(event('Order Completed').within(parent: 1 days).count() = 0).within(14 days).count() >= 1",
    ),
    (
        "viewed_favourite",
        "event('Product Viewed').where(property('category') = trait('favourite_category')).within(7 days).count() >= 1",
    ),
    ("vip", "trait('high_value') = true AND trait('repeat_buyers') = true"),
    (
        "new_not_buying",
        "event('Signed Up').within(30 days).count() >= 1 AND NOT event('Order Completed').count() >= 1",
    ),
    (
        "engaged",
        "(trait('browsers') = true OR trait('pricing_curious') = true) AND trait('active_30_days') = true",
    ),
]


def generate(conn: duckdb.DuckDBPyConnection, profiles: int, events: int) -> None:
    """Profiles Sync's tables, bulk, by SQL."""
    s = SCHEMA
    conn.execute(f"CREATE SCHEMA {s}")
    start = NOW - DAYS * 86_400
    merged = profiles // 10
    conn.execute(
        f"CREATE TABLE {s}.profile_merges AS "
        f"SELECT 'use_' || CAST(i AS VARCHAR) AS id, 'use_' || CAST(i AS VARCHAR) AS segment_id, "
        f"'use_' || CAST(i AS VARCHAR) AS canonical_segment_id, i AS seq, "
        f"to_timestamp({start}) AS timestamp, to_timestamp({start}) AS received_at, "
        f"to_timestamp({NOW}) AS uuid_ts FROM range({profiles}) t(i) "
        # one profile in ten has a second id, merged into it
        f"UNION ALL SELECT 'old_' || CAST(i AS VARCHAR), 'old_' || CAST(i AS VARCHAR), "
        f"'use_' || CAST(i * 10 AS VARCHAR), {profiles} + i, to_timestamp({start}), "
        f"to_timestamp({start}), to_timestamp({NOW}) FROM range({merged}) t(i)"
    )
    conn.execute(
        f"CREATE TABLE {s}.user_identifiers AS "
        f"SELECT md5(CAST(i AS VARCHAR)) AS id, 'use_' || CAST(i AS VARCHAR) AS "
        f"canonical_segment_id, CASE WHEN i % 10 < 7 THEN 'user_id' ELSE 'anonymous_id' END "
        f"AS type, 'id-' || CAST(i AS VARCHAR) AS value, i AS seq, to_timestamp({start}) AS "
        f"timestamp, to_timestamp({start}) AS received_at, to_timestamp({NOW}) AS uuid_ts "
        f"FROM range({profiles}) t(i)"
    )
    conn.execute(
        f"CREATE TABLE {s}.user_traits AS "
        f"SELECT md5('p' || CAST(i AS VARCHAR)) AS id, 'use_' || CAST(i AS VARCHAR) AS "
        f"canonical_segment_id, 'plan' AS name, CASE WHEN i % 4 = 0 THEN 'pro' ELSE 'free' END "
        f"AS value, i AS seq, to_timestamp({start}) AS timestamp, to_timestamp({start}) AS "
        f"received_at, to_timestamp({NOW}) AS uuid_ts FROM range({profiles}) t(i) "
        f"UNION ALL SELECT md5('s' || CAST(i AS VARCHAR)), 'use_' || CAST(i AS VARCHAR), "
        f"'score', CAST((i * 37) % 100 AS VARCHAR), i, to_timestamp({start}), "
        f"to_timestamp({start}), to_timestamp({NOW}) FROM range({profiles}) t(i) "
        f"WHERE i % 2 = 0"
    )
    offset = 0
    for table, name, share, properties in EVENTS:
        count = int(events * share)
        # events by a skewed choice of profile (some are busy), a tenth through the old id
        profile = f"CAST(floor(pow(random(), 2) * {profiles}) AS BIGINT)"
        columns = ", ".join(f"{sql} AS {column}" for column, sql in properties.items())
        track = (
            f"{literal(name)} AS event_text, {literal(table)} AS event, "
            if table != "pages"
            else ""
        )
        conn.execute(
            f"CREATE TABLE {s}.{table} AS SELECT id, segment_id, event_source_id, timestamp, "
            "received_at, timestamp AS sent_at, timestamp AS original_timestamp, uuid_ts, "
            f"anonymous_id, user_id, context_library_name, context_library_version, {track}"
            f"{columns} FROM (SELECT 'm' || CAST(i + {offset} AS VARCHAR) AS id, "
            f"CASE WHEN p < {merged} AND i % 3 = 0 THEN 'old_' || CAST(p AS VARCHAR) "
            f"ELSE 'use_' || CAST(CASE WHEN p < {merged} AND i % 3 = 0 THEN p * 10 ELSE p END "
            "AS VARCHAR) END AS segment_id, "
            "CASE WHEN i % 5 = 0 THEN 'src_ios' ELSE 'src_web' END AS event_source_id, "
            f"to_timestamp({start} + random() * {DAYS * 86_400}) AS timestamp, "
            f"to_timestamp({NOW} - random() * 86400) AS received_at, "
            f"to_timestamp({NOW}) AS uuid_ts, NULL::VARCHAR AS anonymous_id, "
            "'id-' || CAST(p AS VARCHAR) AS user_id, 'analytics.js' AS context_library_name, "
            "'2.1' AS context_library_version, i "
            f"FROM (SELECT i, {profile} AS p FROM range({count}) t(i)))"
        )
        offset += count


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def columns_of(conn: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    found: dict[str, dict[str, str]] = {}
    for table, column, sql_type in conn.execute(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = ?",
        [SCHEMA],
    ).fetchall():
        found.setdefault(table, {})[column] = sql_column_type(sql_type)
    return found


def compile_all(columns: dict[str, dict[str, str]], dialect: batch.Dialect) -> dict[str, str]:
    references = {
        key: batch.Reference("trait", parse(text, purpose="trait")) for key, text in TRAITS.items()
    }
    for key, text in AUDIENCES:
        references[key] = batch.Reference("audience", parse(text, purpose="audience"))
    naming = naming_for("duckdb" if dialect == "duckdb" else "postgres")
    return {
        key: batch.compile(
            parse(text, purpose="audience"),
            dialect=dialect,
            schema=SCHEMA,
            naming=naming,
            columns=columns,
            now=NOW,
            references={k: r for k, r in references.items() if k != key},
        )
        for key, text in AUDIENCES
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_duckdb(conn: duckdb.DuckDBPyConnection, queries: dict[str, str]) -> float:
    total = 0.0
    for key, sql in queries.items():
        started = time.perf_counter()
        members = conn.sql(sql).to_arrow_table().num_rows
        took = time.perf_counter() - started
        total += took
        print(
            f"  {key:<18} {members:>9,} members  {took:7.2f} s  (peak RSS {peak_rss_mb():,.0f} MB)"
        )
    return total


def run_postgres(url: str, conn: duckdb.DuckDBPyConnection, queries: dict[str, str]) -> float:
    import psycopg

    with psycopg.connect(url, autocommit=True) as pg:
        pg.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        pg.execute(f"CREATE SCHEMA {SCHEMA}")
        types = {"varchar": "TEXT", "integer": "BIGINT", "float": "DOUBLE PRECISION",
                 "boolean": "BOOLEAN", "timestamp": "TIMESTAMPTZ"}  # fmt: skip
        started = time.perf_counter()
        for table, cols in columns_of(conn).items():
            names = list(cols)
            pg.execute(
                f"CREATE TABLE {SCHEMA}.{table} ("
                + ", ".join(f'"{c}" {types[t]}' for c, t in cols.items())
                + ")"
            )
            select = ", ".join(f'"{c}"' for c in names)
            reader = conn.execute(f"SELECT {select} FROM {SCHEMA}.{table}")
            with pg.cursor().copy(f"COPY {SCHEMA}.{table} ({select}) FROM STDIN") as copy:
                while rows := reader.fetchmany(50_000):
                    for row in rows:
                        copy.write_row(row)
            pg.execute(f"ANALYZE {SCHEMA}.{table}")
        print(f"  copied into PostgreSQL in {time.perf_counter() - started:.1f} s")
        pg.execute("SET TimeZone = 'UTC'")
        total = 0.0
        for key, sql in queries.items():
            started = time.perf_counter()
            members = len(pg.execute(sql).fetchall())
            took = time.perf_counter() - started
            total += took
            print(f"  {key:<18} {members:>9,} members  {took:7.2f} s")
        return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=20_000_000)
    parser.add_argument("--file", type=Path, default=None, help="the DuckDB file (a temp one)")
    parser.add_argument("--database", default=None, help="also run on this PostgreSQL URL")
    parser.add_argument("--keep", action="store_true", help="keep the DuckDB file")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="engage-batch-"))
    path = args.file or folder / "warehouse.duckdb"
    if path.exists():
        path.unlink()
    conn = duckdb.connect(str(path))
    conn.execute("SET TimeZone = 'UTC'")
    started = time.perf_counter()
    generate(conn, args.profiles, args.events)
    conn.execute("CHECKPOINT")
    print(
        f"generated {args.profiles:,} profiles and {args.events:,} events in "
        f"{time.perf_counter() - started:.1f} s; DuckDB file {path.stat().st_size / 2**20:,.0f} MB"
    )
    columns = columns_of(conn)
    queries = compile_all(columns, "duckdb")
    print(f"20 audiences on DuckDB ({duckdb.__version__}):")
    total = run_duckdb(conn, queries)
    print(f"DuckDB: {total:.1f} s in total, {total / len(queries):.2f} s an audience; "
          f"peak RSS {peak_rss_mb():,.0f} MB; file {path.stat().st_size / 2**20:,.0f} MB")  # fmt: skip
    if args.database:
        print("20 audiences on PostgreSQL:")
        total = run_postgres(args.database, conn, compile_all(columns, "postgresql"))
        print(f"PostgreSQL: {total:.1f} s in total, {total / len(queries):.2f} s an audience")
    conn.close()
    if not args.keep and args.file is None:
        path.unlink()
        Path(f"{path}.wal").unlink(missing_ok=True)
        folder.rmdir()


if __name__ == "__main__":
    main()
