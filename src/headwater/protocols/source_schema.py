"""The Source Schema (§6.1, §6.3): what each source has been seen sending, and how often.

A consumer group of the processed stream (``source-schema``) records per source the Track
events by name (Page calls as ``Page Viewed``, Screen calls as ``Screen Viewed``), their
property paths, and the Identify and Group traits, with allowed counts per hour so the 24 h,
7 d and 30 d timeframes are sums over buckets. The Protocols stage drops blocked events before
the processed stream, so it reports them through ``SchemaObserver.blocked``.

A pass is aggregated in memory and written as one upsert per (source, event, property) and
hour, whatever the number of events. Only the first 4,000 Track events of a source and the
first 300 properties of an event (traits of a call type) are ever listed: later ones are
still delivered, only not recorded here.

Like the observer, the stage keeps its own high-water offset per partition in ``meta``, in
the same transaction as the counts, so a redelivered pass is not counted twice.
"""

from __future__ import annotations

import builtins
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.errors import RecordError
from headwater.protocols.compiled import PAGE_VIEWED, SCREEN_VIEWED
from headwater.store import schema
from headwater.store.consumer_offsets import claim_offsets, record_offsets
from headwater.store.database import write_transaction
from headwater.store.record import decode_processed
from headwater.store.workspace import is_unicode
from headwater.timestamps import parse_timestamp

logger = logging.getLogger(__name__)

GROUP = "source-schema"
MAX_EVENTS = 4000  # Track events listed per source (§6.3)
MAX_PROPERTIES = 300  # properties listed per event, traits per call type (§6.3)
MAX_NAME = 255  # the columns' width: a longer name or path is not listed

TRACK, IDENTIFY, GROUP_KIND = "track", "identify", "group"
KINDS = (TRACK, IDENTIFY, GROUP_KIND)
TIMEFRAMES = {"24h": 24, "7d": 7 * 24, "30d": 30 * 24}  # in hour buckets

# Violations the Protocols stage forwards into a source (§3.3, a record with `forwarded_from`)
# are not listed in its schema (A-VF-2); blocked events forwarded there are.
VIOLATION_EVENT = "Violation Generated"

Key = tuple[str, str, str, str]  # (source, kind, event, property); property "" is the event


def storable(name: str) -> bool:
    """Whether a name fits the schema's columns: no NUL (PostgreSQL refuses it), valid UTF-8
    (JSON's lone ``\\ud800`` escape is not), at most 255 characters."""
    return len(name) <= MAX_NAME and "\x00" not in name and is_unicode(name)


def schema_key(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """(kind, event name) under which a message is listed; None when it is not listed."""
    call = event.get("type")
    if call == "track":
        name = event.get("event")
        if not isinstance(name, str) or not name:
            return None
        return TRACK, name
    if call == "page":
        return TRACK, PAGE_VIEWED
    if call == "screen":
        return TRACK, SCREEN_VIEWED
    if call == "identify":
        return IDENTIFY, ""
    if call == "group":
        return GROUP_KIND, ""
    return None


def property_paths(value: Mapping[str, Any], limit: int = MAX_PROPERTIES) -> list[str]:
    """The first ``limit`` property paths of an object: nested as ``a.b``, array items as
    ``a.$`` (and ``a.$.b`` for the keys of object items), in the order they appear."""
    found: dict[str, None] = {}
    _walk(value, "", found, limit)
    paths = list(found)
    return paths[:limit] if len(paths) > limit else paths


def _walk(value: Mapping[str, Any], prefix: str, found: dict[str, None], limit: int) -> None:
    """Every path in order (decoded JSON: plain dicts and lists); the limit is checked once an
    object, and the caller keeps the first ``limit``, which is the same list."""
    if len(found) >= limit:
        return
    for key, item in value.items():
        path = prefix + key
        found[path] = None
        kind = type(item)
        if kind is dict:
            _walk(item, path + ".", found, limit)
        elif kind is list and item:
            found[path + ".$"] = None
            inner = path + ".$."
            for element in item:
                if type(element) is dict:
                    _walk(element, inner, found, limit)


Shape = tuple[str, str, str, tuple[str, ...], int]  # (source, kind, event, paths, hour)


class _Pass:
    """One pass's observations, by the shape of each event: most events of a name carry the
    same properties, so one dict lookup an event does, and rows are made once a pass."""

    def __init__(self) -> None:
        self.shapes: dict[Shape, list[int]] = {}  # -> [allowed, blocked, first, last]

    def add(self, source_id: str, event: Mapping[str, Any], at: int, blocked: bool) -> None:
        listed = schema_key(event)
        if listed is None:
            return
        kind, name = listed
        container = event.get("properties" if kind == TRACK else "traits")
        paths = tuple(property_paths(container)) if isinstance(container, dict) else ()
        shape = (source_id, kind, name, paths, at // 3600)
        tally = self.shapes.get(shape)
        if tally is None:
            tally = self.shapes[shape] = [0, 0, at, at]
        elif at < tally[2]:
            tally[2] = at
        elif at > tally[3]:
            tally[3] = at
        tally[1 if blocked else 0] += 1

    def merge(self, other: _Pass) -> None:
        for shape, (allowed, blocked, first, last) in other.shapes.items():
            tally = self.shapes.get(shape)
            if tally is None:
                self.shapes[shape] = [allowed, blocked, first, last]
                continue
            tally[0] += allowed
            tally[1] += blocked
            tally[2], tally[3] = min(tally[2], first), max(tally[3], last)

    def rows(self) -> tuple[dict[Key, list[int]], dict[tuple[Key, int], list[int]]]:
        """First/last seen per item (in first-seen order), allowed/blocked per item and hour."""
        seen: dict[Key, list[int]] = {}
        counts: dict[tuple[Key, int], list[int]] = {}
        for (source_id, kind, name, paths, hour), tally in self.shapes.items():
            if not storable(name):
                continue
            allowed, blocked, first, last = tally
            for path in ("", *paths):
                if path and not storable(path):
                    continue
                key = (source_id, kind, name, path)
                times = seen.get(key)
                if times is None:
                    seen[key] = [first, last]
                else:
                    times[0], times[1] = min(times[0], first), max(times[1], last)
                count = counts.get((key, hour))
                if count is None:
                    counts[(key, hour)] = [allowed, blocked]
                else:
                    count[0] += allowed
                    count[1] += blocked
        return seen, counts


class SchemaObserver:
    """Log consumer handler (``observer(records)``) that records each source's schema."""

    def __init__(
        self, engine: Engine, *, group: str = GROUP, clock: Callable[[], float] = time.time
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._meta_prefix = f"consumer_offset/{group}/"
        self._lock = threading.Lock()
        self._blocked = _Pass()
        self._listed = _Listed()

    def blocked(self, source_id: str, event: Mapping[str, Any]) -> None:
        """Count an event the Protocols stage blocked (it never reaches the processed stream).

        Kept in memory and written by ``write_blocked`` (inside the stage's own transaction)
        or else with this observer's next pass. A stage whose pass fails calls
        ``forget_blocked`` before it redoes the pass, so nothing is counted twice.
        """
        at = _seconds(event.get("receivedAt"), self._clock())
        with self._lock:
            self._blocked.add(source_id, event, at, blocked=True)

    def forget_blocked(self) -> None:
        with self._lock:
            self._blocked = _Pass()

    def write_blocked(self, conn: Connection) -> None:
        """Write the blocked counts gathered so far inside the caller's transaction."""
        with self._lock:
            pending, self._blocked = self._blocked, _Pass()
        _write(conn, pending)

    def __call__(self, records: list[tuple[int, int, bytes]]) -> None:
        with self._lock:
            pending, self._blocked = self._blocked, _Pass()
        try:
            self._observe(records, pending)
        except BaseException:
            with self._lock:  # not written: keep them for the next pass
                pending.merge(self._blocked)
                self._blocked = pending
            raise

    def _observe(self, records: list[tuple[int, int, bytes]], pending: _Pass) -> None:
        if not records and not pending.shapes:
            return
        batch = _Pass()  # pending is put back as it was if this pass fails
        batch.merge(pending)
        with write_transaction(self._engine) as conn:
            done = claim_offsets(conn, self._meta_prefix, {p for p, _, _ in records})
            fresh = [r for r in records if r[1] > done.get(r[0], 0)]
            for _partition, offset, payload in fresh:
                try:
                    record = decode_processed(payload)
                except RecordError as exc:
                    logger.error("source schema: skipping log record at %d: %s", offset, exc)
                    continue
                at = _seconds(record.received_at, self._clock())
                forwarded = bool(record.forwarded_from)
                for raw in record.events:
                    try:
                        event = msgspec.json.decode(raw)
                    except msgspec.DecodeError:
                        continue
                    if not isinstance(event, dict):
                        continue
                    if forwarded and event.get("event") == VIOLATION_EVENT:
                        continue  # A-VF-2
                    batch.add(record.source_id, event, at, blocked=False)
            written = _write(conn, batch, self._listed)
            record_offsets(conn, self._meta_prefix, ((p, o) for p, o, _ in fresh))
        self._listed.update(written)  # committed: these rows are there


def _seconds(received_at: Any, default: float) -> int:
    parsed = parse_timestamp(received_at[:40]) if isinstance(received_at, str) else None
    return int(parsed.timestamp() if parsed is not None else default)


def _insert(conn: Connection, table: sa.Table) -> Any:
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table)
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert(table)


class _Listed:
    """The items this observer knows it has written, with the first and last seen it wrote.

    Most passes see only items already listed: then the limits need no look at the table, and
    an item's row is rewritten only when its first seen moves back or its last seen moves on by
    a minute (counts are written every pass). Another writer's Clear Schema History may delete
    a row this remembers: it is listed again within that minute.
    """

    LIMIT = 200_000  # entries kept; past it the memory starts again (correct, only slower)

    def __init__(self) -> None:
        self.times: dict[Key, tuple[int, int]] = {}

    def update(self, written: Mapping[Key, tuple[int, int]]) -> None:
        if len(self.times) + len(written) > self.LIMIT:
            self.times = {}
        self.times.update(written)


def _write(
    conn: Connection, batch: _Pass, known: _Listed | None = None
) -> dict[Key, tuple[int, int]]:
    """Upsert a pass's items and counts: new items only while the source is under its limits.
    Returns the items whose rows were written, with the times written."""
    if not batch.shapes:
        return {}
    seen, counts = batch.rows()
    remembered = known.times if known is not None else {}
    fresh = {key: times for key, times in seen.items() if key not in remembered}
    listed = _admit(conn, fresh, [key for key in seen if key in remembered]) if fresh else set(seen)
    items = schema.schema_items
    due: dict[Key, tuple[int, int]] = {}
    for key, (first, last) in seen.items():
        if key not in listed:
            continue
        before = remembered.get(key)
        if before is None or first < before[0] or last >= before[1] + 60:
            due[key] = (first, last)
    rows = [
        {
            "source_id": key[0],
            "kind": key[1],
            "event": key[2],
            "property": key[3],
            "first_seen": first,
            "last_seen": last,
            "archived": False,
        }
        for key, (first, last) in sorted(due.items())  # one lock order across writers
    ]
    if rows:
        stmt = _insert(conn, items)
        t = items.c
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["source_id", "kind", "event", "property"],
                set_={
                    # 0 is "added by hand, never seen" (New Event)
                    "first_seen": sa.case(
                        (t.first_seen == 0, stmt.excluded.first_seen),
                        (stmt.excluded.first_seen < t.first_seen, stmt.excluded.first_seen),
                        else_=t.first_seen,
                    ),
                    "last_seen": sa.case(
                        (stmt.excluded.last_seen > t.last_seen, stmt.excluded.last_seen),
                        else_=t.last_seen,
                    ),
                },
            ),
            rows,
        )
    count_rows = [
        {
            "source_id": key[0],
            "kind": key[1],
            "event": key[2],
            "property": key[3],
            "hour": hour,
            "allowed": allowed,
            "blocked": blocked,
        }
        for (key, hour), (allowed, blocked) in sorted(counts.items())
        if key in listed
    ]
    if count_rows:
        stmt = _insert(conn, schema.schema_counts)
        c = schema.schema_counts.c
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["source_id", "kind", "event", "property", "hour"],
                set_={
                    "allowed": c.allowed + stmt.excluded.allowed,
                    "blocked": c.blocked + stmt.excluded.blocked,
                },
            ),
            count_rows,
        )
    return due


def _admit(conn: Connection, seen: Mapping[Key, object], already: Iterable[Key] = ()) -> set[Key]:
    """The keys that are (or may now become) listed, within the §6.3 limits, in the order
    the pass first saw them; ``already`` are known to be listed."""
    t = schema.schema_items.c
    by_source: dict[str, list[Key]] = {}
    for key in seen:
        by_source.setdefault(key[0], []).append(key)
    listed: set[Key] = set(already)
    for source_id, keys in sorted(by_source.items()):
        names = sorted({key[2] for key in keys})
        existing: set[Key] = set()
        properties: dict[tuple[str, str], int] = {}
        for chunk in _chunks(names, 500):
            for row in conn.execute(
                sa.select(t.kind, t.event, t.property).where(
                    t.source_id == source_id, t.event.in_(chunk)
                )
            ):
                existing.add((source_id, row.kind, row.event, row.property))
                if row.property:
                    properties[(row.kind, row.event)] = properties.get((row.kind, row.event), 0) + 1
        events = conn.execute(
            sa.select(sa.func.count()).where(
                t.source_id == source_id, t.kind == TRACK, t.property == ""
            )
        ).scalar_one()
        for key in keys:
            _source, kind, name, path = key
            if key in existing:
                listed.add(key)
            elif not path:
                if kind != TRACK or events < MAX_EVENTS:
                    listed.add(key)
                    events += kind == TRACK
            elif (source_id, kind, name, "") in listed:
                held = properties.get((kind, name), 0)
                if held < MAX_PROPERTIES:
                    listed.add(key)
                    properties[(kind, name)] = held + 1
    return listed


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


# --- reading and editing the schema ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    """One listed event, property or trait, with its counts over a timeframe."""

    kind: str
    event: str
    property: str
    first_seen: int | None  # None: added by hand (New Event), never seen
    last_seen: int | None
    archived: bool
    allowed: int
    blocked: int

    @builtins.property  # the field above hides the builtin
    def total(self) -> int:
        return self.allowed + self.blocked


def since_hour(timeframe: str, now: float) -> int:
    """The first hour bucket of a timeframe ending now (``24h``, ``7d``, ``30d``)."""
    return int(now) // 3600 - TIMEFRAMES[timeframe] + 1


class SchemaStore:
    """Reads and edits of the recorded schema (the REST API's and the CSV export's)."""

    def __init__(self, engine: Engine, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    def items(
        self,
        source_id: str,
        kind: str,
        timeframe: str,
        *,
        event: str | None = None,
        properties: bool | None = None,
    ) -> list[Item]:
        """Listed items of one kind with their counts in the timeframe, by name.

        ``event`` keeps one event's rows; ``properties`` True keeps property rows only, False
        event rows only, None both.
        """
        i, c = schema.schema_items.c, schema.schema_counts.c
        first = since_hour(timeframe, self._clock())
        sums = (
            sa.select(
                c.event,
                c.property,
                sa.func.sum(c.allowed).label("allowed"),
                sa.func.sum(c.blocked).label("blocked"),
            )
            .where(c.source_id == source_id, c.kind == kind, c.hour >= first)
            .group_by(c.event, c.property)
        )
        query = sa.select(schema.schema_items).where(i.source_id == source_id, i.kind == kind)
        if event is not None:
            query = query.where(i.event == event)
            sums = sums.where(c.event == event)
        if properties is True:
            query = query.where(i.property != "")
        elif properties is False:
            query = query.where(i.property == "")
        with self._engine.connect() as conn:
            counted = {
                (r.event, r.property): (int(r.allowed), int(r.blocked)) for r in conn.execute(sums)
            }
            rows = conn.execute(query.order_by(i.event, i.property)).all()
        return [
            Item(
                kind=row.kind,
                event=row.event,
                property=row.property,
                first_seen=int(row.first_seen) or None,
                last_seen=int(row.last_seen) or None,
                archived=bool(row.archived),
                allowed=counted.get((row.event, row.property), (0, 0))[0],
                blocked=counted.get((row.event, row.property), (0, 0))[1],
            )
            for row in rows
        ]

    def has_event(self, source_id: str, name: str) -> bool:
        i = schema.schema_items.c
        query = sa.select(i.event).where(
            i.source_id == source_id, i.kind == TRACK, i.event == name, i.property == ""
        )
        with self._engine.connect() as conn:
            return conn.execute(query).first() is not None

    def add_event(self, source_id: str, name: str) -> bool:
        """New Event: list a Track event before it arrives; False when it is listed already."""
        with write_transaction(self._engine) as conn:
            stmt = _insert(conn, schema.schema_items).on_conflict_do_nothing()
            added = conn.execute(
                stmt.values(
                    **{
                        "source_id": source_id,
                        "kind": TRACK,
                        "event": name,
                        "property": "",
                        "first_seen": 0,
                        "last_seen": 0,
                        "archived": False,
                    }
                ).returning(schema.schema_items.c.event)
            ).first()
        return added is not None

    def set_archived(self, source_id: str, name: str, archived: bool) -> None:
        i = schema.schema_items.c
        with write_transaction(self._engine) as conn:
            conn.execute(
                sa.update(schema.schema_items)
                .where(i.source_id == source_id, i.kind == TRACK, i.event == name)
                .values(archived=archived)
            )

    def clear(self, source_id: str, kinds: Iterable[str]) -> None:
        """Clear Schema History for these kinds: the schema fills again from new events."""
        chosen = list(kinds)
        with write_transaction(self._engine) as conn:
            for table in (schema.schema_items, schema.schema_counts):
                conn.execute(
                    sa.delete(table).where(table.c.source_id == source_id, table.c.kind.in_(chosen))
                )

    def expire(self, before_hour: int) -> int:
        """Forget hourly counts older than ``before_hour`` (no timeframe reaches them); the
        listed items and their last-seen times stay."""
        c = schema.schema_counts.c
        with write_transaction(self._engine) as conn:
            result = conn.execute(sa.delete(schema.schema_counts).where(c.hour < before_hour))
        return int(result.rowcount or 0)
