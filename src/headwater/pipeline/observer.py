"""The observer stage: counters for Source Overview and entries for the Source Debugger.

It reads every log record once (consumer group ``observer``) and turns a whole poll into one
transaction: per-minute counts of received, accepted, duplicate and failed-on-ingest messages
(with samples of what was dropped), and debugger entries trimmed to the newest 500 per source.

The log delivers at least once, but counts must not double after a crash, so the stage keeps
its own high-water offset per partition in ``meta``, written in the same transaction as the
counts: a record at or below it has been counted already and is skipped.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.spec.timestamps import parse_timestamp
from headwater.store import counters, schema
from headwater.store.counters import CounterKey, CounterStore, minute_of
from headwater.store.database import is_sqlite, write_transaction

logger = logging.getLogger(__name__)

GROUP = "observer"
DEBUGGER_CAP = 500  # Segment's Source Debugger shows the latest 500 events

_decode = msgspec.json.Decoder().decode


class Observer:
    """Log consumer handler: ``observer(records)`` with (partition, offset, payload) tuples."""

    def __init__(self, engine: Engine, *, group: str = GROUP) -> None:
        self._engine = engine
        self._counters = CounterStore(engine)
        self._meta_prefix = f"consumer_offset/{group}/"

    def __call__(self, records: list[tuple[int, int, bytes]]) -> None:
        if not records:
            return
        with write_transaction(self._engine) as conn:
            done = self._claim_positions(conn, {partition for partition, _, _ in records})
            fresh = [r for r in records if r[1] > done.get(r[0], 0)]
            if not fresh:
                return
            batch = _Batch()
            for _partition, offset, payload in fresh:
                batch.add(payload, offset)
            for minute, increments in batch.increments.items():
                self._counters.add_in(conn, increments, batch.samples.get(minute, {}), minute)
            _append_debugger(conn, batch.entries)
            last: dict[int, int] = {}
            for partition, offset, _ in fresh:
                last[partition] = max(offset, last.get(partition, 0))
            for partition, offset in last.items():
                conn.execute(
                    sa.update(schema.meta)
                    .where(schema.meta.c.key == self._meta_prefix + str(partition))
                    .values(value=str(offset))
                )

    def _claim_positions(self, conn: Connection, partitions: Iterable[int]) -> dict[int, int]:
        """The highest offset already counted per partition, locked for this transaction.

        Locking matters on PostgreSQL when a partition's lease moves while the old owner is
        still working: the second process waits and then sees the first one's offset.
        """
        keys = {self._meta_prefix + str(p): p for p in partitions}
        existing = set(
            conn.execute(sa.select(schema.meta.c.key).where(schema.meta.c.key.in_(keys))).scalars()
        )
        missing = [{"key": key, "value": "0"} for key in sorted(keys) if key not in existing]
        if missing:
            if is_sqlite(self._engine):
                conn.execute(schema.meta.insert(), missing)  # BEGIN IMMEDIATE: no other writer
            else:
                from sqlalchemy.dialects.postgresql import insert as pg_insert

                conn.execute(pg_insert(schema.meta).on_conflict_do_nothing(), missing)
        query = sa.select(schema.meta.c.key, schema.meta.c.value).where(
            schema.meta.c.key.in_(keys)
        )
        if not is_sqlite(self._engine):
            query = query.order_by(schema.meta.c.key).with_for_update()
        return {keys[row.key]: int(row.value) for row in conn.execute(query)}


class _Batch:
    """Everything one poll adds: counts and samples per minute, debugger entries in order."""

    def __init__(self) -> None:
        self.increments: dict[int, Counter[CounterKey]] = defaultdict(Counter)
        self.samples: dict[int, dict[CounterKey, list[Any]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.entries: list[dict[str, Any]] = []

    def add(self, payload: bytes, offset: int) -> None:
        try:
            record = _decode(payload)
        except msgspec.DecodeError:
            logger.error("observer: skipping a log record that is not JSON (offset %d)", offset)
            return
        if not isinstance(record, dict) or record.get("v") != 1:
            logger.error("observer: skipping a log record of unknown version (offset %d)", offset)
            return
        source_id = str(record.get("source_id", ""))
        received_at = str(record.get("received_at", ""))
        parsed = parse_timestamp(received_at)
        minute = minute_of(parsed if parsed is not None else time.time())
        events: list[Any] = record.get("events") or []
        dropped: list[Any] = record.get("dropped") or []
        duplicates = int(record.get("duplicates") or 0)

        counts = self.increments[minute]
        counts[CounterKey(source_id, "", counters.RECEIVED, "")] += (
            len(events) + len(dropped) + duplicates
        )
        counts[CounterKey(source_id, "", counters.ACCEPTED, "")] += len(events)
        counts[CounterKey(source_id, "", counters.DUPLICATE, "")] += duplicates
        for flag in record.get("flags") or []:
            counts[CounterKey(source_id, "", counters.REQUEST_FLAG, str(flag)[:100])] += 1

        for event in events:
            at = event.get("receivedAt") if isinstance(event, dict) else None
            self.entries.append({
                "source_id": source_id,
                "received_at": (at if isinstance(at, str) else received_at)[:40],
                "status": "accepted",
                "reason": None,
                "entry": {"message": event},
            })
        for drop in dropped:
            if not isinstance(drop, dict):
                continue
            reason = str(drop.get("reason") or "unknown")[:100]  # the column's width
            message = drop.get("message")
            key = CounterKey(source_id, "", counters.FAILED_ON_INGEST, reason)
            counts[key] += 1
            self.samples[minute][key].append(message)
            entry: dict[str, Any] = {"message": message}
            if drop.get("detail"):
                entry["detail"] = drop["detail"]
            self.entries.append({
                "source_id": source_id,
                "received_at": received_at[:40],
                "status": "dropped",
                "reason": reason,
                "entry": entry,
            })


def _append_debugger(conn: Connection, entries: list[dict[str, Any]]) -> None:
    """Insert the newest 500 entries per source, then drop each touched source's older ones."""
    kept: list[dict[str, Any]] = []
    per_source: Counter[str] = Counter()
    for row in reversed(entries):  # newest first, so the cap keeps the newest
        if per_source[row["source_id"]] < DEBUGGER_CAP:
            per_source[row["source_id"]] += 1
            kept.append(row)
    if not kept:
        return
    kept.reverse()
    conn.execute(schema.debugger_entries.insert(), kept)
    t = schema.debugger_entries
    for source_id in sorted(per_source):
        cutoff = (
            sa.select(t.c.id)
            .where(t.c.source_id == source_id)
            .order_by(t.c.id.desc())
            .offset(DEBUGGER_CAP - 1)
            .limit(1)
            .scalar_subquery()
        )
        conn.execute(sa.delete(t).where(t.c.source_id == source_id, t.c.id < cutoff))
