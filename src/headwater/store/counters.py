"""Per-minute counts of what happened to messages, and a few sample messages per reason.

This is the store behind Source Overview and Delivery Overview: every stage that receives,
drops or delivers a message adds to a counter keyed by (source, destination, step, reason) in
the minute it happened, and keeps up to ten samples per key so a discard reason can be shown
with real payloads. Counts are upserted (``count = count + excluded.count``), so many writers
can add to the same minute without reading first.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.store import schema
from headwater.store.database import write_transaction

# Steps, in Segment's pipeline order (Source Overview §5.3, Delivery Overview §8.1).
RECEIVED = "received"
FAILED_ON_INGEST = "failed_on_ingest"  # reason: the discard code
DUPLICATE = "duplicate"
# Dropped by a per-source stage (Protocols, schema controls): reason is the stage's code.
FILTERED_AT_SOURCE = "filtered_at_source"
ACCEPTED = "accepted"
# A request-level discard code (``multi_user_error``, ``empty_batch_result``), counted once per
# request. Kept apart from failed_on_ingest so that
# received = accepted + failed + duplicate + filtered at source.
REQUEST_FLAG = "request_flag"

SAMPLES_PER_KEY = 10

_KEY_COLUMNS = ("source_id", "destination_id", "step", "reason")


class CounterKey(NamedTuple):
    source_id: str
    destination_id: str  # "" when the step is not about a destination
    step: str
    reason: str  # "" when the step has no reason


class Total(NamedTuple):
    step: str
    reason: str
    events: int  # not "count": that name is taken by tuple.count


class Sample(NamedTuple):
    key: CounterKey
    recorded_at: int  # unix seconds (the start of the minute it was counted in)
    message: Any


def minute_of(moment: datetime | float) -> int:
    """The minute bucket (minutes since the Unix epoch) of a datetime or a Unix time."""
    seconds = moment.timestamp() if isinstance(moment, datetime) else moment
    return int(seconds // 60)


class CounterStore:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # --- writing ------------------------------------------------------------------------------

    def add(
        self,
        increments: Mapping[CounterKey, int],
        samples: Mapping[CounterKey, Sequence[Any]] | None = None,
        minute: int | None = None,
    ) -> None:
        """Add counts (and samples) for one minute in one transaction; default: this minute."""
        if minute is None:
            minute = minute_of(time.time())
        with write_transaction(self._engine) as conn:
            self.add_in(conn, increments, samples or {}, minute)

    def add_in(
        self,
        conn: Connection,
        increments: Mapping[CounterKey, int],
        samples: Mapping[CounterKey, Sequence[Any]],
        minute: int,
    ) -> None:
        """Like ``add``, inside the caller's transaction (stages batch all their writes)."""
        rows = [
            {**key._asdict(), "minute": minute, "count": count}
            for key, count in sorted(increments.items())  # one lock order across writers
            if count
        ]
        if rows:
            conn.execute(_upsert_counts(conn), rows)
        sample_rows = []
        for key, messages in sorted(samples.items()):
            # Only the newest ten can survive the trim, so don't write the others.
            for message in list(messages)[-SAMPLES_PER_KEY:]:
                sample_rows.append({**key._asdict(), "recorded_at": minute * 60, "sample": message})
        if sample_rows:
            conn.execute(schema.counter_samples.insert(), sample_rows)
            for key in sorted({CounterKey(*(r[c] for c in _KEY_COLUMNS)) for r in sample_rows}):
                _trim_samples(conn, key)

    def expire(self, before_minute: int) -> int:
        """Forget counts older than ``before_minute``; return how many rows went."""
        with write_transaction(self._engine) as conn:
            result = conn.execute(
                sa.delete(schema.counters).where(schema.counters.c.minute < before_minute)
            )
            conn.execute(
                sa.delete(schema.counter_hours).where(
                    schema.counter_hours.c.hour < before_minute // 60
                )
            )
        return int(result.rowcount or 0)

    # --- reading ------------------------------------------------------------------------------

    def totals(
        self,
        source_id: str | None = None,
        destination_id: str | None = None,
        since_minute: int | None = None,
        until_minute: int | None = None,
    ) -> list[Total]:
        """Counts per (step, reason) over ``since_minute <= minute < until_minute``.

        ``None`` leaves a filter out: ``destination_id=None`` sums every destination and the
        source's own steps, ``destination_id=""`` gives only the source's own steps.
        """
        c = schema.counters.c
        query = sa.select(c.step, c.reason, sa.func.sum(c["count"]).label("total"))
        query = query.where(*_key_filter(schema.counters, source_id, destination_id))
        if since_minute is not None:
            query = query.where(c.minute >= since_minute)
        if until_minute is not None:
            query = query.where(c.minute < until_minute)
        query = query.group_by(c.step, c.reason).order_by(c.step, c.reason)
        with self._engine.connect() as conn:
            return [Total(row.step, row.reason, int(row.total)) for row in conn.execute(query)]

    def per_minute(
        self, destination_id: str, steps: Sequence[str], since_minute: int, until_minute: int
    ) -> list[tuple[int, str, int]]:
        """(minute, step, events) of one destination over ``since_minute <= minute <
        until_minute``: Event Delivery's chart buckets them by hour."""
        c = schema.counters.c
        query = (
            sa.select(c.minute, c.step, sa.func.sum(c["count"]))
            .where(
                c.destination_id == destination_id,
                c.step.in_(list(steps)),
                c.minute >= since_minute,
                c.minute < until_minute,
            )
            .group_by(c.minute, c.step)
            .order_by(c.minute)
        )
        with self._engine.connect() as conn:
            return [(int(r[0]), str(r[1]), int(r[2])) for r in conn.execute(query)]

    def by_connection(
        self, since_minute: int, until_minute: int | None = None
    ) -> list[tuple[str, str, str, int]]:
        """(source, destination, step, events) over ``since_minute <= minute``: the workspace
        overview. Hours ``roll_up`` has totalled are read from ``counter_hours``; only the
        partial hour at the start and the minutes since the last roll-up come from minutes."""
        c, h = schema.counters.c, schema.counter_hours.c
        with self._engine.connect() as conn:
            through = _rolled_through(conn)
            first_full = -(-since_minute // 60)
            minutes = sa.or_(
                sa.and_(c.minute >= since_minute, c.minute < first_full * 60),
                c.minute >= max(first_full, through + 1) * 60,
            )
            if until_minute is not None:
                minutes = sa.and_(minutes, c.minute < until_minute)
            from_minutes = sa.select(c.source_id, c.destination_id, c.step, c["count"]).where(
                minutes
            )
            from_hours = sa.select(h.source_id, h.destination_id, h.step, h["count"]).where(
                h.hour >= first_full, h.hour <= through
            )
            both = sa.union_all(from_hours, from_minutes).subquery()
            query = sa.select(
                both.c.source_id, both.c.destination_id, both.c.step, sa.func.sum(both.c["count"])
            ).group_by(both.c.source_id, both.c.destination_id, both.c.step)
            return [(r[0], r[1], r[2], int(r[3])) for r in conn.execute(query)]

    def roll_up(self, now: float) -> int:
        """Total each completed hour into ``counter_hours``; the number of hours written. The
        last hour is totalled again on the next call: a writer may still have been adding to
        its last minute."""
        c = schema.counters.c
        current_hour = minute_of(now) // 60
        with write_transaction(self._engine) as conn:
            through = _rolled_through(conn)
            if through < 0:
                oldest = conn.execute(sa.select(sa.func.min(c.minute))).scalar()
                if oldest is None:
                    return 0
                through = int(oldest) // 60 - 1
            first = max(through, int(current_hour) - 24 * 15)  # never more than retention
            written = 0
            for hour in range(first, int(current_hour)):
                conn.execute(
                    schema.counter_hours.delete().where(schema.counter_hours.c.hour == hour)
                )
                totals = sa.select(
                    sa.literal(hour, sa.BigInteger),
                    c.source_id,
                    c.destination_id,
                    c.step,
                    c.reason,
                    sa.func.sum(c["count"]),
                ).where(c.minute >= hour * 60, c.minute < (hour + 1) * 60)
                totals = totals.group_by(c.source_id, c.destination_id, c.step, c.reason)
                conn.execute(
                    schema.counter_hours.insert().from_select(
                        ["hour", "source_id", "destination_id", "step", "reason", "count"], totals
                    )
                )
                written += 1
            _set_rolled_through(conn, int(current_hour) - 1)
        return written

    def samples(
        self,
        source_id: str | None = None,
        destination_id: str | None = None,
        step: str | None = None,
        reason: str | None = None,
        *,
        since_minute: int | None = None,
        limit: int = SAMPLES_PER_KEY,
    ) -> list[Sample]:
        """The newest samples matching the filters, newest first."""
        c = schema.counter_samples.c
        query = sa.select(schema.counter_samples).where(
            *_key_filter(schema.counter_samples, source_id, destination_id)
        )
        if step is not None:
            query = query.where(c.step == step)
        if reason is not None:
            query = query.where(c.reason == reason)
        if since_minute is not None:
            query = query.where(c.recorded_at >= since_minute * 60)
        query = query.order_by(c.id.desc()).limit(limit)
        with self._engine.connect() as conn:
            return [
                Sample(
                    CounterKey(row.source_id, row.destination_id, row.step, row.reason),
                    int(row.recorded_at),
                    row.sample,
                )
                for row in conn.execute(query)
            ]


_ROLLED_KEY = "counters_rolled_through_hour"


def _rolled_through(conn: Connection) -> int:
    """The last hour ``counter_hours`` holds, or -1 before the first roll-up."""
    value = conn.execute(
        sa.select(schema.meta.c.value).where(schema.meta.c.key == _ROLLED_KEY)
    ).scalar_one_or_none()
    return int(value) if value else -1


def _set_rolled_through(conn: Connection, hour: int) -> None:
    updated = conn.execute(
        schema.meta.update().where(schema.meta.c.key == _ROLLED_KEY).values(value=str(hour))
    )
    if not updated.rowcount:
        conn.execute(schema.meta.insert().values(key=_ROLLED_KEY, value=str(hour)))


def _key_filter(
    table: sa.Table, source_id: str | None, destination_id: str | None
) -> Iterable[sa.ColumnElement[bool]]:
    if source_id is not None:
        yield table.c.source_id == source_id
    if destination_id is not None:
        yield table.c.destination_id == destination_id


_UPSERTS: dict[str, Any] = {}  # dialect name -> statement: building one takes ~100 µs


def _upsert_counts(conn: Connection) -> Any:
    """``INSERT … ON CONFLICT (key) DO UPDATE SET count = count + excluded.count``."""
    dialect = conn.dialect.name
    statement = _UPSERTS.get(dialect)
    if statement is not None:
        return statement
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        sqlite_stmt = sqlite_insert(schema.counters)
        statement = sqlite_stmt.on_conflict_do_update(
            index_elements=["minute", *_KEY_COLUMNS],
            set_={"count": schema.counters.c["count"] + sqlite_stmt.excluded["count"]},
        )
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg_stmt = pg_insert(schema.counters)
        statement = pg_stmt.on_conflict_do_update(
            index_elements=["minute", *_KEY_COLUMNS],
            set_={"count": schema.counters.c["count"] + pg_stmt.excluded["count"]},
        )
    else:
        raise NotImplementedError(f"counters need SQLite or PostgreSQL, not {dialect}")
    _UPSERTS[dialect] = statement
    return statement


def _trim_samples(conn: Connection, key: CounterKey) -> None:
    """Delete a key's samples older than its tenth newest (one indexed statement)."""
    t = schema.counter_samples
    match = [t.c[name] == value for name, value in zip(_KEY_COLUMNS, key, strict=True)]
    tenth = (
        sa.select(t.c.id)
        .where(*match)
        .order_by(t.c.id.desc())
        .offset(SAMPLES_PER_KEY - 1)
        .limit(1)
        .scalar_subquery()
    )
    conn.execute(sa.delete(t).where(*match, t.c.id < tenth))
