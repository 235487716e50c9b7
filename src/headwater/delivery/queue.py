"""The delivery queues: one per destination instance, persisted in the state database.

A job is one message for one destination instance. The router enqueues jobs in the same
transaction that commits its log offsets, and a (destination, messageId) pair is queued at most
once, so a message is enqueued exactly once. Workers claim due jobs under a lease (several
worker processes share a queue on PostgreSQL with ``FOR UPDATE SKIP LOCKED``); a worker that
dies leaves leases that expire, and the jobs come back. Settling a claim — delete what was
delivered or given up, reschedule what will be retried, count both — is one transaction, and
only the lease holder may settle.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from headwater.store import schema
from headwater.store.counters import CounterKey, CounterStore, minute_of
from headwater.store.database import is_sqlite, write_transaction

LATENCY_SAMPLES_PER_MINUTE = 1000

jobs = schema.delivery_jobs


@dataclass(frozen=True)
class NewJob:
    destination_id: str
    message_id: str
    message: bytes
    received_at_ms: int
    replay: bool = False
    mapping_id: str = ""  # the Actions mapping this job is for


@dataclass(frozen=True)
class Job:
    id: int
    destination_id: str
    message_id: str
    message: bytes
    received_at_ms: int
    enqueued_at_ms: int
    attempts: int
    first_attempt_at_ms: int | None
    replay: bool
    mapping_id: str = ""


@dataclass
class Settlement:
    """What happened to the jobs of one claim, to be written in one transaction."""

    destination_id: str
    done: list[int] = field(default_factory=list)  # delivered or given up: leave the queue
    retry: list[tuple[Job, int, str]] = field(default_factory=list)  # (job, next at ms, code)
    started_at_ms: int = 0  # when this attempt began (first attempt time of new jobs)
    counts: dict[CounterKey, int] = field(default_factory=dict)
    samples: dict[CounterKey, list[Any]] = field(default_factory=dict)
    latencies_ms: list[int] = field(default_factory=list)

    def count(self, key: CounterKey, n: int = 1, sample: Any = None) -> None:
        self.counts[key] = self.counts.get(key, 0) + n
        if sample is not None:
            self.samples.setdefault(key, []).append(sample)


class DeliveryQueue:
    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock
        self._sqlite = is_sqlite(engine)
        self._counters = CounterStore(engine)

    def now_ms(self) -> int:
        return int(self._clock() * 1000)

    # --- enqueueing ----------------------------------------------------------------------------

    def enqueue_in(self, conn: Connection, new: Sequence[NewJob]) -> int:
        """Queue jobs inside the caller's transaction; a message already queued is skipped."""
        if not new:
            return 0
        now = self.now_ms()
        insert = (sqlite.insert if self._sqlite else postgresql.insert)(jobs)
        # RETURNING counts what was queued on both databases (a PostgreSQL executemany
        # reports no row count).
        result = conn.execute(
            insert.on_conflict_do_nothing().returning(jobs.c.id),
            [
                {
                    "destination_id": j.destination_id,
                    "message_id": j.message_id,
                    "message": j.message,
                    "received_at_ms": j.received_at_ms,
                    "enqueued_at_ms": now,
                    "attempts": 0,
                    "first_attempt_at_ms": None,
                    "next_attempt_at_ms": now,
                    "lease_owner": None,
                    "lease_expires_at_ms": 0,
                    "last_error": None,
                    "replay": j.replay,
                    "mapping_id": j.mapping_id,
                }
                for j in new
            ],
        )
        return len(result.all())

    def enqueue(self, new: Sequence[NewJob]) -> int:
        with write_transaction(self._engine) as conn:
            return self.enqueue_in(conn, new)

    # --- claiming ------------------------------------------------------------------------------

    def _due(self, destination_id: str, replay_only: bool, now: int) -> list[Any]:
        where = [
            jobs.c.destination_id == destination_id,
            jobs.c.next_attempt_at_ms <= now,
            jobs.c.lease_expires_at_ms < now,
        ]
        if replay_only:
            where.append(jobs.c.replay.is_(True))
        return where

    def due(self, destination_id: str, *, replay_only: bool = False) -> tuple[int, int | None]:
        """How many jobs are due now, and when the oldest of them was enqueued (ms)."""
        now = self.now_ms()
        with self._engine.connect() as conn:
            count, oldest = conn.execute(
                sa.select(sa.func.count(), sa.func.min(jobs.c.enqueued_at_ms)).where(
                    *self._due(destination_id, replay_only, now)
                )
            ).one()
        return int(count), (int(oldest) if oldest is not None else None)

    def claim(
        self,
        destination_id: str,
        limit: int,
        owner: str,
        lease_seconds: float,
        *,
        replay_only: bool = False,
    ) -> list[Job]:
        """Lease up to ``limit`` due jobs, oldest due first."""
        now = self.now_ms()
        query = (
            sa.select(jobs)
            .where(*self._due(destination_id, replay_only, now))
            .order_by(jobs.c.next_attempt_at_ms, jobs.c.id)
            .limit(limit)
        )
        if not self._sqlite:
            query = query.with_for_update(skip_locked=True)
        with write_transaction(self._engine) as conn:
            rows = conn.execute(query).all()
            if not rows:
                return []
            conn.execute(
                sa.update(jobs)
                .where(jobs.c.id.in_([r.id for r in rows]))
                .values(lease_owner=owner, lease_expires_at_ms=now + int(lease_seconds * 1000))
            )
        return [
            Job(
                r.id,
                r.destination_id,
                r.message_id,
                bytes(r.message),
                r.received_at_ms,
                r.enqueued_at_ms,
                r.attempts,
                r.first_attempt_at_ms,
                bool(r.replay),
                r.mapping_id,
            )
            for r in rows
        ]

    # --- settling ------------------------------------------------------------------------------

    def settle(self, owner: str, settlement: Settlement) -> None:
        """Write a claim's outcome; jobs whose lease passed to another owner are left alone."""
        now = self.now_ms()
        mine = [jobs.c.lease_owner == owner]
        with write_transaction(self._engine) as conn:
            if settlement.done:
                conn.execute(sa.delete(jobs).where(jobs.c.id.in_(settlement.done), *mine))
            for job, next_at, code in settlement.retry:
                conn.execute(
                    sa.update(jobs)
                    .where(jobs.c.id == job.id, *mine)
                    .values(
                        attempts=job.attempts + 1,
                        first_attempt_at_ms=job.first_attempt_at_ms or settlement.started_at_ms,
                        next_attempt_at_ms=next_at,
                        lease_owner=None,
                        lease_expires_at_ms=0,
                        last_error=code[:200],
                    )
                )
            if settlement.counts:
                minute = minute_of(now / 1000)
                self._counters.add_in(conn, settlement.counts, settlement.samples, minute)
            if settlement.latencies_ms:
                self._record_latencies(conn, settlement, now)

    @staticmethod
    def _record_latencies(conn: Connection, settlement: Settlement, now: int) -> None:
        minute = minute_of(now / 1000)
        t = schema.delivery_latencies
        destination = settlement.destination_id
        have = conn.execute(
            sa.select(sa.func.count())
            .select_from(t)
            .where(t.c.destination_id == destination, t.c.minute == minute)
        ).scalar_one()
        room = LATENCY_SAMPLES_PER_MINUTE - int(have)
        if room > 0:
            conn.execute(
                t.insert(),
                [
                    {"destination_id": destination, "minute": minute, "latency_ms": v}
                    for v in settlement.latencies_ms[:room]
                ],
            )

    def expire_latencies(self, before_minute: int) -> int:
        t = schema.delivery_latencies
        with write_transaction(self._engine) as conn:
            return int(conn.execute(sa.delete(t).where(t.c.minute < before_minute)).rowcount or 0)

    # --- reading -------------------------------------------------------------------------------

    def backlog(self, destination_id: str) -> Mapping[str, int]:
        """Jobs waiting for a destination: all of them, and those waiting for a retry."""
        with self._engine.connect() as conn:
            pending, retrying = conn.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.coalesce(sa.func.sum(sa.case((jobs.c.attempts > 0, 1), else_=0)), 0),
                ).where(jobs.c.destination_id == destination_id)
            ).one()
        return {"pending": int(pending), "retrying": int(retrying)}
