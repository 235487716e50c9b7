"""Bring a state database up to the current schema.

Migrations are numbered and recorded in ``schema_migrations``. Each one is idempotent — it
creates what is missing and leaves what exists — so migration 1 may create tables in their
current shape and a later migration that adds a column checks for it first. Several processes
may start at once against PostgreSQL; an advisory lock makes them take turns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.store import schema
from headwater.store.database import is_sqlite, write_transaction

LOG_PARTITIONS = 8
INGEST_PARTITIONS = 8


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Connection], None]


def _create_tables(conn: Connection) -> None:
    schema.metadata.create_all(conn, checkfirst=True)


def _privacy_portal(conn: Connection) -> None:
    """The Portal's tables, and PII Access on Profile API tokens (existing ones keep it)."""
    _create_tables(conn)
    present = {c["name"] for c in sa.inspect(conn).get_columns("space_access_tokens")}
    if "pii_access" not in present:
        conn.execute(
            sa.text(
                "ALTER TABLE space_access_tokens ADD COLUMN pii_access BOOLEAN NOT NULL "
                "DEFAULT TRUE"
            )
        )


def _seed_log_partitions(conn: Connection) -> None:
    existing = {row[0] for row in conn.execute(sa.select(schema.log_partitions.c.partition))}
    missing = [
        {"partition": p, "next_offset": 1} for p in range(LOG_PARTITIONS) if p not in existing
    ]
    if missing:
        conn.execute(schema.log_partitions.insert(), missing)


def _add_filters_and_mappings(conn: Connection) -> None:
    present = {c["name"] for c in sa.inspect(conn).get_columns("destinations")}
    for column in ("filters", "mappings"):
        if column not in present:
            conn.execute(
                sa.text(f"ALTER TABLE destinations ADD COLUMN {column} JSON NOT NULL DEFAULT '[]'")
            )


def _jobs_per_mapping(conn: Connection) -> None:
    """``delivery_jobs`` gets ``mapping_id`` and a unique key that includes it."""
    present = {c["name"] for c in sa.inspect(conn).get_columns("delivery_jobs")}
    if "mapping_id" in present:
        return
    jobs = schema.delivery_jobs
    if conn.dialect.name == "sqlite":  # SQLite cannot drop a constraint: rebuild the table
        conn.execute(sa.text("ALTER TABLE delivery_jobs RENAME TO delivery_jobs_old"))
        conn.execute(sa.text("DROP INDEX IF EXISTS ix_delivery_jobs_due"))
        jobs.create(conn)
        columns = ", ".join(c.name for c in jobs.columns if c.name != "mapping_id")
        conn.execute(
            sa.text(
                f"INSERT INTO delivery_jobs ({columns}) SELECT {columns} FROM delivery_jobs_old"
            )
        )
        conn.execute(sa.text("DROP TABLE delivery_jobs_old"))
        return
    conn.execute(
        sa.text("ALTER TABLE delivery_jobs ADD COLUMN mapping_id VARCHAR(40) NOT NULL DEFAULT ''")
    )
    conn.execute(sa.text("ALTER TABLE delivery_jobs DROP CONSTRAINT uq_delivery_jobs_message"))
    for index in jobs.indexes:
        if index.name == "uq_delivery_jobs_message_mapping":
            index.create(conn)


def _ingest_log_and_stage_chain(conn: Connection) -> None:
    """The ingest log's tables, the stage chain's positions and the dedup stage's runs; the
    old per-key ``dedup`` table goes (keys claimed at ingest are superseded by the stage)."""
    _create_tables(conn)
    existing = {row[0] for row in conn.execute(sa.select(schema.ingest_partitions.c.partition))}
    missing = [
        {"partition": p, "next_offset": 1} for p in range(INGEST_PARTITIONS) if p not in existing
    ]
    if missing:
        conn.execute(schema.ingest_partitions.insert(), missing)
    conn.execute(sa.text("DROP TABLE IF EXISTS dedup"))


def _processed_references(conn: Connection) -> None:
    """``log_records`` may name an ingest log record instead of holding a copy of it."""
    present = {c["name"] for c in sa.inspect(conn).get_columns("log_records")}
    for column, kind in (("ingest_partition", "INTEGER"), ("ingest_offset", "BIGINT")):
        if column not in present:
            conn.execute(sa.text(f"ALTER TABLE log_records ADD COLUMN {column} {kind}"))
    for index in schema.log_records.indexes:
        index.create(conn, checkfirst=True)


def _tracking_plans(conn: Connection) -> None:
    """Tracking plans, their rules, libraries, sources and changelog; sources get
    ``schema_settings``."""
    present = {c["name"] for c in sa.inspect(conn).get_columns("sources")}
    if "schema_settings" not in present:
        conn.execute(
            sa.text("ALTER TABLE sources ADD COLUMN schema_settings JSON NOT NULL DEFAULT '{}'")
        )
    _create_tables(conn)


def _space_identity(conn: Connection) -> None:
    """``spaces`` gets ``identity``, the space's identity settings (NULL: Segment's defaults)."""
    present = {c["name"] for c in sa.inspect(conn).get_columns("spaces")}
    if "identity" not in present:
        conn.execute(sa.text("ALTER TABLE spaces ADD COLUMN identity JSON"))


def _space_source_replays(conn: Connection) -> None:
    """``space_sources`` gets the state of each connection's replay; connections made before
    identity resolution ran are replayed too (nothing was resolved for them)."""
    present = {c["name"] for c in sa.inspect(conn).get_columns("space_sources")}
    for column, kind in (
        ("replayed_at", "BIGINT"),
        ("replay_hour", "BIGINT"),
        ("replay_skip", "INTEGER"),
    ):
        if column not in present:
            conn.execute(sa.text(f"ALTER TABLE space_sources ADD COLUMN {column} {kind}"))


def _journey_backfill(conn: Connection) -> None:
    """``engage_journey_versions`` gets ``backfill_after``: "Use historical data" still to do."""
    present = {c["name"] for c in sa.inspect(conn).get_columns("engage_journey_versions")}
    if "backfill_after" not in present:
        conn.execute(
            sa.text("ALTER TABLE engage_journey_versions ADD COLUMN backfill_after VARCHAR(40)")
        )


def _user_subscriptions(conn: Connection) -> None:
    """Engage's user subscriptions: states per contact vector and group, subscription groups,
    subscription CSV error reports; ``unify_csv_uploads`` gets ``kind`` and ``custom_trait``."""
    present = {c["name"] for c in sa.inspect(conn).get_columns("unify_csv_uploads")}
    if "kind" not in present:
        conn.execute(
            sa.text(
                "ALTER TABLE unify_csv_uploads ADD COLUMN kind VARCHAR(20) NOT NULL "
                "DEFAULT 'profiles'"
            )
        )
    if "custom_trait" not in present:
        conn.execute(sa.text("ALTER TABLE unify_csv_uploads ADD COLUMN custom_trait VARCHAR(200)"))
    _create_tables(conn)


def _list_audiences(conn: Connection) -> None:
    """``engage_connections`` keeps a list destination's external audience: its id, the last
    hook failure and when to try again."""
    present = {c["name"] for c in sa.inspect(conn).get_columns("engage_connections")}
    for column, kind in (
        ("external_audience_id", "VARCHAR(500)"),
        ("audience_error", "TEXT"),
        ("audience_retry_at", "BIGINT"),
    ):
        if column not in present:
            conn.execute(sa.text(f"ALTER TABLE engage_connections ADD COLUMN {column} {kind}"))


def _erasure_indexes(conn: Connection) -> None:
    """An erasure deletes a profile's journey steps by profile id, not by a scan of the log."""
    index = next(
        i for i in schema.engage_journey_log.indexes if i.name == "ix_engage_journey_log_profile"
    )
    index.create(conn, checkfirst=True)


def _functions(conn: Connection) -> None:
    """Functions, their versions and logs; sources get the source function they run and
    destinations their insert function, each with its settings."""
    _create_tables(conn)
    for table, columns in (
        ("sources", ("function_id", "function_settings")),
        ("destinations", ("insert_function_id", "insert_function_settings")),
    ):
        present = {c["name"] for c in sa.inspect(conn).get_columns(table)}
        function_id, settings = columns
        if function_id not in present:
            conn.execute(sa.text(f"ALTER TABLE {table} ADD COLUMN {function_id} VARCHAR(40)"))
        if settings not in present:
            conn.execute(
                sa.text(f"ALTER TABLE {table} ADD COLUMN {settings} JSON NOT NULL DEFAULT '{{}}'")
            )


def _function_usage(conn: Connection) -> None:
    """Functions' monthly usage, and insert functions' Enable Function toggle (existing
    instances keep theirs on)."""
    _create_tables(conn)
    present = {c["name"] for c in sa.inspect(conn).get_columns("destinations")}
    if "insert_function_enabled" not in present:
        conn.execute(
            sa.text(
                "ALTER TABLE destinations ADD COLUMN insert_function_enabled BOOLEAN NOT NULL "
                "DEFAULT TRUE"
            )
        )


def _iam(conn: Connection) -> None:
    """IAM's tables, and the default labels every workspace has (§20.4)."""
    _create_tables(conn)
    labels = schema.iam_labels
    present = {(r.key, r.value) for r in conn.execute(sa.select(labels.c.key, labels.c.value))}
    defaults = [("environment", "dev"), ("environment", "prod")]
    missing = [
        {"key": k, "value": v, "description": "", "created_at": int(time.time())}
        for k, v in defaults
        if (k, v) not in present
    ]
    if missing:
        conn.execute(labels.insert(), missing)


def _invites_and_mfa(conn: Connection) -> None:
    """Invites, and members' TOTP secrets (§20.7) where ``iam_users`` predates the column."""
    _create_tables(conn)
    present = {c["name"] for c in sa.inspect(conn).get_columns("iam_users")}
    if "totp_secret" not in present:
        conn.execute(sa.text("ALTER TABLE iam_users ADD COLUMN totp_secret TEXT"))


MIGRATIONS: list[Migration] = [
    Migration(1, "create tables", _create_tables),
    Migration(2, "seed event log partitions", _seed_log_partitions),
    Migration(3, "destinations and delivery queues", _create_tables),
    Migration(4, "destination filters and mappings", _add_filters_and_mappings),
    Migration(5, "delivery jobs per mapping", _jobs_per_mapping),
    Migration(6, "warehouses, their positions and sync history", _create_tables),
    Migration(7, "ingest log, stage chain and dedup runs", _ingest_log_and_stage_chain),
    Migration(8, "processed records that name their ingest log record", _processed_references),
    Migration(9, "tracking plans and source schema settings", _tracking_plans),
    Migration(10, "protocols: blocked events, violations, monthly tracked users", _create_tables),
    Migration(11, "protocols transformations", _create_tables),
    Migration(12, "source schema and schema controls", _create_tables),
    Migration(13, "unify spaces: sources, access tokens, profiles sync", _create_tables),
    Migration(14, "unify spaces' identity settings", _space_identity),
    Migration(15, "unify identity graph", _create_tables),
    Migration(16, "unify profile traits, events and metadata", _create_tables),
    Migration(17, "unify profiles sync: outbox, profile pointers, positions", _create_tables),
    Migration(18, "unify: profiles insights and profile csv uploads", _create_tables),
    Migration(19, "unify: replays of newly connected sources", _space_source_replays),
    Migration(
        20, "engage: sources, computations, connections, profile state, outbox", _create_tables
    ),
    Migration(
        21, "unify: user subscriptions, groups and subscription csv uploads", _user_subscriptions
    ),
    Migration(22, "engage: sql traits, their values and runs", _create_tables),
    Migration(23, "engage: journeys, their versions, members and step log", _create_tables),
    Migration(24, "engage: batch runs, real-time vectors and staged results", _create_tables),
    Migration(25, "engage: list destinations' external audiences", _list_audiences),
    Migration(26, "engage: journeys' historical entry", _journey_backfill),
    Migration(27, "privacy: regulations, their steps, suppressed subjects", _create_tables),
    Migration(28, "privacy: erasing profiles (journey steps by profile)", _erasure_indexes),
    Migration(29, "privacy: consent categories and destination field encryption", _create_tables),
    Migration(30, "privacy portal: matchers, inbox, inventory, controls, alerts", _privacy_portal),
    Migration(31, "privacy: workspace, space and source data deletions", _create_tables),
    Migration(32, "functions: versions, logs, source and insert functions", _functions),
    Migration(33, "functions: source functions' requests and objects", _create_tables),
    Migration(34, "functions: usage, insert functions' Enable toggle", _function_usage),
    Migration(35, "iam: users, groups, api tokens, permissions, labels", _iam),
    Migration(36, "the audit trail and its forwarding", _create_tables),
    Migration(37, "the web app's sessions", _create_tables),
    Migration(38, "counters: hourly totals", _create_tables),
    Migration(39, "iam: invites and two-factor authentication", _invites_and_mfa),
]


def migrate(engine: Engine) -> list[int]:
    """Apply every pending migration; return the versions applied now."""
    applied_now: list[int] = []
    with write_transaction(engine) as conn:
        if not is_sqlite(engine):
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242001)"))
        schema.schema_migrations.create(conn, checkfirst=True)
        done = {row[0] for row in conn.execute(sa.select(schema.schema_migrations.c.version))}
        for migration in MIGRATIONS:
            if migration.version in done:
                continue
            migration.apply(conn)
            conn.execute(
                schema.schema_migrations.insert().values(
                    version=migration.version,
                    name=migration.name,
                    applied_at=int(time.time()),
                )
            )
            applied_now.append(migration.version)
    return applied_now
