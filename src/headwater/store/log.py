"""The processed stream: partitioned, consumed by groups, leased to processes.

The stage chain appends what survived its stages (``pipeline/chain.py``); the archive, the
observer and the router are its consumer groups. See docs/event-log.md for the contract.
Offsets are dense per partition; an append holds its partition's counter row until commit, so
offsets become visible in order and a consumer never skips a record that commits late.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.store.database import is_sqlite, write_transaction
from headwater.store.leases import acquire_in, release_in
from headwater.store.schema import log_groups, log_members, log_partitions, log_records

Position = tuple[int, int]


class EventLog:
    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._sqlite = is_sqlite(engine)
        with engine.connect() as conn:
            self.partitions = sorted(conn.execute(sa.select(log_partitions.c.partition)).scalars())
        self._next = itertools.cycle(self.partitions)

    @property
    def engine(self) -> Engine:
        return self._engine

    # --- writing ------------------------------------------------------------------------------

    def append(self, payloads: Sequence[bytes]) -> list[Position]:
        with write_transaction(self._engine) as conn:
            return self.append_in(conn, payloads)

    def append_in(self, conn: Connection, payloads: Sequence[bytes]) -> list[Position]:
        if not payloads:
            return []
        n = len(payloads)
        if self._sqlite:  # the hot path: straight to the driver, no statement building
            partition = next(self._next)
            row = conn.exec_driver_sql(
                "UPDATE log_partitions SET next_offset = next_offset + ? WHERE partition = ? "
                "RETURNING next_offset",
                (n, partition),
            ).one()
        else:
            start = next(self._next)
            locked = (
                sa.select(log_partitions.c.partition)
                .order_by(
                    (log_partitions.c.partition - start + len(self.partitions))
                    % len(self.partitions)
                )
                .limit(1)
                .with_for_update(skip_locked=True)
                .scalar_subquery()
            )
            found = conn.execute(
                sa.update(log_partitions)
                .where(log_partitions.c.partition == locked)
                .values(next_offset=log_partitions.c.next_offset + n)
                .returning(log_partitions.c.next_offset, log_partitions.c.partition)
            ).first()
            if found is not None:
                row = found
            else:  # every partition busy: wait for ours
                row = conn.execute(
                    sa.update(log_partitions)
                    .where(log_partitions.c.partition == start)
                    .values(next_offset=log_partitions.c.next_offset + n)
                    .returning(log_partitions.c.next_offset, log_partitions.c.partition)
                ).one()
            partition = row[1]
        first = row[0] - n
        now = int(self._clock())
        if self._sqlite:
            conn.exec_driver_sql(
                'INSERT INTO log_records (partition, "offset", appended_at, payload) '
                "VALUES (?, ?, ?, ?)",
                [(partition, first + i, now, p) for i, p in enumerate(payloads)],
            )
        else:
            conn.execute(
                log_records.insert(),
                [
                    {"partition": partition, "offset": first + i, "appended_at": now, "payload": p}
                    for i, p in enumerate(payloads)
                ],
            )
        return [(partition, first + i) for i in range(n)]

    # --- consuming ----------------------------------------------------------------------------

    def register(self, group: str) -> None:
        with write_transaction(self._engine) as conn:
            have = set(
                conn.execute(
                    sa.select(log_groups.c.partition).where(log_groups.c.group_name == group)
                ).scalars()
            )
            for partition in self.partitions:
                if partition in have:
                    continue
                oldest = conn.execute(
                    sa.select(sa.func.min(log_records.c.offset)).where(
                        log_records.c.partition == partition
                    )
                ).scalar()
                if oldest is None:
                    oldest = conn.execute(
                        sa.select(log_partitions.c.next_offset).where(
                            log_partitions.c.partition == partition
                        )
                    ).scalar_one()
                conn.execute(
                    log_groups.insert().values(
                        group_name=group,
                        partition=partition,
                        committed_offset=oldest - 1,
                        owner=None,
                        lease_expires_at=0,
                    )
                )

    def poll(self, group: str, partition: int, max: int) -> list[tuple[int, bytes]]:
        with self._engine.connect() as conn:
            committed = self._committed(conn, group, partition)
            rows = conn.execute(
                sa.select(log_records.c.offset, log_records.c.payload)
                .where(log_records.c.partition == partition, log_records.c.offset > committed)
                .order_by(log_records.c.offset)
                .limit(max)
            ).all()
        return [(int(o), bytes(p)) for o, p in rows]

    def poll_many(
        self, group: str, partitions: Sequence[int], max: int
    ) -> dict[int, list[tuple[int, bytes]]]:
        """``poll`` for several partitions, reading from one snapshot."""
        with self._engine.connect() as conn, conn.begin():
            committed = dict(
                conn.execute(
                    sa.select(log_groups.c.partition, log_groups.c.committed_offset).where(
                        log_groups.c.group_name == group, log_groups.c.partition.in_(partitions)
                    )
                ).all()
            )
            missing = set(partitions) - committed.keys()
            if missing:
                raise KeyError(f"consumer group {group!r} is not registered; call register()")
            out: dict[int, list[tuple[int, bytes]]] = {}
            for partition in partitions:
                rows = conn.execute(
                    sa.select(log_records.c.offset, log_records.c.payload)
                    .where(
                        log_records.c.partition == partition,
                        log_records.c.offset > committed[partition],
                    )
                    .order_by(log_records.c.offset)
                    .limit(max)
                ).all()
                out[partition] = [(int(o), bytes(p)) for o, p in rows]
        return out

    def commit_many(
        self, group: str, offsets: Mapping[int, int], owner: str | None = None
    ) -> dict[int, bool]:
        """``commit`` for several partitions in one transaction."""
        with write_transaction(self._engine) as conn:
            return self.commit_many_in(conn, group, offsets, owner)

    def commit_many_in(
        self, conn: Connection, group: str, offsets: Mapping[int, int], owner: str | None = None
    ) -> dict[int, bool]:
        """``commit_many`` inside the caller's transaction: a stage that writes to the state
        database commits its offsets with its own writes, so they happen exactly once."""
        return {p: self._commit_in(conn, group, p, o, owner) for p, o in offsets.items()}

    def commit(self, group: str, partition: int, offset: int, owner: str | None = None) -> bool:
        with write_transaction(self._engine) as conn:
            return self._commit_in(conn, group, partition, offset, owner)

    def _commit_in(
        self, conn: Connection, group: str, partition: int, offset: int, owner: str | None
    ) -> bool:
        where = [
            log_groups.c.group_name == group,
            log_groups.c.partition == partition,
            log_groups.c.committed_offset < offset,
        ]
        if owner is not None:
            where += [
                log_groups.c.owner == owner,
                log_groups.c.lease_expires_at >= int(self._clock()),
            ]
        done = conn.execute(
            sa.update(log_groups).where(*where).values(committed_offset=offset)
        ).rowcount
        if done:
            return True
        if owner is None:
            return True  # already at or past the offset
        held = conn.execute(
            sa.select(log_groups.c.owner).where(
                log_groups.c.group_name == group,
                log_groups.c.partition == partition,
                log_groups.c.lease_expires_at >= int(self._clock()),
            )
        ).scalar()
        return bool(held == owner)

    def committed(self, group: str, partition: int) -> int:
        with self._engine.connect() as conn:
            return self._committed(conn, group, partition)

    def _committed(self, conn: Connection, group: str, partition: int) -> int:
        value = conn.execute(
            sa.select(log_groups.c.committed_offset).where(
                log_groups.c.group_name == group, log_groups.c.partition == partition
            )
        ).scalar()
        if value is None:
            raise KeyError(f"consumer group {group!r} is not registered; call register() first")
        return int(value)

    # --- leases -------------------------------------------------------------------------------

    def acquire(self, group: str, owner: str, ttl_seconds: float) -> list[int]:
        with write_transaction(self._engine) as conn:
            return acquire_in(
                conn,
                log_groups,
                log_members,
                group,
                owner,
                now=self._clock(),
                ttl_seconds=ttl_seconds,
            )

    def release(self, group: str, owner: str) -> None:
        with write_transaction(self._engine) as conn:
            release_in(conn, log_groups, log_members, group, owner)

    # --- retention ----------------------------------------------------------------------------

    def truncate(self, chunk: int = 250) -> int:
        """Remove records every group has committed past, ``chunk`` at most per transaction.

        Short transactions keep the write lock free for the Tracking API's group commits.
        """
        removed = 0
        for partition in self.partitions:
            while True:
                with write_transaction(self._engine) as conn:
                    floor = conn.execute(
                        sa.select(sa.func.min(log_groups.c.committed_offset)).where(
                            log_groups.c.partition == partition
                        )
                    ).scalar()
                    oldest = conn.execute(
                        sa.select(sa.func.min(log_records.c.offset)).where(
                            log_records.c.partition == partition
                        )
                    ).scalar()
                    if floor is None or oldest is None or oldest > floor:
                        break
                    removed += (
                        conn.execute(
                            sa.delete(log_records).where(
                                log_records.c.partition == partition,
                                log_records.c.offset <= min(floor, oldest + chunk - 1),
                            )
                        ).rowcount
                        or 0
                    )
        with write_transaction(self._engine) as conn:
            conn.execute(
                sa.delete(log_members).where(log_members.c.heartbeat_at < int(self._clock()) - 3600)
            )
        return removed

    def lag(self, group: str) -> int:
        with self._engine.connect() as conn:
            value = conn.execute(
                sa.select(sa.func.count())
                .select_from(
                    log_records.join(
                        log_groups,
                        (log_groups.c.partition == log_records.c.partition)
                        & (log_groups.c.group_name == group),
                    )
                )
                .where(log_records.c.offset > log_groups.c.committed_offset)
            ).scalar_one()
        return int(value)
