"""The ingest log: what the Tracking API acknowledges, before any stage has looked at it.

Appenders (the Tracking API's group commit and the internal append path) write it and nothing
else does; the stage chain reads it and writes the processed stream (the event log of
``store/log.py``) that every later stage reads. Keeping the two apart is what keeps background
work off the acknowledgement's path: a stage's bookkeeping never takes the ingest log's lock.

Partitions are keyed by workspace, so one owner of a partition sees all of a workspace's events
in order — what deduplication (and later identity resolution) needs.

Two stores implement it: segment files on SQLite (``store/segments.py``, the embedded default)
and tables on PostgreSQL (``TableLog`` here), shared by several ingest processes.
"""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.store.database import Durability, is_sqlite, write_transaction
from headwater.store.schema import ingest_partitions, ingest_records, meta
from headwater.store.segments import SegmentLog


class IngestLog(Protocol):
    @property
    def partitions(self) -> Sequence[int]: ...

    def append(self, records: Sequence[tuple[str, bytes]]) -> None:
        """Commit ``(workspace id, payload)`` records durably, in one transaction."""

    def read(self, partition: int, after: int, limit: int) -> list[tuple[int, bytes]]:
        """``(offset, payload)`` above ``after``, ascending, at most ``limit``."""

    def end(self, partition: int) -> int:
        """The highest offset committed (0 when empty)."""

    def appended_at(self, partition: int, offset: int) -> int | None:
        """When the record at ``offset`` was appended, while it is kept."""

    def drop_through(self, partition: int, offset: int) -> int:
        """Forget records at or below ``offset`` (every reader is past them)."""

    def probe(self) -> None:
        """Raise unless an append could be committed now."""

    def oldest_appended_at(self) -> int | None:
        """When the oldest record kept was appended (epoch seconds); None when none is."""

    def request_seal(self, before: float) -> None:
        """Let retention drop every record appended at or before ``before`` once the chain
        has passed it (segment files: the newest segment is sealed)."""

    def close(self) -> None: ...


def open_ingest_log(
    engine: Engine, data_dir: Path, *, durability: Durability, clock: Callable[[], float]
) -> IngestLog:
    """Segment files beside a SQLite state database; tables in a PostgreSQL one."""
    if is_sqlite(engine):
        return SegmentLog(data_dir / "log", durability=durability, clock=clock)
    return TableLog(engine, clock=clock)


def partition_of(workspace_id: str, partitions: int) -> int:
    return zlib.crc32(workspace_id.encode()) % partitions


class TableLog:
    """The ingest log as two tables of a shared database (PostgreSQL in production).

    An append takes its partitions' offset counters in ascending order (so two appenders never
    deadlock) and holds them to commit, so offsets become visible in order.
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock
        with engine.connect() as conn:
            self.partitions = sorted(
                conn.execute(sa.select(ingest_partitions.c.partition)).scalars()
            )

    def append(self, records: Sequence[tuple[str, bytes]]) -> None:
        if not records:
            return
        by_partition: dict[int, list[bytes]] = defaultdict(list)
        for workspace_id, payload in records:
            by_partition[partition_of(workspace_id, len(self.partitions))].append(payload)
        now = int(self._clock())
        with write_transaction(self._engine) as conn:
            for partition in sorted(by_partition):
                payloads = by_partition[partition]
                following = conn.execute(
                    sa.update(ingest_partitions)
                    .where(ingest_partitions.c.partition == partition)
                    .values(next_offset=ingest_partitions.c.next_offset + len(payloads))
                    .returning(ingest_partitions.c.next_offset)
                ).scalar_one()
                first = following - len(payloads)
                conn.execute(
                    ingest_records.insert(),
                    [
                        {
                            "partition": partition,
                            "offset": first + i,
                            "appended_at": now,
                            "payload": p,
                        }
                        for i, p in enumerate(payloads)
                    ],
                )

    def read(self, partition: int, after: int, limit: int) -> list[tuple[int, bytes]]:
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(ingest_records.c.offset, ingest_records.c.payload)
                .where(ingest_records.c.partition == partition, ingest_records.c.offset > after)
                .order_by(ingest_records.c.offset)
                .limit(limit)
            ).all()
        return [(int(o), bytes(p)) for o, p in rows]

    def end(self, partition: int) -> int:
        with self._engine.connect() as conn:
            value = conn.execute(
                sa.select(sa.func.max(ingest_records.c.offset)).where(
                    ingest_records.c.partition == partition
                )
            ).scalar()
            if value is None:  # empty: everything ever appended has been dropped
                value = (
                    conn.execute(
                        sa.select(ingest_partitions.c.next_offset).where(
                            ingest_partitions.c.partition == partition
                        )
                    ).scalar_one()
                    - 1
                )
        return int(value)

    def appended_at(self, partition: int, offset: int) -> int | None:
        with self._engine.connect() as conn:
            value = conn.execute(
                sa.select(ingest_records.c.appended_at).where(
                    ingest_records.c.partition == partition, ingest_records.c.offset == offset
                )
            ).scalar()
        return None if value is None else int(value)

    def drop_through(self, partition: int, offset: int) -> int:
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                sa.delete(ingest_records).where(
                    ingest_records.c.partition == partition, ingest_records.c.offset <= offset
                )
            )
        return result.rowcount or 0

    def oldest_appended_at(self) -> int | None:
        """Per partition, its first record's time (appends take their time before their
        offsets, so offsets and times ascend together to within the clock's second)."""
        oldest: int | None = None
        with self._engine.connect() as conn:
            for partition in self.partitions:
                value = conn.execute(
                    sa.select(ingest_records.c.appended_at)
                    .where(ingest_records.c.partition == partition)
                    .order_by(ingest_records.c.offset)
                    .limit(1)
                ).scalar()
                if value is not None and (oldest is None or value < oldest):
                    oldest = int(value)
        return oldest

    def request_seal(self, before: float) -> None:
        """Rows are dropped one by one as the chain passes them: nothing to seal."""

    def probe(self) -> None:
        with write_transaction(self._engine) as conn:
            conn.execute(sa.delete(meta).where(meta.c.key == "ready_probe"))
            conn.execute(meta.insert().values(key="ready_probe", value=str(self._clock())))

    def close(self) -> None:
        """The engine belongs to the caller."""
