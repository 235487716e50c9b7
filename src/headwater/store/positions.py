"""How far the stage chain has read each ingest log partition, and which process holds it.

A position advances only in the transaction that writes the pass's results (processed records,
dedup keys), and only for the lease holder that read from the position it replaces: a pass
that lost its lease, or that raced another owner, rolls back whole.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.errors import LeaseLost
from headwater.store.database import is_sqlite, write_transaction
from headwater.store.leases import acquire_in, release_in
from headwater.store.schema import stage_members, stage_positions

CHAIN = "chain"


class StagePositions:
    def __init__(self, engine: Engine, *, clock: Callable[[], float], group: str = CHAIN) -> None:
        self._engine = engine
        self._clock = clock
        self.group = group

    def register(self, partitions: Iterable[int]) -> None:
        """Start reading new partitions from the beginning; idempotent."""
        with write_transaction(self._engine) as conn:
            if not is_sqlite(self._engine):  # processes starting at once take turns
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(4242002)"))
            have = set(
                conn.execute(
                    sa.select(stage_positions.c.partition).where(
                        stage_positions.c.group_name == self.group
                    )
                ).scalars()
            )
            missing = [
                {
                    "group_name": self.group,
                    "partition": p,
                    "committed_offset": 0,
                    "owner": None,
                    "lease_expires_at": 0,
                }
                for p in partitions
                if p not in have
            ]
            if missing:
                conn.execute(stage_positions.insert(), missing)

    def acquire(self, owner: str, ttl_seconds: float) -> list[int]:
        with write_transaction(self._engine) as conn:
            return acquire_in(
                conn,
                stage_positions,
                stage_members,
                self.group,
                owner,
                now=self._clock(),
                ttl_seconds=ttl_seconds,
            )

    def release(self, owner: str) -> None:
        with write_transaction(self._engine) as conn:
            release_in(conn, stage_positions, stage_members, self.group, owner)

    def positions(self) -> dict[int, int]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(stage_positions.c.partition, stage_positions.c.committed_offset).where(
                    stage_positions.c.group_name == self.group
                )
            ).all()
        return {int(p): int(o) for p, o in rows}

    def advance_in(
        self, conn: Connection, partition: int, start: int, end: int, owner: str
    ) -> None:
        """Move ``partition`` from ``start`` to ``end``, or raise ``LeaseLost`` (and the
        caller's transaction rolls back) if ``owner`` no longer holds it at ``start``."""
        moved = conn.execute(
            sa.update(stage_positions)
            .where(
                stage_positions.c.group_name == self.group,
                stage_positions.c.partition == partition,
                stage_positions.c.committed_offset == start,
                stage_positions.c.owner == owner,
                stage_positions.c.lease_expires_at >= int(self._clock()),
            )
            .values(committed_offset=end)
        ).rowcount
        if not moved:
            raise LeaseLost(
                f"{owner} no longer holds ingest log partition {partition} at offset {start}"
            )
