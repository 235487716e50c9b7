"""The Source Debugger's rows: a live sample of what each source sent, the newest 500 each.

The observer writes what reached the processed stream (accepted and dropped messages); the
Protocols stage writes what it blocked, marked `blocked` with its reason (Segment marks blocked
events in the debugger), since those never reach the processed stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from headwater.store import schema

DEBUGGER_CAP = 500  # Segment's Source Debugger shows the latest 500 events


def append_entries(conn: Connection, entries: list[dict[str, Any]]) -> None:
    """Insert debugger rows (`source_id`, `received_at`, `status`, `reason`, `entry`) in order,
    then keep each of their sources to its newest `DEBUGGER_CAP`."""
    if not entries:
        return
    conn.execute(schema.debugger_entries.insert(), entries)
    trim(conn, {entry["source_id"] for entry in entries})


def trim(conn: Connection, source_ids: Iterable[str]) -> None:
    t = schema.debugger_entries
    for source_id in sorted(source_ids):
        cutoff = (
            sa.select(t.c.id)
            .where(t.c.source_id == source_id)
            .order_by(t.c.id.desc())
            .offset(DEBUGGER_CAP - 1)
            .limit(1)
            .scalar_subquery()
        )
        conn.execute(sa.delete(t).where(t.c.source_id == source_id, t.c.id < cutoff))
