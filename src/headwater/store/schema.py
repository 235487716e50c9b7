"""Every table of the state database, as SQLAlchemy Core metadata.

One place to read the whole persistent state. Migrations (``migrations.py``) create these
tables; modules that own a concept (``log.py``, ``workspace.py``, …) query them.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# SQLite only makes an INTEGER PRIMARY KEY a rowid alias (auto-increment); BigInteger is not.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

schema_migrations = sa.Table(
    "schema_migrations",
    metadata,
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.BigInteger, nullable=False),
)

# --- workspace model -------------------------------------------------------------------------

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("slug", sa.String(200), nullable=False, unique=True),
    sa.Column("settings", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

sources = sa.Table(
    "sources",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("slug", sa.String(200), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("settings", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # Protocols schema settings (Segment's `PATCH /sources/{id}/settings` body); {}: defaults.
    sa.Column("schema_settings", sa.JSON, nullable=False, default=dict),
    # The source function this source runs (migration 32; NULL: none) and its settings for
    # this source, secrets included (shown redacted, like destination secrets).
    sa.Column("function_id", sa.String(40), nullable=True),
    sa.Column("function_settings", sa.JSON, nullable=False, default=dict),
    sa.UniqueConstraint("workspace_id", "name", name="uq_sources_name"),
    sa.UniqueConstraint("workspace_id", "slug", name="uq_sources_slug"),
)

write_keys = sa.Table(
    "write_keys",
    metadata,
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column(
        "source_id", sa.String(40), sa.ForeignKey("sources.id", ondelete="CASCADE"), nullable=False
    ),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # A rotated-out key keeps working until it expires (NULL: no expiry).
    sa.Column("expires_at", sa.BigInteger, nullable=True),
    sa.Index("ix_write_keys_source", "source_id"),
)

destinations = sa.Table(
    "destinations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column(
        "source_id",
        sa.String(40),
        sa.ForeignKey("sources.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("settings", sa.JSON, nullable=False, default=dict),  # secrets included
    # How Headwater delivers (retry window, concurrency, rate): see DeliveryOptions.
    sa.Column("delivery", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # Destination filters (destinations/filters.py) and Actions mappings, in their order.
    sa.Column("filters", sa.JSON, nullable=False, default=list),
    sa.Column("mappings", sa.JSON, nullable=False, default=list),
    # The insert function run before this instance's rendering (migration 32; NULL: none) and
    # its settings for this instance, secrets included (shown redacted).
    sa.Column("insert_function_id", sa.String(40), nullable=True),
    sa.Column("insert_function_settings", sa.JSON, nullable=False, default=dict),
    # The insert function's Enable Function toggle (migration 34): off, events pass unmodified.
    sa.Column("insert_function_enabled", sa.Boolean, nullable=False, default=True),
    sa.UniqueConstraint("workspace_id", "name", name="uq_destinations_name"),
    sa.Index("ix_destinations_source", "source_id"),
)

# --- the event log (see docs/event-log.md) ---------------------------------------------------

log_partitions = sa.Table(
    "log_partitions",
    metadata,
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
)

log_records = sa.Table(
    "log_records",
    metadata,
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("offset", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("appended_at", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    # A record the stage chain passed on unchanged is not copied: it names its ingest log
    # record (payload empty), which the ingest log keeps until every group has read it.
    sa.Column("ingest_partition", sa.Integer, nullable=True),
    sa.Column("ingest_offset", sa.BigInteger, nullable=True),
    sa.Index("ix_log_records_ingest", "ingest_partition", "ingest_offset"),
)

log_groups = sa.Table(
    "log_groups",
    metadata,
    sa.Column("group_name", sa.String(100), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("committed_offset", sa.BigInteger, nullable=False),
    sa.Column("owner", sa.String(100), nullable=True),
    sa.Column("lease_expires_at", sa.BigInteger, nullable=False, default=0),
)

log_members = sa.Table(
    "log_members",
    metadata,
    sa.Column("group_name", sa.String(100), primary_key=True),
    sa.Column("owner", sa.String(100), primary_key=True),
    sa.Column("heartbeat_at", sa.BigInteger, nullable=False),
)

# --- the ingest log on a shared database, and the stage chain (see docs/event-log.md) -------

# On PostgreSQL the ingest log is these two tables; on SQLite it is segment files of its own
# (store/segments.py). Partitions are keyed by workspace.
ingest_partitions = sa.Table(
    "ingest_partitions",
    metadata,
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("next_offset", sa.BigInteger, nullable=False),
)

ingest_records = sa.Table(
    "ingest_records",
    metadata,
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("offset", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("appended_at", sa.BigInteger, nullable=False),
    sa.Column("payload", sa.LargeBinary, nullable=False),
)

# How far the stage chain has read each ingest log partition, and who holds it.
stage_positions = sa.Table(
    "stage_positions",
    metadata,
    sa.Column("group_name", sa.String(100), primary_key=True),
    sa.Column("partition", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("committed_offset", sa.BigInteger, nullable=False),
    sa.Column("owner", sa.String(100), nullable=True),
    sa.Column("lease_expires_at", sa.BigInteger, nullable=False, default=0),
)

stage_members = sa.Table(
    "stage_members",
    metadata,
    sa.Column("group_name", sa.String(100), primary_key=True),
    sa.Column("owner", sa.String(100), primary_key=True),
    sa.Column("heartbeat_at", sa.BigInteger, nullable=False),
)

# The dedup stage's keys, compactly: one row per commit and hour holds packed 8-byte keys.
dedup_runs = sa.Table(
    "dedup_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("partition", sa.Integer, nullable=False),
    sa.Column("hour", sa.BigInteger, nullable=False),  # epoch hour the keys were first seen
    sa.Column("packed", sa.LargeBinary, nullable=False),
    sa.Index("ix_dedup_runs_partition_hour", "partition", "hour"),
)

# --- observability: counters (Delivery Overview) and the debugger -----------------------------

counters = sa.Table(
    "counters",
    metadata,
    sa.Column("minute", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("source_id", sa.String(40), primary_key=True),
    sa.Column("destination_id", sa.String(40), primary_key=True),
    sa.Column("step", sa.String(60), primary_key=True),
    sa.Column("reason", sa.String(100), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

# Hourly totals of ``counters`` for completed hours (migration 38), rolled up by the worker's
# maintenance, so a day's overview sums 24 rows a key instead of 1,440.
counter_hours = sa.Table(
    "counter_hours",
    metadata,
    sa.Column("hour", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("source_id", sa.String(40), primary_key=True),
    sa.Column("destination_id", sa.String(40), primary_key=True),
    sa.Column("step", sa.String(60), primary_key=True),
    sa.Column("reason", sa.String(100), primary_key=True),
    sa.Column("count", sa.BigInteger, nullable=False),
)

counter_samples = sa.Table(
    "counter_samples",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("destination_id", sa.String(40), nullable=False),
    sa.Column("step", sa.String(60), nullable=False),
    sa.Column("reason", sa.String(100), nullable=False),
    sa.Column("recorded_at", sa.BigInteger, nullable=False),
    sa.Column("sample", sa.JSON, nullable=False),
    sa.Index("ix_counter_samples_key", "source_id", "destination_id", "step", "reason"),
)

debugger_entries = sa.Table(
    "debugger_entries",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("received_at", sa.String(40), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # accepted | dropped
    sa.Column("reason", sa.String(100), nullable=True),
    sa.Column("entry", sa.JSON, nullable=False),
    sa.Index("ix_debugger_source", "source_id", "id"),
)


# --- delivery (see docs/delivery.md) ----------------------------------------------------------

# One row per (destination instance, message) waiting to be delivered. The queue of a
# source×destination pair is its rows; a row leaves when the message is delivered or given up.
delivery_jobs = sa.Table(
    "delivery_jobs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "destination_id",
        sa.String(40),
        sa.ForeignKey("destinations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("message_id", sa.String(200), nullable=False),
    sa.Column("message", sa.LargeBinary, nullable=False),  # JSON, as it left the router
    sa.Column("received_at_ms", sa.BigInteger, nullable=False),
    sa.Column("enqueued_at_ms", sa.BigInteger, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("first_attempt_at_ms", sa.BigInteger, nullable=True),
    sa.Column("next_attempt_at_ms", sa.BigInteger, nullable=False),
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Column("lease_expires_at_ms", sa.BigInteger, nullable=False, default=0),
    sa.Column("last_error", sa.String(200), nullable=True),
    sa.Column("replay", sa.Boolean, nullable=False, default=False),
    # An Actions destination gets one job per matching mapping; "" for other destinations.
    sa.Column("mapping_id", sa.String(40), nullable=False, default="", server_default=""),
    sa.Index(
        "uq_delivery_jobs_message_mapping",
        "destination_id",
        "message_id",
        "mapping_id",
        unique=True,
    ),
    sa.Index("ix_delivery_jobs_due", "destination_id", "next_attempt_at_ms"),
)

# End-to-end latency (receivedAt → delivered) of delivered messages, for Event Delivery's P95:
# up to LATENCY_SAMPLES_PER_MINUTE per destination and minute, so a busy minute stays small.
delivery_latencies = sa.Table(
    "delivery_latencies",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("destination_id", sa.String(40), nullable=False),
    sa.Column("minute", sa.BigInteger, nullable=False),
    sa.Column("latency_ms", sa.BigInteger, nullable=False),
    sa.Index("ix_delivery_latencies_key", "destination_id", "minute"),
)

# --- warehouses (see headwater.warehouse) -----------------------------------------------------

warehouses = sa.Table(
    "warehouses",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),  # duckdb, postgres, data-lake
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("settings", sa.JSON, nullable=False, default=dict),  # secrets included
    # syncs_per_day, sources, schema names, Selective Sync: see WarehouseOptions.
    sa.Column("options", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("workspace_id", "name", name="uq_warehouses_name"),
)

# How far each warehouse has loaded each source's archive, per collection (table): hour file
# (YYYY-MM-DDTHH) -> offset read up to. Collection "" is the source's own position.
warehouse_positions = sa.Table(
    "warehouse_positions",
    metadata,
    sa.Column(
        "warehouse_id",
        sa.String(40),
        sa.ForeignKey("warehouses.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("source_id", sa.String(40), primary_key=True),
    sa.Column("collection", sa.String(200), primary_key=True),
    sa.Column("position", sa.JSON, nullable=False, default=dict),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# Sync history: one row per run.
warehouse_syncs = sa.Table(
    "warehouse_syncs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "warehouse_id",
        sa.String(40),
        sa.ForeignKey("warehouses.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("trigger", sa.String(20), nullable=False),  # schedule, manual
    sa.Column("status", sa.String(20), nullable=False),  # running, success, partial, failure
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("finished_at", sa.BigInteger, nullable=True),
    # A running sync touches this after every chunk; one silent for long has died.
    sa.Column("heartbeat_at", sa.BigInteger, nullable=False),
    sa.Column("rows", sa.JSON, nullable=False, default=dict),  # schema -> table -> rows
    sa.Column("notices", sa.JSON, nullable=False, default=list),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_warehouse_syncs_warehouse", "warehouse_id", "started_at"),
)

# --- tracking plans (Protocols; see headwater.protocols.plans) --------------------------------

tracking_plans = sa.Table(
    "tracking_plans",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # tp_…
    sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("slug", sa.String(200), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("type", sa.String(40), nullable=False),  # LIVE, RULE_LIBRARY, PROPERTY_LIBRARY
    sa.Column("labels", sa.JSON, nullable=False, default=dict),
    # Bumped by every change to the plan or its rules: compiled plans are cached by it.
    sa.Column("revision", sa.BigInteger, nullable=False, default=1),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("workspace_id", "name", name="uq_tracking_plans_name"),
    sa.UniqueConstraint("workspace_id", "slug", name="uq_tracking_plans_slug"),
)

tracking_plan_rules = sa.Table(
    "tracking_plan_rules",
    metadata,
    sa.Column(
        "plan_id",
        sa.String(40),
        sa.ForeignKey("tracking_plans.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("type", sa.String(20), primary_key=True),
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("json_schema", sa.JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("deprecated_at", sa.BigInteger, nullable=True),
)

# A library plan synced into a LIVE plan: its rules are part of the plan's effective rules.
tracking_plan_libraries = sa.Table(
    "tracking_plan_libraries",
    metadata,
    sa.Column(
        "plan_id",
        sa.String(40),
        sa.ForeignKey("tracking_plans.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "library_id",
        sa.String(40),
        sa.ForeignKey("tracking_plans.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("position", sa.Integer, nullable=False, default=0),
    sa.Index("ix_tracking_plan_libraries_library", "library_id"),
)

# A source has at most one plan: the source id is the key (A-TP-13).
tracking_plan_sources = sa.Table(
    "tracking_plan_sources",
    metadata,
    sa.Column(
        "source_id",
        sa.String(40),
        sa.ForeignKey("sources.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "plan_id",
        sa.String(40),
        sa.ForeignKey("tracking_plans.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("connected_at", sa.BigInteger, nullable=False),
    sa.Index("ix_tracking_plan_sources_plan", "plan_id"),
)

# Who changed what in a plan, and when (the plan's "View Changelog").
tracking_plan_changes = sa.Table(
    "tracking_plan_changes",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "plan_id",
        sa.String(40),
        sa.ForeignKey("tracking_plans.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),  # api, config, or a token's name
    sa.Column("action", sa.String(60), nullable=False),
    sa.Column("detail", sa.JSON, nullable=False, default=dict),
    sa.Index("ix_tracking_plan_changes_plan", "plan_id", "id"),
)

# --- Protocols: blocked events, violations, monthly tracked users (protocols/) ----------------

# Events the Protocols stage blocked, kept 30 days as they arrived (Segment keeps them 30 days).
blocked_events = sa.Table(
    "blocked_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("blocked_at", sa.BigInteger, nullable=False),  # epoch seconds
    sa.Column("reason", sa.String(60), nullable=False),
    sa.Column("message", sa.JSON, nullable=False),
    sa.Index("ix_blocked_events_source", "source_id", "id"),
    sa.Index("ix_blocked_events_at", "blocked_at"),
)

# Violation counts per unique violation and 5-minute bucket, added per pass (upsert); the
# Violations view sums the buckets of its window, the daily digest those of one day.
violation_counts = sa.Table(
    "violation_counts",
    metadata,
    sa.Column("source_id", sa.String(40), primary_key=True),
    sa.Column("plan_id", sa.String(40), primary_key=True),  # "" for none
    sa.Column("event_type", sa.String(20), primary_key=True),
    sa.Column("event_name", sa.String(200), primary_key=True),
    sa.Column("field", sa.String(300), primary_key=True),
    sa.Column("violation_type", sa.String(60), primary_key=True),
    sa.Column("bucket", sa.BigInteger, primary_key=True, autoincrement=False),  # epoch 5 min
    sa.Column("count", sa.BigInteger, nullable=False),
    sa.Column("last_seen", sa.BigInteger, nullable=False),  # epoch milliseconds
    sa.Column("description", sa.Text, nullable=False),
    sa.Index("ix_violation_counts_bucket", "bucket"),
)

# The newest few payloads of each unique violation (trimmed in maintenance).
violation_samples = sa.Table(
    "violation_samples",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("plan_id", sa.String(40), nullable=False),
    sa.Column("event_type", sa.String(20), nullable=False),
    sa.Column("event_name", sa.String(200), nullable=False),
    sa.Column("field", sa.String(300), nullable=False),
    sa.Column("violation_type", sa.String(60), nullable=False),
    sa.Column("recorded_at", sa.BigInteger, nullable=False),  # epoch milliseconds
    sa.Column("sample", sa.JSON, nullable=False),
    sa.Index("ix_violation_samples_key", "source_id", "event_name", "field", "violation_type"),
)

# Monthly tracked users: the distinct identities a source saw in a month, as 63-bit hashes
# packed 8 bytes each, one row per pass, kind and month (a sequential append, as dedup_runs).
# kind: "u" a userId, "a" an anonymousId seen without a userId, "x" an anonymousId seen with
# one (Segment counts an anonymousId only when it was never associated with a userId).
mtu_identities = sa.Table(
    "mtu_identities",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("month", sa.String(7), nullable=False),  # YYYY-MM (UTC)
    sa.Column("kind", sa.String(1), nullable=False),
    sa.Column("packed", sa.LargeBinary, nullable=False),
    sa.Index("ix_mtu_identities_source_month", "source_id", "month"),
)

# --- the Source Schema and schema controls (protocols/source_schema.py, migration 12) --------

# What each source has been seen sending: Track events (kind "track", property "" for the event
# itself, else a property path such as "order.id" or "products.$"), Identify and Group traits
# (kind "identify"/"group", event ""). A row is listed in the schema; the limits (4,000 events,
# 300 properties an event) decide which rows are ever made.
schema_items = sa.Table(
    "schema_items",
    metadata,
    sa.Column("source_id", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(10), primary_key=True),
    sa.Column("event", sa.String(255), primary_key=True),
    sa.Column("property", sa.String(255), primary_key=True),
    sa.Column("first_seen", sa.BigInteger, nullable=False),  # unix seconds
    sa.Column("last_seen", sa.BigInteger, nullable=False),
    sa.Column("archived", sa.Boolean, nullable=False, default=False),
)

# Allowed and blocked counts of each schema item per hour, so 24 h / 7 d / 30 d sum a range.
schema_counts = sa.Table(
    "schema_counts",
    metadata,
    sa.Column("source_id", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(10), primary_key=True),
    sa.Column("event", sa.String(255), primary_key=True),
    sa.Column("property", sa.String(255), primary_key=True),
    sa.Column("hour", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("allowed", sa.BigInteger, nullable=False),
    sa.Column("blocked", sa.BigInteger, nullable=False),
)

# A source's schema controls (event filters without a plan, schema integration filters), as
# the JSON object protocols/schema_controls.py reads and writes.
schema_controls = sa.Table(
    "schema_controls",
    metadata,
    sa.Column(
        "source_id",
        sa.String(40),
        sa.ForeignKey("sources.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("controls", sa.JSON, nullable=False, default=dict),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# --- Protocols: transformations (migration 11) -------------------------------------------------

# One row per transformation; ``body`` is the Public API's input (``CreateTransformationV1Input``
# without sourceId/destinationMetadataId, which are columns). Uniqueness of (source, event,
# destination) is checked by the store, since the event is read from ``if``.
transformations = sa.Table(
    "transformations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column(
        "source_id",
        sa.String(40),
        sa.ForeignKey("sources.id", ondelete="CASCADE"),
        nullable=False,
    ),
    # The destination type (Segment's destination metadata id); NULL for source scope.
    sa.Column("destination_metadata_id", sa.String(100), nullable=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("body", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Index("ix_transformations_source", "source_id"),
)

# --- Unify: spaces (migration 13; see headwater.unify.spaces) --------------------------------

# A Unify space: its own identity graph and settings. The slug is fixed at creation (Segment's
# space slug cannot change); the name can. ``identity`` (migration 14): the identity settings as
# headwater.unify.settings.encode writes them, NULL for Segment's defaults.
spaces = sa.Table(
    "spaces",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # spa_…
    sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("slug", sa.String(200), nullable=False),
    sa.Column("identity", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("workspace_id", "name", name="uq_spaces_name"),
    sa.UniqueConstraint("workspace_id", "slug", name="uq_spaces_slug"),
)

# The sources connected to a space ("Profile sources"). A source may feed several spaces (a
# production source connected to the Dev space and to the Prod space).
space_sources = sa.Table(
    "space_sources",
    metadata,
    sa.Column(
        "space_id", sa.String(40), sa.ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "source_id",
        sa.String(40),
        sa.ForeignKey("sources.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("connected_at", sa.BigInteger, nullable=False),
    # Migration 19: the replay of the source's last month into the space (headwater.unify.stage):
    # NULL replayed_at while it is due; replay_hour and replay_skip say how far it got.
    sa.Column("replayed_at", sa.BigInteger, nullable=True),
    sa.Column("replay_hour", sa.BigInteger, nullable=True),
    sa.Column("replay_skip", sa.Integer, nullable=True),
    sa.Index("ix_space_sources_source", "source_id"),
)

# Profile API access tokens: the SHA-256 digest only, never the token (shown once).
space_access_tokens = sa.Table(
    "space_access_tokens",
    metadata,
    sa.Column(
        "space_id", sa.String(40), sa.ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    # PII Access (§9.8): without it the Profile API masks Red and Yellow values.
    sa.Column("pii_access", sa.Boolean, nullable=False, server_default=sa.true()),
)

# Profiles Sync: the warehouse a space's profiles go to, and the schema they land in.
space_profiles_sync = sa.Table(
    "space_profiles_sync",
    metadata,
    sa.Column(
        "space_id", sa.String(40), sa.ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column(
        "warehouse_id",
        sa.String(40),
        sa.ForeignKey("warehouses.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("schema_name", sa.String(200), nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Index("ix_space_profiles_sync_warehouse", "warehouse_id"),
)

# --- Unify: the identity graph (migration 15; see headwater.unify.sql_graph) -----------------

# Every space's identity graph. Rows point at profiles by ``seq`` (an integer: smaller rows and
# indexes than ``use_…`` ids, and creation order); the ``use_…`` id is on the profile row only.
# ``canonical``: NULL while the profile is canonical, else the profile it was merged into (one
# hop deep: a merge re-points what pointed at the merged profile).
unify_profiles = sa.Table(
    "unify_profiles",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("segment_id", sa.String(40), nullable=False),  # use_…
    sa.Column("collection", sa.String(20), nullable=False),  # users | accounts
    sa.Column("canonical", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.Double, nullable=False),  # the creating event's time
    sa.Column("merges", sa.Integer, nullable=False, default=0),
    sa.Column("mappings", sa.Integer, nullable=False, default=0),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.UniqueConstraint("space_id", "segment_id", name="uq_unify_profiles_segment_id"),
    # lineage (what was merged into a profile) and the canonical profiles in creation order
    sa.Index("ix_unify_profiles_canonical", "space_id", "canonical", "collection", "seq"),
)

# Each identifier value is on one canonical profile; ``seq`` is the order the graph got them.
unify_identities = sa.Table(
    "unify_identities",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("collection", sa.String(20), nullable=False),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("profile", sa.BigInteger, nullable=False),  # unify_profiles.seq
    sa.Column("first_seen", sa.Double, nullable=False),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.UniqueConstraint(
        "space_id", "collection", "type", "value", name="uq_unify_identities_value"
    ),
    sa.Index("ix_unify_identities_profile", "profile", "type"),
)

# A user profile belongs to an account (group calls); ``seq`` is the order links were made.
unify_links = sa.Table(
    "unify_links",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("user_profile", sa.BigInteger, nullable=False),
    sa.Column("account_profile", sa.BigInteger, nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.UniqueConstraint("user_profile", "account_profile", name="uq_unify_links"),
    sa.Index("ix_unify_links_account", "account_profile"),
)

# The merge history, oldest first (Profiles Insights' success log, the Profile API's metadata,
# Profiles Sync's id_graph_updates).
unify_merges = sa.Table(
    "unify_merges",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("from_profile", sa.BigInteger, nullable=False),
    sa.Column("into_profile", sa.BigInteger, nullable=False),
    sa.Column("collection", sa.String(20), nullable=False),
    sa.Column("at", sa.Double, nullable=False),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("event_type", sa.String(20), nullable=False),
    sa.Index("ix_unify_merges_into", "into_profile"),
)

# The events applied to a space's graph (idempotence on messageId); pruned by ``applied_at``.
unify_applied = sa.Table(
    "unify_applied",
    metadata,
    sa.Column("space_id", sa.String(40), primary_key=True),
    sa.Column("message_id", sa.Text, primary_key=True),
    sa.Column("applied_at", sa.BigInteger, nullable=False),
    sa.Index("ix_unify_applied_at", "space_id", "applied_at"),
)

# --- Unify: profile traits, events and metadata (migration 16; see headwater.unify.profiles) ---

# Trait keys sort byte-wise (the Profile API pages traits by key, §21 #17): PostgreSQL's "C"
# collation, SQLite's default BINARY.
TraitKey = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")

# One row per (profile, trait): the latest value and where and when it came from. A removed
# trait (``null``) stays as a row with ``present`` false, so an older event arriving later
# cannot bring it back (per-trait ``updated_at``, §21 #4). ``updated_at``: the event's time in
# microseconds since 1970. ``trait_class``: custom, computed_trait or audience.
unify_profile_traits = sa.Table(
    "unify_profile_traits",
    metadata,
    sa.Column("space_id", sa.String(40), primary_key=True),
    sa.Column("profile_id", sa.String(40), primary_key=True),
    sa.Column("key", TraitKey, primary_key=True),
    sa.Column("value", sa.JSON(none_as_null=True), nullable=True),
    sa.Column("present", sa.Boolean, nullable=False),
    sa.Column("trait_class", sa.String(20), nullable=False, default="custom"),
    sa.Column("source_id", sa.String(100), nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# A profile's timeline: Track, Page ("Page Viewed") and Screen ("Screen Viewed") events, kept
# 14 days by the event's timestamp. ``at_ns``: the event's time in nanoseconds since 1970 (the
# Profile API's events cursor is "<unix_nanos>::<message_id>").
unify_profile_events = sa.Table(
    "unify_profile_events",
    metadata,
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("profile_id", sa.String(40), nullable=False),
    sa.Column("at_ns", sa.BigInteger, nullable=False),
    sa.Column("message_id", sa.String(200), nullable=False),
    sa.Column("event", sa.Text, nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.PrimaryKeyConstraint("space_id", "profile_id", "message_id", name="pk_unify_profile_events"),
    sa.Index("ix_unify_profile_events_time", "space_id", "profile_id", "at_ns", "message_id"),
    sa.Index("ix_unify_profile_events_prune", "at_ns"),
)

# One row per profile that has data: first and last events (by the events' times) and its
# collection; the Profile API's /metadata and the list route read it.
unify_profile_metadata = sa.Table(
    "unify_profile_metadata",
    metadata,
    sa.Column("space_id", sa.String(40), primary_key=True),
    sa.Column("profile_id", sa.String(40), primary_key=True),
    sa.Column("collection", sa.String(20), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),  # microseconds since 1970
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("first_message_id", sa.String(200), nullable=False),
    sa.Column("first_source_id", sa.String(100), nullable=False),
    sa.Column("last_message_id", sa.String(200), nullable=False),
    sa.Column("last_source_id", sa.String(100), nullable=False),
)

# --- Unify: Profiles Sync (migration 17; see headwater.unify.profiles_sync) ------------------

# One row per event resolved in a space with Profiles Sync on: the event, the profile it went
# to and the raw rows it made (id_graph_updates, external_id_mapping_updates, trait updates),
# already expanded (a merge's recursive rows included). ``seq`` orders a space's rows; a row
# goes once every warehouse that needs it has loaded it.
unify_sync_outbox = sa.Table(
    "unify_sync_outbox",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("message_id", sa.String(512), nullable=False),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("recorded_at", sa.BigInteger, nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.UniqueConstraint("space_id", "message_id", name="uq_unify_sync_outbox_message"),
    sa.Index("ix_unify_sync_outbox_space_seq", "space_id", "seq"),
    sqlite_autoincrement=True,  # a pruned seq is never given again (positions are seqs)
)

# Where each user profile id of a space points now, as the feed has told the warehouse: a merge
# re-points every id that pointed at the merged profile (the recursive id_graph_updates rows).
unify_sync_profiles = sa.Table(
    "unify_sync_profiles",
    metadata,
    sa.Column("space_id", sa.String(40), primary_key=True),
    sa.Column("segment_id", sa.String(64), primary_key=True),
    sa.Column("canonical_segment_id", sa.String(64), nullable=False),
    sa.Index("ix_unify_sync_profiles_canonical", "space_id", "canonical_segment_id"),
)

# How far each warehouse has loaded a space's outbox.
unify_sync_positions = sa.Table(
    "unify_sync_positions",
    metadata,
    sa.Column("space_id", sa.String(40), primary_key=True),
    sa.Column("warehouse_id", sa.String(40), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# --- Unify: Profiles Insights and profile CSV uploads (migration 18) ---------------------------

# Profiles Insights (headwater.unify.insights): what identity resolution refused or did, one row
# per item — an error, a violation, a merge or a mapping — with the event's payload. Kept
# bounded: the newest 500 per space and kind, nothing older than 30 days.
unify_insights = sa.Table(
    "unify_insights",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(12), nullable=False),  # error, violation, merge, mapping
    sa.Column("reason", sa.String(60), nullable=True),  # Segment's name (errors, violations)
    sa.Column("collection", sa.String(10), nullable=True),
    sa.Column("id_type", sa.String(100), nullable=True),  # the identifier the item is about
    sa.Column("id_value", sa.Text, nullable=True),
    sa.Column("profile_id", sa.String(40), nullable=True),  # a merge: the one merged into
    sa.Column("merged_id", sa.String(40), nullable=True),  # a merge: the one merged away
    sa.Column("new_profile", sa.Boolean, nullable=False, default=False),  # a mapping's profile
    # The event's identifiers as [collection, type, value] lists: what the search matches.
    sa.Column("identifiers", sa.JSON, nullable=False, default=list),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
    sa.Column("event_type", sa.String(20), nullable=False),
    sa.Column("recorded_at", sa.BigInteger, nullable=False),  # epoch milliseconds
    sa.Column("payload", sa.JSON, nullable=False),
    sa.Index("ix_unify_insights_space", "space_id", "kind", "id"),
    sa.Index("ix_unify_insights_at", "recorded_at"),
)

# The source a space's profile CSV uploads send their Identify calls from (Segment's internal
# "Engage output source"), made on the space's first upload.
unify_upload_sources = sa.Table(
    "unify_upload_sources",
    metadata,
    sa.Column(
        "space_id", sa.String(40), sa.ForeignKey("spaces.id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("source_id", sa.String(40), nullable=False),
)

# Profile CSV uploads (headwater.unify.csv_upload): Segment's Update History, 30 days.
unify_csv_uploads = sa.Table(
    "unify_csv_uploads",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # upl_…
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("file_name", sa.String(300), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),  # processing, succeeded, failed
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("rows", sa.BigInteger, nullable=False, default=0),  # data rows in the file
    sa.Column("appended", sa.BigInteger, nullable=False, default=0),  # Identify calls so far
    sa.Column("columns", sa.JSON, nullable=False, default=list),
    sa.Column("source_id", sa.String(40), nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),  # epoch seconds
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    # Migration 21: profiles or subscriptions (a subscription CSV, headwater.unify.
    # subscription_upload), and the custom trait a subscription upload adds to its profiles.
    sa.Column("kind", sa.String(20), nullable=False, default="profiles"),
    sa.Column("custom_trait", sa.String(200), nullable=True),
    sa.Index("ix_unify_csv_uploads_space", "space_id", "created_at"),
)

# --- Engage (headwater.engage) ---------------------------------------------------------------

# A space's Engage source, `<space slug>-engage`, made with the space: Engage's events (audience
# and trait events, SQL traits' identifies) enter the pipeline from it, and the destinations that
# activate a space's computations hang off it (Segment never reuses Connections destinations).
engage_sources = sa.Table(
    "engage_sources",
    metadata,
    sa.Column("space_id", sa.String(40), primary_key=True),
    sa.Column("source_id", sa.String(40), nullable=False, unique=True),
)

# Audiences and computed traits. ``key`` is unique in the space for ever: a deleted
# computation's row stays (``deleted_at``) so its key is never given again (§13.9).
engage_computations = sa.Table(
    "engage_computations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # aud_… / tra_…
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(12), nullable=False),  # audience, trait
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("level", sa.String(12), nullable=False),  # users, accounts
    sa.Column("definition", sa.Text, nullable=False),  # Segment Query Language
    sa.Column("mode", sa.String(12), nullable=False),  # realtime, batch
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("options", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("computed_at", sa.BigInteger, nullable=True),  # the last full computation
    sa.Column("deleted_at", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("space_id", "key", name="uq_engage_computations_key"),
)

# Which destinations (instances on the space's Engage source) a computation is sent to, how.
engage_connections = sa.Table(
    "engage_connections",
    metadata,
    sa.Column("computation_id", sa.String(40), primary_key=True),
    sa.Column("destination_id", sa.String(40), primary_key=True),
    sa.Column("settings", sa.JSON, nullable=False, default=dict),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("synced_at", sa.BigInteger, nullable=True),  # its initial sync was queued
    # A list destination's audience (its definition has createAudience): the id the
    # destination gave it, or the last hook failure and when to try again.
    sa.Column("external_audience_id", sa.String(500), nullable=True),
    sa.Column("audience_error", sa.Text, nullable=True),
    sa.Column("audience_retry_at", sa.BigInteger, nullable=True),
)

# Each profile's real-time state: the hourly buckets of every stream its space's computations
# read, the traits they compare, and the last value of each computation (what was sent).
# ``due_at``: when time alone may next change a value (a bucket leaving a window).
engage_profiles = sa.Table(
    "engage_profiles",
    metadata,
    sa.Column("space_id", sa.String(40), primary_key=True),
    sa.Column("profile_id", sa.String(40), primary_key=True),
    sa.Column("state", sa.LargeBinary, nullable=False),
    sa.Column("due_at", sa.BigInteger, nullable=True),
    sa.Index("ix_engage_profiles_due", "space_id", "due_at"),
)

# Batch computation (migration 24; see headwater.engage.batch_runs). One row per audience or
# computed trait: when it runs next, which definition it last computed, and its lease.
engage_batch = sa.Table(
    "engage_batch",
    metadata,
    sa.Column("computation_id", sa.String(40), primary_key=True),
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("computed", sa.String(64), nullable=True),  # fingerprint of what was computed
    sa.Column("next_run_at", sa.BigInteger, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("members", sa.BigInteger, nullable=True),  # profiles with a value, last run
    sa.Column("changed", sa.BigInteger, nullable=True),  # profiles whose value it changed
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Column("lease_expires_at", sa.BigInteger, nullable=True),
)

# A real-time vector (a stream's hourly buckets, shared by the computations reading it) from
# the moment the engine first planned it (``since``: events received earlier are left to the
# seed from the warehouse, ``seeded_at`` when that was queued; since NULL: no history wanted).
engage_vectors = sa.Table(
    "engage_vectors",
    metadata,
    sa.Column("space_id", sa.String(40), primary_key=True),
    sa.Column("key_hash", sa.String(40), primary_key=True),
    sa.Column("key", sa.Text, nullable=False),
    sa.Column("since", sa.BigInteger, nullable=True),
    sa.Column("seeded_at", sa.BigInteger, nullable=True),
)

# What a batch run decided, waiting for identity resolution's pass to apply it (one writer
# of profiles' state): a computation's new value (``value``), a vector's buckets from history
# (``buckets``), or a current value to send again to one new destination (``resend``).
engage_batch_staged = sa.Table(
    "engage_batch_staged",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("profile_id", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("target", sa.Text, nullable=False),  # computation id, or vector key
    sa.Column("destination", sa.String(255), nullable=True),  # resend: the instance's name
    sa.Column("body", sa.LargeBinary, nullable=False),  # MessagePack
    sa.Index("ix_engage_batch_staged_space", "space_id", "seq"),
    sqlite_autoincrement=True,
)

# Messages Engage made, written in the transaction that decided them and appended to the
# ingest log (from the space's Engage source) by the worker.
engage_outbox = sa.Table(
    "engage_outbox",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("body", sa.LargeBinary, nullable=False),  # the message as JSON (msgspec)
    sqlite_autoincrement=True,
)

# --- Unify: user subscriptions (migration 21; see headwater.unify.subscriptions) ---------------

# A contact vector's subscription state in a space (Engage's user subscriptions, §18): one row
# per (channel, contact) that has a state; no row is "no subscription status". ``key``: the
# contact as ``subscriptions.contact_key`` normalizes it (an email lowercased, a phone number's
# digits); SMS and WhatsApp share a number and have a row each. ``updated_at``: the time (epoch
# milliseconds) of the event that set the state, so an older event never overwrites it.
unify_subscriptions = sa.Table(
    "unify_subscriptions",
    metadata,
    sa.Column("space_id", sa.String(40), primary_key=True),
    sa.Column("channel", sa.String(10), primary_key=True),  # EMAIL, SMS, WHATSAPP
    sa.Column("key", sa.String(320), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),  # subscribed, unsubscribed, …
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("message_id", sa.Text, nullable=False),
)

# A space's email subscription groups (at most 25 live ones). ``key``: the name case-folded
# (names are unique regardless of case). A deleted group keeps its row (``deleted_at``) and its
# users' states: creating a group of that name again brings them back.
unify_subscription_groups = sa.Table(
    "unify_subscription_groups",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # sgr_…
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("name", sa.String(75), nullable=False),
    sa.Column("key", sa.String(300), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("deleted_at", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("space_id", "key", name="uq_unify_subscription_groups_key"),
)

# An email address's state in one subscription group, as ``unify_subscriptions`` per channel.
unify_group_subscriptions = sa.Table(
    "unify_group_subscriptions",
    metadata,
    sa.Column("space_id", sa.String(40), primary_key=True),
    sa.Column("key", sa.String(320), primary_key=True),  # the email, normalized
    sa.Column("group_id", sa.String(40), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# A subscription CSV upload's error report (headwater.unify.subscription_upload): the rows it
# could not apply, each with Segment's error code, its message and the row's cells (in the
# upload's columns). Written while the rows are sent (a row that cannot be read) and by
# identity resolution (a state a row may not set); kept as long as its upload.
unify_upload_errors = sa.Table(
    "unify_upload_errors",
    metadata,
    sa.Column("upload_id", sa.String(40), primary_key=True),
    sa.Column("row_number", sa.BigInteger, primary_key=True),  # 1: the first data row
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("code", sa.String(40), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("cells", sa.JSON, nullable=False, default=list),
)

# --- Engage: SQL traits (migration 22; see headwater.engage.sql_traits) ------------------------

# A SQL trait: a query run on a schedule against a warehouse. ``key`` is unique in the space for
# ever, as a computation's (a deleted trait's row stays, ``deleted_at``). ``next_run_at``: when
# the schedule runs it next; ``requested_at``: someone asked for a run now. A run holds the
# lease (``lease_owner`` until ``lease_expires_at``) so only one process runs a trait at a time.
engage_sql_traits = sa.Table(
    "engage_sql_traits",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # tra_…
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("warehouse_id", sa.String(40), nullable=False),
    sa.Column("query", sa.Text, nullable=False),
    sa.Column("level", sa.String(12), nullable=False),  # users, accounts
    sa.Column("every_hours", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),  # pending, success, failure
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("last_run_at", sa.BigInteger, nullable=True),
    sa.Column("next_run_at", sa.BigInteger, nullable=True),
    sa.Column("requested_at", sa.BigInteger, nullable=True),
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Column("lease_expires_at", sa.BigInteger, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("deleted_at", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("space_id", "key", name="uq_engage_sql_traits_key"),
    sa.Index("ix_engage_sql_traits_due", "deleted_at", "next_run_at"),
)

# What each identifier's row said at the last run (canonical JSON: its traits and, for an
# account, the user it names), so the next run sends only what changed and nulls who is gone.
engage_sql_trait_values = sa.Table(
    "engage_sql_trait_values",
    metadata,
    sa.Column("trait_id", sa.String(40), primary_key=True),
    sa.Column("id_type", sa.String(20), primary_key=True),  # user_id, anonymous_id, email, …
    sa.Column("id_value", sa.String(500), primary_key=True),
    sa.Column("row", sa.Text, nullable=False),
)

# Run history: the last 30 runs of each trait.
engage_sql_trait_runs = sa.Table(
    "engage_sql_trait_runs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("trait_id", sa.String(40), nullable=False),
    sa.Column("trigger", sa.String(20), nullable=False),  # schedule, manual
    sa.Column("status", sa.String(20), nullable=False),  # running, success, failure
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("finished_at", sa.BigInteger, nullable=True),
    sa.Column("rows", sa.BigInteger, nullable=False, default=0),
    sa.Column("changed", sa.BigInteger, nullable=False, default=0),
    sa.Column("nulled", sa.BigInteger, nullable=False, default=0),
    sa.Column("discarded", sa.BigInteger, nullable=False, default=0),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_engage_sql_trait_runs_trait", "trait_id", "id"),
    sqlite_autoincrement=True,
)

# --- Engage: journeys (migration 23; see headwater.engage.journeys) -----------------------------

# A journey: the container its versions share (key and name), kept after deletion so its key is
# never given again in the space.
engage_journeys = sa.Table(
    "engage_journeys",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # jou_…
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("key", sa.String(255), nullable=False),
    sa.Column("name", sa.String(255), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.Column("deleted_at", sa.BigInteger, nullable=True),
    sa.UniqueConstraint("space_id", "key", name="uq_engage_journeys_key"),
)

# A journey's versions (at most 25): the definition (steps with their keys), the status
# (draft, published, paused, archived); at most one published or paused at a time.
engage_journey_versions = sa.Table(
    "engage_journey_versions",
    metadata,
    sa.Column("journey_id", sa.String(40), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("definition", sa.JSON, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("published_at", sa.BigInteger, nullable=True),
    # "Use historical data" (migration 26): the entry audience's members at publication still to
    # let in, after this profile id ('' : all of them); NULL when none are left.
    sa.Column("backfill_after", sa.String(40), nullable=True),
)

# One profile's way through one journey version (``instance``: '' for a classic journey, the
# unique identifier's value for an event-triggered one): the steps it joined, when, and its
# context, as JSON; ``due_at``: when time alone moves it next (a delay, a hold's timeout, an
# exit, a re-entry window).
engage_journey_members = sa.Table(
    "engage_journey_members",
    metadata,
    sa.Column("journey_id", sa.String(40), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("profile_id", sa.String(40), primary_key=True),
    sa.Column("instance", sa.String(200), primary_key=True),
    sa.Column("space_id", sa.String(40), nullable=False),
    sa.Column("state", sa.JSON, nullable=False),
    sa.Column("due_at", sa.BigInteger, nullable=True),
    sa.Index("ix_engage_journey_members_due", "space_id", "due_at"),
    sa.Index("ix_engage_journey_members_profile", "space_id", "profile_id"),
)

# Every step join and exit, for analytics (§15.5): ``step`` is the step's id, ``@exit`` an exit.
engage_journey_log = sa.Table(
    "engage_journey_log",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("journey_id", sa.String(40), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("profile_id", sa.String(40), nullable=False),
    sa.Column("instance", sa.String(200), nullable=False),
    sa.Column("step", sa.String(255), nullable=False),
    sa.Column("at", sa.BigInteger, nullable=False),
    sa.Index("ix_engage_journey_log_step", "journey_id", "version", "step", "at"),
    # Migration 28: an erasure (a deletion regulation) finds a profile's steps.
    sa.Index("ix_engage_journey_log_profile", "profile_id"),
    sqlite_autoincrement=True,
)

# --- The Privacy Portal (§9) -----------------------------------------------------------------

# Custom matchers (at most 100); the 36 defaults live in code (privacy/matchers.py).
privacy_matchers = sa.Table(
    "privacy_matchers",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("definition", sa.JSON, nullable=False),  # the matcher's JSON (check_matcher)
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("name", name="uq_privacy_matchers_name"),
)

# The Inbox: every field a scanned source sent, by source and path, with its last sighting.
privacy_inbox = sa.Table(
    "privacy_inbox",
    metadata,
    sa.Column(
        "source_id",
        sa.String(40),
        sa.ForeignKey("sources.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("path", sa.String(255), primary_key=True),
    sa.Column("first_seen", sa.BigInteger, nullable=False),
    sa.Column("last_seen", sa.BigInteger, nullable=False, index=True),
    sa.Column("events", sa.JSON, nullable=False),  # up to 20 event names that carry it
    sa.Column("occurrences", sa.BigInteger, nullable=False, default=0),
    # the matcher's verdict when last seen (None: Green)
    sa.Column("classification", sa.String(10), nullable=True),
    sa.Column("matcher", sa.String(200), nullable=True),
    sa.Column("matcher_type", sa.String(10), nullable=True),
    # an example payload snippet, and whose it is, so a deletion can remove it
    sa.Column("snippet", sa.Text, nullable=False, default=""),
    sa.Column("snippet_user_id", sa.String(255), nullable=True, index=True),
    sa.Column("snippet_anonymous_id", sa.String(255), nullable=True, index=True),
)

# The Inventory: fields a user classified, by path, everywhere. `masked` stays true once a
# field was ever Red or Yellow (§9.5: re-marking it Green does not unmask it).
privacy_inventory = sa.Table(
    "privacy_inventory",
    metadata,
    sa.Column("path", sa.String(255), primary_key=True),
    sa.Column("classification", sa.String(10), nullable=False),
    sa.Column("masked", sa.Boolean, nullable=False, default=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# Privacy controls, per source: block Inventory fields classified Red and/or Yellow.
privacy_controls = sa.Table(
    "privacy_controls",
    metadata,
    sa.Column(
        "source_id",
        sa.String(40),
        sa.ForeignKey("sources.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("block_red", sa.Boolean, nullable=False, default=False),
    sa.Column("block_yellow", sa.Boolean, nullable=False, default=False),
)

# Alerts on new unclassified fields: one row per channel ("slack", "source").
privacy_alerts = sa.Table(
    "privacy_alerts",
    metadata,
    sa.Column("channel", sa.String(10), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False, default=False),
    sa.Column("settings", sa.JSON, nullable=False, default=dict),
)

# Fields alerted already (each path once, whatever the source).
privacy_alerted = sa.Table(
    "privacy_alerted",
    metadata,
    sa.Column("path", sa.String(255), primary_key=True),
    sa.Column("at", sa.BigInteger, nullable=False),
)


# The workspace's consent categories (headwater.privacy.consent): ``destinations`` is the JSON
# list of destination types mapped to the category (every instance of a type is covered).
consent_categories = sa.Table(
    "consent_categories",
    metadata,
    sa.Column("category_id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(40), nullable=False),
    sa.Column("destinations", sa.JSON, nullable=False),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# HIPAA-style field encryption of one destination instance (headwater.privacy.encryption): the
# fields to encrypt and the public key; the private key is shown once and never stored.
destination_encryption = sa.Table(
    "destination_encryption",
    metadata,
    sa.Column("destination_id", sa.String(40), primary_key=True),
    sa.Column("enabled", sa.Boolean, nullable=False, default=True),
    sa.Column("fields", sa.JSON, nullable=False),
    sa.Column("public_key", sa.Text, nullable=True),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
)

# A profile's latest consent (headwater.unify.profiles): ``context.consent.categoryPreferences``
# of the latest Identify or ``Segment Consent Preference Updated`` event, by event time.
unify_profile_consent = sa.Table(
    "unify_profile_consent",
    metadata,
    sa.Column("space_id", sa.String(40), primary_key=True),
    sa.Column("profile_id", sa.String(40), primary_key=True),
    sa.Column("preferences", sa.JSON, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),  # microseconds since 1970
    sa.Column("message_id", sa.String(200), nullable=False),
    sa.Column("source_id", sa.String(100), nullable=False),
)


# --- privacy: regulations (deletion and suppression, spec §10) --------------------------------

# One regulation as the Public API made it: its scope (``source_id`` NULL: the workspace;
# ``collection`` set: a cloud source's), type, subject type and subjects; ``status`` is
# Segment's overall status. ``expanded`` holds the subjects widened by the identity graph,
# stored before any eraser runs (privacy/erasure.py); ``due_at`` is when the runner next looks
# at it (NULL: nothing left to do).
regulations = sa.Table(
    "regulations",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),  # reg_…
    sa.Column("workspace_id", sa.String(40), nullable=False),
    sa.Column("source_id", sa.String(40), nullable=True),
    sa.Column("collection", sa.String(200), nullable=True),
    sa.Column("regulation_type", sa.String(40), nullable=False),
    sa.Column("subject_type", sa.String(20), nullable=False),
    sa.Column("subjects", sa.JSON, nullable=False),
    sa.Column("subject_count", sa.Integer, nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float, nullable=True),
    sa.Column("expanded", sa.JSON, nullable=True),
    sa.Column("due_at", sa.Float, nullable=True),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_regulations_created", "workspace_id", "created_at"),
    sa.Index("ix_regulations_due", "due_at"),
)

# Each eraser's outcome for one regulation (the regulation's ``streamStatus``): its status,
# attempts so far, when it is next due, and its last message (never a secret).
regulation_steps = sa.Table(
    "regulation_steps",
    metadata,
    sa.Column("regulation_id", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(20), primary_key=True),
    sa.Column("target_id", sa.String(200), primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("due_at", sa.Float, nullable=True),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("finished_at", sa.Float, nullable=True),
)

# Subjects whose new events are dropped at ingest: ``scope`` '' for the whole workspace, else a
# source id. ``regulation_type`` is the type that suppressed it (the Suppressed Users list shows
# only SUPPRESS_ONLY's). Written when the worker processes a regulation; the suppression stage
# reloads its sets when the ``suppression_version`` in ``meta`` moves.
suppressed_subjects = sa.Table(
    "suppressed_subjects",
    metadata,
    sa.Column("workspace_id", sa.String(40), primary_key=True),
    sa.Column("scope", sa.String(40), primary_key=True),
    sa.Column("subject_id", sa.String(1000), primary_key=True),
    sa.Column("regulation_id", sa.String(40), nullable=False),
    sa.Column("regulation_type", sa.String(40), nullable=False),
    sa.Column("since", sa.Float, nullable=False),
)

# Replays running now (they read the archive): a deleting regulation may not be created while
# one runs, nor a replay start while a deletion waits (§10.3). ``beat_at`` moves as the replay
# queues its jobs; a row not beaten for a while is a replay whose process died.
replays_running = sa.Table(
    "replays_running",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("destination_id", sa.String(40), nullable=False),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("beat_at", sa.Float, nullable=False),
)

# Workspace deletion (§11): requested at ``requested_at``, revocable until ``irrevocable_at``
# (five days later), then purged by the worker. ``status`` is PENDING, REVOKED, PURGING or
# PURGED; ``steps_done`` lists the purge's finished steps, so a crash repeats only the step it
# was in. The row outlives the purge: it is the record that the workspace was deleted.
workspace_deletions = sa.Table(
    "workspace_deletions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("workspace_id", sa.String(40), nullable=False),
    sa.Column("workspace_name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("requested_at", sa.Float, nullable=False),
    sa.Column("irrevocable_at", sa.Float, nullable=False),
    sa.Column("steps_done", sa.JSON, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
)

# Source data deletions (§11): the archive's days of one source removed, from and to
# (``YYYY-MM-DD``, UTC, inclusive), and how many hour files went. Kept as the record of the run.
source_data_deletions = sa.Table(
    "source_data_deletions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("from_day", sa.String(10), nullable=False),
    sa.Column("to_day", sa.String(10), nullable=False),
    sa.Column("requested_at", sa.Float, nullable=False),
    sa.Column("files_removed", sa.Integer, nullable=False),
)

# Unify space deletions (§11): requested at ``requested_at``, started at ``starts_at`` (five
# calendar days later) by the worker unless cancelled first. ``status`` is PENDING, CANCELLED or
# DELETED; the row outlives the space as the record of its deletion.
space_deletions = sa.Table(
    "space_deletions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("space_id", sa.String(40), nullable=False, index=True),
    sa.Column("space_name", sa.String(200), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("requested_at", sa.Float, nullable=False),
    sa.Column("starts_at", sa.Float, nullable=False),
    sa.Column("cancelled_at", sa.Float, nullable=True),
    sa.Column("finished_at", sa.Float, nullable=True),
)

# --- Functions (migration 32; see headwater.functions.store) ---------------------------------

# A function of the workspace: source, destination or insert, JavaScript or Python. ``settings``
# declares the settings each instance gives it (Segment's label, name, type, description,
# required, secret). ``deployed_version`` is the DEPLOYED label (NULL: never deployed); LATEST
# is the highest version.
functions = sa.Table(
    "functions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("workspace_id", sa.String(40), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("language", sa.String(20), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("settings", sa.JSON, nullable=False, default=list),
    sa.Column("deployed_version", sa.Integer, nullable=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("updated_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("workspace_id", "name", name="uq_functions_name"),
)

# Every save of a function's code is a version (1, 2, …); a restore is a new version too.
function_versions = sa.Table(
    "function_versions",
    metadata,
    sa.Column(
        "function_id",
        sa.String(40),
        sa.ForeignKey("functions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("code", sa.Text, nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

# A function's errors and logs (Segment's Errors tab): the 100 most recent a function, for
# 30 days. ``instance_id`` is the source or destination that ran it (NULL: the test runner).
# ``logs`` the console lines (at most 4 KB), ``requests`` the outgoing requests, ``payload``
# a sample of the input as JSON text (capped); secret setting values never reach them.
function_logs = sa.Table(
    "function_logs",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("function_id", sa.String(40), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("instance_id", sa.String(40), nullable=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("level", sa.String(10), nullable=False),  # error | log
    sa.Column("error", sa.String(40), nullable=True),  # the error class; NULL when it returned
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("logs", sa.JSON, nullable=False, default=list),
    sa.Column("requests", sa.JSON, nullable=False, default=list),
    sa.Column("payload", sa.Text, nullable=True),
    sa.Column("duration_ms", sa.Float, nullable=False, default=0.0),
    sa.Index("ix_function_logs_function", "function_id", "at"),
)

# --- functions: source functions' requests and objects (migration 33) -------------------------

# Source functions' webhook requests (§11.2): stored before the caller gets its answer, run by
# the worker, retried on ``RetryError`` and timeouts (6 attempts, then dropped). ``request`` is
# {method, url, headers: [[name, value], …], body (text) or body_base64}; ``state`` is
# ``pending`` (due at ``next_attempt_at``); a row leaves the table once it ran, failed for good
# or was dropped.
function_requests = sa.Table(
    "function_requests",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("workspace_id", sa.String(40), nullable=False),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("next_attempt_at", sa.Float, nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("first_gap", sa.Float, nullable=True),  # seconds before the first retry
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("claimed_until", sa.Float, nullable=True),  # a worker runs it until then
    sa.Index("ix_function_requests_due", "state", "next_attempt_at"),
)

# Objects a source function set (``Segment.set``, the Objects API): warehouses only, loaded
# into ``<schema>.<collection>`` by warehouse syncs in ``seq`` order (never the debugger, the
# counters or destinations).
function_objects = sa.Table(
    "function_objects",
    metadata,
    sa.Column("seq", BigId, primary_key=True, autoincrement=True),
    sa.Column("source_id", sa.String(40), nullable=False),
    sa.Column("collection", sa.String(200), nullable=False),
    sa.Column("object_id", sa.String(200), nullable=False),
    sa.Column("properties", sa.JSON, nullable=False),
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Index("ix_function_objects_source", "source_id", "seq"),
)

# How far each warehouse has loaded each source's objects.
function_object_positions = sa.Table(
    "function_object_positions",
    metadata,
    sa.Column("warehouse_id", sa.String(40), primary_key=True),
    sa.Column("source_id", sa.String(40), primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
)

# --- functions: usage (migration 34; see headwater.functions.usage) ---------------------------

# A function's invocations and execution time per month (``YYYY-MM``, UTC): Segment's Usage &
# billing. Every invocation of every kind counts, retries included; the test runner does not.
# ``execution_ms`` adds each invocation's duration in whole milliseconds (rounded up).
function_usage = sa.Table(
    "function_usage",
    metadata,
    sa.Column("function_id", sa.String(40), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("invocations", sa.BigInteger, nullable=False, default=0),
    sa.Column("execution_ms", sa.BigInteger, nullable=False, default=0),
    sa.Column("errors", sa.BigInteger, nullable=False, default=0),
)

# --- identity and access management (migration 35; see headwater.iam) ------------------------

# Team members. ``email`` is kept lowercased (one account per address); ``password_hash`` is an
# argon2id hash (NULL: no password, e.g. a member who signs in through SSO); ``totp_secret`` is
# for MFA (NULL: not enrolled). ``pii_access``: Red and Yellow values unmasked (§9.8; owners
# always have it).
iam_users = sa.Table(
    "iam_users",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("password_hash", sa.Text, nullable=True),
    sa.Column("totp_secret", sa.Text, nullable=True),
    sa.Column("pii_access", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

iam_groups = sa.Table(
    "iam_groups",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

iam_group_members = sa.Table(
    "iam_group_members",
    metadata,
    sa.Column(
        "group_id",
        sa.String(40),
        sa.ForeignKey("iam_groups.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column(
        "user_id",
        sa.String(40),
        sa.ForeignKey("iam_users.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Index("ix_iam_group_members_user", "user_id"),
)

# Public API tokens: only the SHA-256 digest of ``hwp_…`` is kept (the plaintext is shown once).
# ``created_by`` names the actor that created it (an email, a token's description, "admin").
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("pii_access", sa.Boolean, nullable=False, default=False),
    sa.Column("created_by", sa.String(320), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("last_used_at", sa.BigInteger, nullable=True),
)

# Policies: one role on one resource for a user, a group or a token (``principal_kind``).
# ``resource_id`` NULL: all current and future resources; ``labels`` [[key, value], …] narrows
# a workspace-level grant to resources carrying all of them.
iam_permissions = sa.Table(
    "iam_permissions",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("principal_kind", sa.String(10), nullable=False),  # user | group | token
    sa.Column("principal_id", sa.String(40), nullable=False),
    sa.Column("role_id", sa.String(60), nullable=False),
    sa.Column("resource_type", sa.String(20), nullable=False),
    sa.Column("resource_id", sa.String(40), nullable=True),
    sa.Column("labels", sa.JSON, nullable=False, default=list),
    sa.Index("ix_iam_permissions_principal", "principal_kind", "principal_id"),
)

# Labels (§20.4): ``key:value`` pairs, and the sources and spaces that carry them (one value
# per key per resource: the primary key says so).
iam_labels = sa.Table(
    "iam_labels",
    metadata,
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.String(100), primary_key=True),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.BigInteger, nullable=False),
)

resource_labels = sa.Table(
    "resource_labels",
    metadata,
    sa.Column("resource_type", sa.String(10), primary_key=True),  # SOURCE | SPACE
    sa.Column("resource_id", sa.String(40), primary_key=True),
    sa.Column("key", sa.String(100), primary_key=True),
    sa.Column("value", sa.String(100), nullable=False),
    sa.Index("ix_resource_labels_label", "key", "value"),
)

# --- the audit trail (migration 36) ------------------------------------------------------------

# Every change to the workspace (§21): who (``actor`` is a user's or a token's id, or "admin"
# for the admin token, or "headwater apply"), what (``type`` in Segment's words, "Source
# Created"; the resource), when, and the resource's before/after as ``headwater export`` shows
# it (secrets already redacted). Kept 90 days. ``id`` orders the trail, and forwarding into a
# source follows it.
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("actor_kind", sa.String(20), nullable=False),  # admin | token | user | cli
    sa.Column("actor_email", sa.String(320), nullable=True),
    sa.Column("resource_type", sa.String(60), nullable=False),
    sa.Column("resource_id", sa.String(200), nullable=True),
    sa.Column("resource_name", sa.String(400), nullable=True),
    sa.Column("before", sa.JSON, nullable=True),
    sa.Column("after", sa.JSON, nullable=True),
    sa.Index("ix_audit_events_at", "at"),
    sa.Index("ix_audit_events_resource", "resource_type", "resource_id"),
)

# Audit forwarding (§21): the source that receives every audit event as a Track call, and the
# last audit event forwarded (at-least-once: a crash re-sends from there; the messageId is the
# audit event's, so the log's dedup absorbs the repeat).
audit_forwarding = sa.Table(
    "audit_forwarding",
    metadata,
    sa.Column("workspace_id", sa.String(40), primary_key=True),
    sa.Column("source_id", sa.String(40), nullable=True),
    sa.Column("enabled", sa.Boolean, nullable=False, default=False),
    sa.Column("forwarded_id", sa.BigInteger, nullable=False, default=0),
)

# --- the web app's sessions (migration 37) -----------------------------------------------------

# A signed-in browser: the cookie's SHA-256 (the cookie itself is never stored), who it is
# (the admin token's owner, a user, an API token), the CSRF token its forms carry, and when it
# ends (7 days, Segment's session; idle limits come from the workspace's settings).
web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("principal_kind", sa.String(20), nullable=False),  # admin | user | token
    sa.Column("principal_id", sa.String(200), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("seen_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
    sa.Index("ix_web_sessions_expires", "expires_at"),
)
# Invitations to join the workspace (§20.3): the link's token is kept only as its SHA-256.
iam_invites = sa.Table(
    "iam_invites",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("grants", sa.JSON, nullable=False, default=list),
    sa.Column("created_by", sa.String(320), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.Column("expires_at", sa.BigInteger, nullable=False),
    sa.Column("accepted_at", sa.BigInteger, nullable=True),
    sa.Index("ix_iam_invites_email", "email"),
)
