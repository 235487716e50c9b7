"""Migrations bring a state database made by an older Headwater to the current schema."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.store.log import EventLog
from headwater.store.migrations import migrate
from headwater.store.workspace import WorkspaceStore


def _old_jobs_table() -> sa.Table:
    """``delivery_jobs`` as migration 3 made it: unique per destination and messageId."""
    old = sa.MetaData()
    sa.Table("destinations", old, sa.Column("id", sa.String(40), primary_key=True))
    columns = [
        sa.Column(
            c.name,
            c.type,
            primary_key=c.primary_key,
            nullable=c.nullable,
            autoincrement=c.autoincrement,
        )
        for c in schema.delivery_jobs.columns
        if c.name != "mapping_id"
    ]
    return sa.Table(
        "delivery_jobs",
        old,
        *columns,
        sa.UniqueConstraint("destination_id", "message_id", name="uq_delivery_jobs_message"),
        sa.Index("ix_delivery_jobs_due", "destination_id", "next_attempt_at_ms"),
    )


def test_jobs_waiting_in_an_old_queue_survive_the_move_to_jobs_per_mapping(engine: Engine) -> None:
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    source = workspace.create_source("web")
    now = 1_700_000_000_000
    with write_transaction(engine) as conn:
        conn.execute(
            schema.destinations.insert().values(
                id="dst_1",
                workspace_id=workspace.workspace_id(conn),
                source_id=source.id,
                name="hook",
                type="webhook",
                enabled=True,
                settings={},
                delivery={},
                filters=[],
                mappings=[],
                created_at=0,
                updated_at=0,
            )
        )
        conn.execute(sa.text("DROP TABLE delivery_jobs"))
        old = _old_jobs_table()
        old.create(conn)
        conn.execute(
            old.insert().values(
                destination_id="dst_1",
                message_id="m-1",
                message=b"{}",
                received_at_ms=now,
                enqueued_at_ms=now,
                attempts=2,
                next_attempt_at_ms=now,
                lease_expires_at_ms=0,
                replay=False,
            )
        )
        conn.execute(
            sa.delete(schema.schema_migrations).where(schema.schema_migrations.c.version == 5)
        )
    assert migrate(engine) == [5]
    jobs = schema.delivery_jobs
    with write_transaction(engine) as conn:
        [kept] = conn.execute(sa.select(jobs)).all()
        assert (kept.message_id, kept.attempts, kept.mapping_id) == ("m-1", 2, "")
        row = {
            "destination_id": "dst_1",
            "message_id": "m-1",
            "message": b"{}",
            "received_at_ms": now,
            "enqueued_at_ms": now,
            "attempts": 0,
            "next_attempt_at_ms": now,
            "lease_expires_at_ms": 0,
            "replay": False,
        }
        conn.execute(jobs.insert().values(**row, mapping_id="map_a"))  # another mapping: fine
    try:
        with write_transaction(engine) as conn:
            conn.execute(jobs.insert().values(**row, mapping_id="map_a"))
        raise AssertionError("the same (destination, message, mapping) was queued twice")
    except sa.exc.IntegrityError:
        pass
    assert migrate(engine) == []


def test_records_kept_in_an_older_processed_stream_are_read_after_the_upgrade(
    engine: Engine,
) -> None:
    """A processed stream from before records could name their ingest log record: its rows
    keep their payloads, and the stream takes named records from then on."""
    with write_transaction(engine) as conn:
        conn.execute(sa.text("DROP INDEX ix_log_records_ingest"))
        for column in ("ingest_partition", "ingest_offset"):
            conn.execute(sa.text(f"ALTER TABLE log_records DROP COLUMN {column}"))
        conn.execute(
            sa.text(
                'INSERT INTO log_records (partition, "offset", appended_at, payload) '
                "VALUES (0, 1, 0, :payload)"
            ),
            {"payload": b'{"v":1}'},
        )
        conn.execute(sa.text("UPDATE log_partitions SET next_offset = 2 WHERE partition = 0"))
        conn.execute(
            sa.delete(schema.schema_migrations).where(schema.schema_migrations.c.version == 8)
        )
    assert migrate(engine) == [8]
    log = EventLog(engine)
    log.register("reader")
    assert log.poll("reader", 0, 10) == [(1, b'{"v":1}')]
    assert log.oldest_reference(0) is None
    assert migrate(engine) == []
