"""Blocked events, kept 30 days as they arrived (Segment keeps fully blocked events 30 days).

The stage writes a pass's blocked events inside the chain's transaction; the worker's
maintenance deletes those older than the retention, as it does the dedup keys.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.store import schema
from headwater.store.database import write_transaction

RETENTION_SECONDS = 30 * 24 * 3600


class BlockedEvents:
    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    def write_in(self, conn: Connection, rows: Sequence[tuple[str, str, Any]]) -> None:
        """``(source id, reason, message)`` rows, blocked now."""
        if rows:
            now = int(self._clock())
            conn.execute(
                schema.blocked_events.insert(),
                [
                    {"source_id": s, "blocked_at": now, "reason": r, "message": m}
                    for s, r, m in rows
                ],
            )

    def recent(self, source_id: str, limit: int = 100) -> list[dict[str, Any]]:
        t = schema.blocked_events
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.blocked_at, t.c.reason, t.c.message)
                .where(t.c.source_id == source_id)
                .order_by(t.c.id.desc())
                .limit(limit)
            ).all()
        return [{"blockedAt": r.blocked_at, "reason": r.reason, "message": r.message} for r in rows]

    def purge(self) -> int:
        """Delete what is past the retention; the rows deleted."""
        cutoff = int(self._clock()) - RETENTION_SECONDS
        t = schema.blocked_events
        with write_transaction(self._engine) as conn:
            return conn.execute(sa.delete(t).where(t.c.blocked_at < cutoff)).rowcount or 0
