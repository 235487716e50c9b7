"""Which profiles time has made due: real-time state (``engage_profiles``) and journey
members (``engage_journey_members``) both keep a ``due_at`` per profile row, read the same way
by the stage's idle work."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection as DbConnection


def due_profiles(
    conn: DbConnection, table: sa.Table, space_id: str, now: float, limit: int
) -> list[str]:
    """The profiles of the space with a row due by ``now``, earliest first, each once; at
    most ``limit`` rows are read (so a call's work stays bounded)."""
    rows = conn.execute(
        sa.select(table.c.profile_id)
        .where(table.c.space_id == space_id, table.c.due_at <= int(now))
        .order_by(table.c.due_at)
        .limit(limit)
    )
    return list(dict.fromkeys(rows.scalars()))
