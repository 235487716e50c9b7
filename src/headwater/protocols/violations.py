"""The violations store: counts per unique violation, a few samples, and the daily digest.

A unique violation is (tracking plan, source, event type, event name, field, violation type),
Segment's grouping (§3.2; Page and Screen aggregate on `name`). The stage adds a pass's counts
in one upsert per unique violation and 5-minute bucket, inside the chain's transaction, so a
pass is counted once; the Violations view sums the buckets of its window: the past hour, 24
hours or 7 days, and nothing else (A-VF-4).

The daily digest (one per source per day, at midnight US Eastern) lists the violations seen on
the day before yesterday: Segment's "unique in the previous 48 hours", whose example has a
violation first seen on day 1 appear in day 3's digest and not in day 2's (A-VF-5).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.protocols.schema_messages import Violation
from headwater.store import schema
from headwater.store.database import write_transaction

BUCKET_SECONDS = 300
WINDOWS: Mapping[str, int] = {"1h": 3600, "24h": 24 * 3600, "7d": 7 * 24 * 3600}
SAMPLES_PER_VIOLATION = 5
RETENTION_SECONDS = 8 * 24 * 3600  # the 7-day window and the digest's day, with a margin
DIGEST_ZONE = ZoneInfo("America/New_York")  # "12 AM EST"


class ViolationKey(NamedTuple):
    source_id: str
    plan_id: str
    event_type: str
    event_name: str
    field: str
    violation_type: str


@dataclass
class _Tally:
    count: int
    last_seen: int  # epoch ms
    description: str
    samples: list[Any] = field(default_factory=list)


class ViolationTallies:
    """One pass's violations, aggregated before they are written.

    Keyed on a flat tuple of what the event said (one hash a violation); the columns' cuts and
    the `ViolationKey` are made once per unique violation, when the pass is written.
    """

    def __init__(self) -> None:
        self._tallies: dict[tuple[str, str, str, str, str, str, int], _Tally] = {}

    def add(
        self,
        source_id: str,
        plan_id: str,
        event_type: str,
        event_name: str,
        found: Iterable[Violation],
        at_ms: int,
        sample: Any,
    ) -> None:
        """One event's violations (`sample` is the event)."""
        bucket = at_ms // 1000 // BUCKET_SECONDS * BUCKET_SECONDS
        tallies = self._tallies
        for vtype, path, description in found:
            slot = (source_id, plan_id, event_type, event_name, path, vtype, bucket)
            tally = tallies.get(slot)
            if tally is None:
                tallies[slot] = _Tally(1, at_ms, description, [sample])
                continue
            tally.count += 1
            if at_ms >= tally.last_seen:
                tally.last_seen = at_ms
                tally.description = description
            if len(tally.samples) < SAMPLES_PER_VIOLATION:
                tally.samples.append(sample)

    def __len__(self) -> int:
        return len(self._tallies)

    def write_in(self, conn: Connection) -> None:
        if not self._tallies:
            return
        merged: dict[tuple[ViolationKey, int], _Tally] = {}
        for (source, plan, kind, name, path, vtype, bucket), tally in self._tallies.items():
            # cut to the columns' sizes: a client's names can be any length
            key = ViolationKey(source, plan, kind[:20], name[:200], path[:300], vtype[:60])
            known = merged.get((key, bucket))
            if known is None:
                merged[(key, bucket)] = tally
                continue
            known.count += tally.count
            if tally.last_seen >= known.last_seen:
                known.last_seen, known.description = tally.last_seen, tally.description
            known.samples = (known.samples + tally.samples)[:SAMPLES_PER_VIOLATION]
        rows = [
            {
                **key._asdict(),
                "bucket": bucket,
                "count": tally.count,
                "last_seen": tally.last_seen,
                "description": tally.description,
            }
            for (key, bucket), tally in sorted(merged.items(), key=lambda kv: kv[0])
        ]
        conn.execute(_upsert(conn.dialect.name), rows)
        samples = [
            {**key._asdict(), "recorded_at": tally.last_seen, "sample": sample}
            for (key, _bucket), tally in merged.items()
            for sample in tally.samples
        ]
        conn.execute(schema.violation_samples.insert(), samples)


def _upsert(dialect: str) -> Any:
    t = schema.violation_counts
    keys = [*ViolationKey._fields, "bucket"]
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        stmt: Any = sqlite_insert(t)
    else:
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        stmt = pg_insert(t)
    newer = stmt.excluded.last_seen >= t.c.last_seen
    return stmt.on_conflict_do_update(
        index_elements=keys,
        set_={
            "count": t.c["count"] + stmt.excluded["count"],
            "last_seen": sa.case((newer, stmt.excluded.last_seen), else_=t.c.last_seen),
            "description": sa.case((newer, stmt.excluded.description), else_=t.c.description),
        },
    )


class UnknownWindow(ValueError):
    """A window other than 1h, 24h and 7d."""


class ViolationStore:
    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    def summary(
        self, source_id: str, window: str, *, plan_id: str | None = None, samples: int = 0
    ) -> list[dict[str, Any]]:
        """The unique violations of the window, most frequent first, each with its count,
        last seen and (if asked) its newest samples."""
        seconds = WINDOWS.get(window)
        if seconds is None:
            raise UnknownWindow(f"window must be one of {', '.join(WINDOWS)}, not {window!r}")
        since = int(self._clock()) - seconds
        return self._grouped(
            source_id, since // BUCKET_SECONDS * BUCKET_SECONDS, None, plan_id, samples
        )

    def digest(self, source_id: str, day: date) -> list[dict[str, Any]]:
        """The digest sent at the start of ``day`` (US Eastern): the violations of the day
        before yesterday, one line each (event, field, type, count, last seen)."""
        start = datetime.combine(day - timedelta(days=2), datetime.min.time(), DIGEST_ZONE)
        end = datetime.combine(day - timedelta(days=1), datetime.min.time(), DIGEST_ZONE)
        return self._grouped(source_id, int(start.timestamp()), int(end.timestamp()), None, 0)

    def _grouped(
        self,
        source_id: str,
        since: int,
        until: int | None,
        plan_id: str | None,
        samples: int,
    ) -> list[dict[str, Any]]:
        t = schema.violation_counts
        keys = [t.c[name] for name in ViolationKey._fields]
        query = (
            sa.select(
                *keys,
                sa.func.sum(t.c["count"]).label("total"),
                sa.func.max(t.c.last_seen).label("last_seen"),
            )
            .where(t.c.source_id == source_id, t.c.bucket >= since)
            .group_by(*keys)
        )
        if until is not None:
            query = query.where(t.c.bucket < until)
        if plan_id is not None:
            query = query.where(t.c.plan_id == plan_id)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
            out = []
            for row in rows:
                key = ViolationKey(*(row[i] for i in range(len(ViolationKey._fields))))
                description = conn.execute(
                    sa.select(t.c.description)
                    .where(*(t.c[n] == v for n, v in key._asdict().items()))
                    .order_by(t.c.last_seen.desc())
                    .limit(1)
                ).scalar_one()
                item: dict[str, Any] = {
                    "sourceId": key.source_id,
                    "trackingPlanId": key.plan_id or None,
                    "eventType": key.event_type,
                    "eventName": key.event_name,
                    "field": key.field,
                    "violationType": key.violation_type,
                    "description": description,
                    "count": int(row.total),
                    "lastSeen": _iso(int(row.last_seen)),
                }
                if samples:
                    item["samples"] = self._samples(conn, key, since, samples)
                out.append(item)
        out.sort(key=lambda v: (-v["count"], v["eventName"], v["field"], v["violationType"]))
        return out

    def _samples(self, conn: Connection, key: ViolationKey, since: int, limit: int) -> list[Any]:
        """The violation's newest samples inside the window."""
        s = schema.violation_samples
        rows = conn.execute(
            sa.select(s.c.sample)
            .where(
                *(s.c[n] == v for n, v in key._asdict().items()),
                s.c.recorded_at >= since * 1000,
            )
            .order_by(s.c.id.desc())
            .limit(limit)
        ).scalars()
        return list(rows)

    def purge(self) -> int:
        """Forget counts older than the retention and samples beyond each violation's newest
        few; the rows deleted."""
        cutoff = int(self._clock()) - RETENTION_SECONDS
        t, s = schema.violation_counts, schema.violation_samples
        with write_transaction(self._engine) as conn:
            removed = conn.execute(sa.delete(t).where(t.c.bucket < cutoff)).rowcount or 0
            removed += (
                conn.execute(sa.delete(s).where(s.c.recorded_at < cutoff * 1000)).rowcount or 0
            )
            keys = [s.c[name] for name in ViolationKey._fields]
            ranked = sa.select(
                s.c.id,
                sa.func.row_number().over(partition_by=keys, order_by=s.c.id.desc()).label("n"),
            ).subquery()
            stale = sa.select(ranked.c.id).where(ranked.c.n > SAMPLES_PER_VIOLATION)
            removed += conn.execute(sa.delete(s).where(s.c.id.in_(stale))).rowcount or 0
        return removed


def _iso(ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, tz=ZoneInfo("UTC"))
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
