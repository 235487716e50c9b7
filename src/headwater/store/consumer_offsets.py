"""Exactly-once for a consumer group whose work is rows in the state database.

A consumer group is at-least-once: a pass may be handed the same records again (a lease that
moved mid-pass, a crash before the group's offset committed). A handler that writes counts
(the observer's counters, the Source Schema) keeps, in `meta`, the highest offset per
partition it has written, in the same transaction as its rows, and skips what it has seen.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from headwater.store import schema


def claim_offsets(conn: Connection, prefix: str, partitions: Iterable[int]) -> dict[int, int]:
    """The highest offset already written per partition, locked for this transaction.

    Locking matters on PostgreSQL when a partition's lease moves while the old owner is still
    working: the second process waits, then sees the first one's offset.
    """
    keys = {prefix + str(p): p for p in partitions}
    if not keys:
        return {}
    meta = schema.meta
    existing = set(conn.execute(sa.select(meta.c.key).where(meta.c.key.in_(keys))).scalars())
    missing = [{"key": key, "value": "0"} for key in sorted(keys) if key not in existing]
    sqlite = conn.dialect.name == "sqlite"
    if missing:
        if sqlite:
            conn.execute(meta.insert(), missing)  # BEGIN IMMEDIATE: no other writer
        else:
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            conn.execute(pg_insert(meta).on_conflict_do_nothing(), missing)
    query = sa.select(meta.c.key, meta.c.value).where(meta.c.key.in_(keys))
    if not sqlite:
        query = query.order_by(meta.c.key).with_for_update()
    return {keys[row.key]: int(row.value) for row in conn.execute(query)}


def record_offsets(conn: Connection, prefix: str, offsets: Iterable[tuple[int, int]]) -> None:
    """Remember the highest of these (partition, offset) pairs per partition as written."""
    last: dict[int, int] = {}
    for partition, offset in offsets:
        last[partition] = max(offset, last.get(partition, 0))
    for partition, offset in last.items():
        conn.execute(
            sa.update(schema.meta)
            .where(schema.meta.c.key == prefix + str(partition))
            .values(value=str(offset))
        )
