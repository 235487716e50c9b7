"""The dedup stage's durable keys: packed runs, one row per commit and hour.

A message's identity is a 63-bit hash of (workspace id, messageId). Two different ids colliding
needs ~3·10⁹ ids inside one window before the chance reaches 50 %; at 10⁸ ids a window the
chance of any collision is about 0.05 %, and a collision drops one message as a duplicate —
well inside Segment's own "99 % deduplicated" promise.

The stage keeps the window's keys in memory and writes each pass's new keys here, in the
pass's transaction, as one blob of 8-byte integers per hour: a sequential append of 8 bytes an
event instead of a random B-tree page. On start (or when it takes over a partition) the stage
reads the window's runs back. Closed hours are merged into one row each, so a start reads a
few dozen rows however many passes wrote them.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable, Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.store.database import write_transaction
from headwater.store.schema import dedup_runs


def dedup_key(workspace_id: str, message_id: str) -> int:
    digest = hashlib.blake2b(f"{workspace_id}\x00{message_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def pack(keys: Iterable[int]) -> bytes:
    return array("q", keys).tobytes()


def unpack(blob: bytes) -> array[int]:
    keys = array("q")
    keys.frombytes(blob)
    return keys


class DedupRuns:
    def __init__(self, engine: Engine, *, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock

    def write_in(
        self, conn: Connection, partition: int, keys_by_hour: Mapping[int, Iterable[int]]
    ) -> None:
        rows = [
            {"partition": partition, "hour": hour, "packed": pack(keys)}
            for hour, keys in keys_by_hour.items()
        ]
        if rows:
            conn.execute(dedup_runs.insert(), rows)

    def load(self, partition: int, since_hour: int) -> dict[int, array[int]]:
        """Every key of ``partition`` first seen in ``since_hour`` or later, by hour."""
        out: dict[int, array[int]] = {}
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(dedup_runs.c.hour, dedup_runs.c.packed).where(
                    dedup_runs.c.partition == partition, dedup_runs.c.hour >= since_hour
                )
            )
            for hour, blob in rows:
                out.setdefault(int(hour), array("q")).frombytes(bytes(blob))
        return out

    def maintain(self, before_hour: int, closed_before_hour: int) -> int:
        """Delete runs older than ``before_hour``; merge each hour before
        ``closed_before_hour`` into one row. Returns the rows deleted."""
        with write_transaction(self._engine) as conn:
            removed = (
                conn.execute(sa.delete(dedup_runs).where(dedup_runs.c.hour < before_hour)).rowcount
                or 0
            )
            split = conn.execute(
                sa.select(dedup_runs.c.partition, dedup_runs.c.hour)
                .where(dedup_runs.c.hour < closed_before_hour)
                .group_by(dedup_runs.c.partition, dedup_runs.c.hour)
                .having(sa.func.count() > 1)
            ).all()
            for partition, hour in split:
                where = (dedup_runs.c.partition == partition, dedup_runs.c.hour == hour)
                merged = array("q")
                for (blob,) in conn.execute(sa.select(dedup_runs.c.packed).where(*where)):
                    merged.frombytes(bytes(blob))
                conn.execute(sa.delete(dedup_runs).where(*where))
                conn.execute(
                    dedup_runs.insert().values(
                        partition=partition, hour=hour, packed=merged.tobytes()
                    )
                )
        return removed
