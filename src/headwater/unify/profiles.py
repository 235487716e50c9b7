"""A space's profile data: traits, the event timeline and metadata (the identity graph holds the
profiles themselves and their identifiers).

Written by the identity stage inside its own transaction (``record``, ``merge``: the caller's
``Connection``), read by the Profile API on connections of its own. Every read is one indexed
probe by (space, profile); a write costs a read of the event's trait keys and a write of the
traits it changes, so neither grows with the number of profiles.

Traits (spec §3.1, §9): a user's come from ``context.traits`` of any call and, for Identify,
``traits`` (which win over ``context.traits`` in the same call); an account's from Group
``traits``. ``null`` removes a trait, ``""`` stores the empty string (A-UE-22), nested objects
are stored whole as values. Each trait keeps the time (the event's ``timestamp``) and source of
the write that set it (A-UE-23). Order: a write older than the trait's ``updated_at`` is ignored,
so a late, older event never overwrites a newer value (per-trait ``updated_at``, §21 #4); at the
same time the later arrival wins. A removal leaves a row marked absent, so an older event cannot
bring a removed trait back. Writing the value a trait already has changes nothing, not even its
``updated_at``: ``updated_at`` is when the value last changed, and a write costs only what
changes.

Timeline (§3.2): Track, Page (as ``Page Viewed``) and Screen (as ``Screen Viewed``) calls, never
Identify or Group; unique on ``messageId`` per profile, so recording an event again changes
nothing. Kept 14 days by the event's ``timestamp`` (``prune``).

Merges (§21 #4): the merged-away profile's traits go to the survivor key by key, the later
``updated_at`` winning; its events and metadata move too. Only the two profiles' rows change.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, Row

from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.timestamps import format_timestamp, parse_timestamp
from headwater.unify.graph import MergeProfiles
from headwater.unify.identifiers import Extractor
from headwater.unify.resolution import Resolution
from headwater.unify.settings import IdentitySettings

EVENT_RETENTION_DAYS = 14
TIMELINE_EVENTS = {"track", "page", "screen"}
PAGE_VIEWED = "Page Viewed"
SCREEN_VIEWED = "Screen Viewed"
CUSTOM = "custom"
TRAIT_CLASSES = (CUSTOM, "computed_trait", "audience")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

Sort = Literal["asc", "desc"]


class Trait(NamedTuple):
    value: Any
    source_id: str
    updated_at: int  # microseconds since 1970


class TimelineEvent(NamedTuple):
    at_ns: int  # the event's time, nanoseconds since 1970
    message_id: str
    body: dict[str, Any]


class Metadata(NamedTuple):
    collection: str
    created_at: int  # microseconds since 1970
    updated_at: int
    first_message_id: str
    first_source_id: str
    last_message_id: str
    last_source_id: str


def micros(dt: datetime) -> int:
    return (dt - _EPOCH) // _US


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def iso(value: int) -> str:
    """A stored time as the Profile API shows it (``2017-11-30T06:05:01.404Z``)."""
    return format_timestamp(from_micros(value))


def event_instant(event: dict[str, Any], clock: Callable[[], float] = time.time) -> datetime:
    """The event's ``timestamp``, but never after its ``receivedAt`` (a clock running ahead
    would otherwise hold its traits against every newer write until that time comes); else
    ``receivedAt``; else now."""
    timestamp = parse_timestamp(event.get("timestamp"))
    received = parse_timestamp(event.get("receivedAt"))
    if timestamp is not None and (received is None or timestamp <= received):
        return timestamp
    if received is not None:
        return received
    return datetime.fromtimestamp(clock(), UTC)


def _same(a: Any, b: Any) -> bool:
    """JSON equality that tells 1 from 1.0 from true, whatever order a dict's keys come in."""
    return bool(msgspec.json.encode(a, order="sorted") == msgspec.json.encode(b, order="sorted"))


def _object(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def event_traits(collection: str, event: dict[str, Any]) -> dict[str, Any]:
    """The traits an event writes to a profile of ``collection``."""
    kind = event.get("type")
    if collection == "accounts":
        return dict(_object(event.get("traits"))) if kind == "group" else {}
    traits = dict(_object(_object(event.get("context")).get("traits")))
    if kind == "identify":
        traits.update(_object(event.get("traits")))
    return traits


def _insert(conn: Connection, table: sa.Table) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)


class ProfileData:
    """One space's profile data."""

    def __init__(
        self,
        engine: Engine,
        space_id: str,
        settings: IdentitySettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self.space_id = space_id
        self._extractor = Extractor(settings or IdentitySettings())
        self._clock = clock

    # --- writes (the caller's transaction) -----------------------------------------------------

    def record(
        self,
        conn: Connection,
        profile_id: str,
        collection: str,
        event: dict[str, Any],
        source_id: str,
    ) -> dict[str, Any]:
        """Apply one resolved event to a profile; the traits it changed ({key: new value, or
        None when removed})."""
        when = event_instant(event, self._clock)
        at = micros(when)
        message_id = str(event.get("messageId") or "")
        changed = self._write_traits(
            conn, profile_id, event_traits(collection, event), source_id, at
        )
        if event.get("type") in TIMELINE_EVENTS and message_id:
            self._append(conn, profile_id, event, source_id, when, message_id)
        self._touch(conn, profile_id, collection, at, message_id, source_id)
        return changed

    def apply(
        self, conn: Connection, resolution: Resolution, event: dict[str, Any], source_id: str
    ) -> dict[str, dict[str, Any]]:
        """One resolved event, as the identity stage applies it: the event's merges in their
        order, then its user's and its account's profiles. The traits changed, by profile."""
        changed: dict[str, dict[str, Any]] = {}
        for change in resolution.changes:
            if isinstance(change, MergeProfiles):
                merged = self.merge(conn, change.from_id, change.into_id)
                changed.setdefault(change.into_id, {}).update(merged)
        for profile, collection in ((resolution.user, "users"), (resolution.account, "accounts")):
            if profile is not None:
                done = self.record(conn, profile, collection, event, source_id)
                changed.setdefault(profile, {}).update(done)
        return {profile: traits for profile, traits in changed.items() if traits}

    def merge(self, conn: Connection, from_id: str, into_id: str) -> dict[str, Any]:
        """Move ``from_id``'s data to ``into_id``; the survivor's traits that changed."""
        t = schema.unify_profile_traits
        rows = {
            (r.profile_id, r.key): r
            for r in conn.execute(
                sa.select(t).where(
                    t.c.space_id == self.space_id, t.c.profile_id.in_((from_id, into_id))
                )
            )
        }
        changed: dict[str, Any] = {}
        moved: list[dict[str, Any]] = []
        for (profile, key), row in rows.items():
            if profile != from_id:
                continue
            kept = rows.get((into_id, key))
            if kept is not None and kept.updated_at >= row.updated_at:
                continue
            moved.append(
                self._trait_row(
                    into_id,
                    key,
                    row.value,
                    row.present,
                    row.trait_class,
                    row.source_id,
                    row.updated_at,
                )
            )
            before = kept is not None and kept.present
            if row.present and not (before and kept is not None and _same(kept.value, row.value)):
                changed[key] = row.value
            elif not row.present and before:
                changed[key] = None
        self._upsert_traits(conn, moved)
        conn.execute(t.delete().where(t.c.space_id == self.space_id, t.c.profile_id == from_id))
        self._merge_events(conn, from_id, into_id)
        self._merge_metadata(conn, from_id, into_id)
        return changed

    def prune(self, now: float | None = None) -> int:
        """Forget this space's events older than 14 days (by their timestamps)."""
        return _prune(self._engine, now or self._clock(), self.space_id)

    # --- reads (connections of their own) ------------------------------------------------------

    def traits(
        self,
        profile_id: str,
        *,
        keys: Collection[str] | None = None,
        trait_class: str | None = None,
        after: str | None = None,
        limit: int | None = None,
    ) -> dict[str, Trait]:
        """The profile's traits in byte-wise key order: those named in ``keys``, of
        ``trait_class``, from key ``after`` on (inclusive), at most ``limit``."""
        query = _traits_query(keys is not None, trait_class is not None, after is not None)
        params: dict[str, Any] = {
            "space_id": self.space_id,
            "profile_id": profile_id,
            "limit": -1 if limit is None else limit,  # SQLite: no limit; PostgreSQL: ALL
        }
        if keys is not None:
            params["keys"] = list(keys)
        if trait_class is not None:
            params["trait_class"] = trait_class
        if after is not None:
            params["after"] = after
        if limit is None and self._engine.dialect.name == "postgresql":
            params["limit"] = None
        with self._engine.connect() as conn:
            return {r[0]: Trait(r[1], r[2], r[3]) for r in conn.execute(query, params)}

    def events(
        self,
        profile_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        include: Collection[str] | None = None,
        exclude: Collection[str] | None = None,
        limit: int = 10,
        sort: Sort = "desc",
        cursor: tuple[int, str] | None = None,
    ) -> list[TimelineEvent]:
        """The profile's events of the last 14 days, newest first unless ``sort`` is asc,
        after ``start`` and before ``end``, named in ``include`` and not in ``exclude``, from
        ``cursor`` (an event's (at_ns, message_id), inclusive) on."""
        e = schema.unify_profile_events
        horizon = _horizon(self._clock())
        low = max(horizon, _ns(start)) if start is not None else horizon
        query = sa.select(e.c.at_ns, e.c.message_id, e.c.body).where(
            e.c.space_id == self.space_id, e.c.profile_id == profile_id, e.c.at_ns >= low
        )
        if end is not None:
            query = query.where(e.c.at_ns < _ns(end))
        if include is not None:
            query = query.where(e.c.event.in_(list(include)))
        if exclude:
            query = query.where(e.c.event.not_in(list(exclude)))
        if cursor is not None:
            at_ns, message_id = cursor
            if sort == "desc":
                query = query.where(
                    sa.or_(
                        e.c.at_ns < at_ns, sa.and_(e.c.at_ns == at_ns, e.c.message_id <= message_id)
                    )
                )
            else:
                query = query.where(
                    sa.or_(
                        e.c.at_ns > at_ns, sa.and_(e.c.at_ns == at_ns, e.c.message_id >= message_id)
                    )
                )
        if sort == "desc":
            query = query.order_by(e.c.at_ns.desc(), e.c.message_id.desc())
        else:
            query = query.order_by(e.c.at_ns, e.c.message_id)
        with self._engine.connect() as conn:
            return [
                TimelineEvent(r.at_ns, r.message_id, r.body)
                for r in conn.execute(query.limit(limit))
            ]

    def metadata(self, profile_id: str) -> Metadata | None:
        m = schema.unify_profile_metadata
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(m).where(m.c.space_id == self.space_id, m.c.profile_id == profile_id)
            ).first()
        return _metadata(row) if row is not None else None

    def profiles(
        self, collection: str, *, after: str | None = None, limit: int = 10
    ) -> list[tuple[str, Metadata]]:
        """Profiles with data, by id: those after ``after`` (exclusive), at most ``limit``."""
        m = schema.unify_profile_metadata
        query = sa.select(m).where(m.c.space_id == self.space_id, m.c.collection == collection)
        if after is not None:
            query = query.where(m.c.profile_id > after)
        with self._engine.connect() as conn:
            rows = conn.execute(query.order_by(m.c.profile_id).limit(limit))
            return [(r.profile_id, _metadata(r)) for r in rows]

    # --- internals -----------------------------------------------------------------------------

    def _trait_row(
        self,
        profile_id: str,
        key: str,
        value: Any,
        present: bool,
        trait_class: str,
        source_id: str,
        at: int,
    ) -> dict[str, Any]:
        return {
            "space_id": self.space_id,
            "profile_id": profile_id,
            "key": key,
            "value": value if present else None,
            "present": present,
            "trait_class": trait_class,
            "source_id": source_id,
            "updated_at": at,
        }

    def _write_traits(
        self, conn: Connection, profile_id: str, traits: dict[str, Any], source_id: str, at: int
    ) -> dict[str, Any]:
        if not traits:
            return {}
        t = schema.unify_profile_traits
        stored = {
            r.key: r
            for r in conn.execute(
                sa.select(t.c.key, t.c.value, t.c.present, t.c.trait_class, t.c.updated_at).where(
                    t.c.space_id == self.space_id,
                    t.c.profile_id == profile_id,
                    t.c.key.in_(list(traits)),
                )
            )
        }
        changed: dict[str, Any] = {}
        writes: list[dict[str, Any]] = []
        for key, value in traits.items():
            row = stored.get(key)
            if row is not None and row.updated_at > at:
                continue  # a newer write holds the trait (§21 #4)
            present = value is not None
            if (
                row is not None
                and row.present == present
                and (not present or _same(row.value, value))
            ):
                continue  # nothing to change
            if present:
                changed[key] = value
            elif row is not None:
                changed[key] = None
            # (no row and a removal: nothing changes, but the removal is kept against older
            # events arriving later)
            kind = row.trait_class if row is not None else CUSTOM
            writes.append(self._trait_row(profile_id, key, value, present, kind, source_id, at))
        self._upsert_traits(conn, writes)
        return changed

    def _upsert_traits(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        if not rows:
            return
        insert = _insert(conn, schema.unify_profile_traits)
        excluded = insert.excluded
        conn.execute(
            insert.on_conflict_do_update(
                index_elements=["space_id", "profile_id", "key"],
                set_={
                    "value": excluded.value,
                    "present": excluded.present,
                    "trait_class": excluded.trait_class,
                    "source_id": excluded.source_id,
                    "updated_at": excluded.updated_at,
                },
            ),
            list(rows),
        )

    def _append(
        self,
        conn: Connection,
        profile_id: str,
        event: dict[str, Any],
        source_id: str,
        when: datetime,
        message_id: str,
    ) -> None:
        kind = str(event.get("type"))
        properties = dict(_object(event.get("properties")))
        if kind == "track":
            name = str(event.get("event") or "")
        else:
            name = PAGE_VIEWED if kind == "page" else SCREEN_VIEWED
            if isinstance(event.get("name"), str):
                properties.setdefault("name", event["name"])
        external_ids = [
            {"collection": i.collection, "type": i.type, "id": i.value, "encoding": "none"}
            for i in self._extractor.extract(event).identifiers
        ]
        body = {
            "external_ids": external_ids,
            "context": _object(event.get("context")),
            "type": kind,
            "message_id": message_id,
            "source_id": source_id,
            "timestamp": format_timestamp(when),
            "properties": properties,
            "event": name,
        }
        insert = _insert(conn, schema.unify_profile_events)
        conn.execute(
            insert.values(
                space_id=self.space_id,
                profile_id=profile_id,
                at_ns=micros(when) * 1000,
                message_id=message_id,
                event=name,
                body=body,
            ).on_conflict_do_nothing(index_elements=["space_id", "profile_id", "message_id"])
        )

    def _touch(
        self,
        conn: Connection,
        profile_id: str,
        collection: str,
        at: int,
        message_id: str,
        source_id: str,
    ) -> None:
        m = schema.unify_profile_metadata
        row = conn.execute(
            sa.select(m).where(m.c.space_id == self.space_id, m.c.profile_id == profile_id)
        ).first()
        if row is None:
            conn.execute(
                m.insert().values(
                    space_id=self.space_id,
                    profile_id=profile_id,
                    collection=collection,
                    created_at=at,
                    updated_at=at,
                    first_message_id=message_id,
                    first_source_id=source_id,
                    last_message_id=message_id,
                    last_source_id=source_id,
                )
            )
            return
        values: dict[str, Any] = {}
        if at < row.created_at:
            values.update(created_at=at, first_message_id=message_id, first_source_id=source_id)
        if at > row.updated_at:
            values.update(updated_at=at, last_message_id=message_id, last_source_id=source_id)
        if values:
            conn.execute(
                m.update()
                .where(m.c.space_id == self.space_id, m.c.profile_id == profile_id)
                .values(**values)
            )

    def _merge_events(self, conn: Connection, from_id: str, into_id: str) -> None:
        e = schema.unify_profile_events
        there = e.alias("there")
        held = (
            sa.select(there.c.message_id)
            .where(
                there.c.space_id == self.space_id,
                there.c.profile_id == into_id,
                there.c.message_id == e.c.message_id,
            )
            .exists()
        )
        conn.execute(
            e.update()
            .where(e.c.space_id == self.space_id, e.c.profile_id == from_id, ~held)
            .values(profile_id=into_id)
        )
        conn.execute(e.delete().where(e.c.space_id == self.space_id, e.c.profile_id == from_id))

    def _merge_metadata(self, conn: Connection, from_id: str, into_id: str) -> None:
        m = schema.unify_profile_metadata
        rows = {
            r.profile_id: r
            for r in conn.execute(
                sa.select(m).where(
                    m.c.space_id == self.space_id, m.c.profile_id.in_((from_id, into_id))
                )
            )
        }
        gone = rows.get(from_id)
        if gone is None:
            return
        conn.execute(m.delete().where(m.c.space_id == self.space_id, m.c.profile_id == from_id))
        kept = rows.get(into_id)
        if kept is None:
            conn.execute(m.insert().values({**gone._mapping, "profile_id": into_id}))
            return
        values: dict[str, Any] = {}
        if gone.created_at < kept.created_at:
            values.update(
                created_at=gone.created_at,
                first_message_id=gone.first_message_id,
                first_source_id=gone.first_source_id,
            )
        if gone.updated_at > kept.updated_at:
            values.update(
                updated_at=gone.updated_at,
                last_message_id=gone.last_message_id,
                last_source_id=gone.last_source_id,
            )
        if values:
            conn.execute(
                m.update()
                .where(m.c.space_id == self.space_id, m.c.profile_id == into_id)
                .values(**values)
            )


def prune_events(engine: Engine, now: float) -> int:
    """Forget every space's events older than 14 days (the server's maintenance)."""
    return _prune(engine, now, None)


PRUNE_BATCH = 5_000


def _prune(engine: Engine, now: float, space_id: str | None) -> int:
    """Delete in batches, a transaction each, so the identity stage's writes never wait long
    behind maintenance (on SQLite a delete holds the one write lock)."""
    e = schema.unify_profile_events
    old = e.c.at_ns < _horizon(now)
    where = old if space_id is None else sa.and_(old, e.c.space_id == space_id)
    key = sa.tuple_(e.c.space_id, e.c.profile_id, e.c.message_id)
    batch = sa.select(e.c.space_id, e.c.profile_id, e.c.message_id).where(where).limit(PRUNE_BATCH)
    total = 0
    while True:
        with write_transaction(engine) as conn:
            gone = int(conn.execute(e.delete().where(key.in_(batch))).rowcount)
        total += gone
        if gone < PRUNE_BATCH:
            return total


@functools.cache
def _traits_query(keys: bool, trait_class: bool, after: bool) -> sa.Select[Any]:
    """The /traits read, built once per shape: the Profile API's hottest query, where building
    a statement would cost more than running it."""
    t = schema.unify_profile_traits
    query = (
        sa.select(t.c.key, t.c.value, t.c.source_id, t.c.updated_at)
        .where(
            t.c.space_id == sa.bindparam("space_id"),
            t.c.profile_id == sa.bindparam("profile_id"),
            t.c.present,
        )
        .order_by(t.c.key)
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )
    if keys:
        query = query.where(t.c.key.in_(sa.bindparam("keys", expanding=True)))
    if trait_class:
        query = query.where(t.c.trait_class == sa.bindparam("trait_class"))
    if after:
        query = query.where(t.c.key >= sa.bindparam("after"))
    return query


def _horizon(now: float) -> int:
    """The oldest event time kept, in nanoseconds."""
    return int((now - EVENT_RETENTION_DAYS * 86_400) * 1_000_000) * 1000


def _ns(dt: datetime) -> int:
    return micros(dt) * 1000


def _metadata(row: Row[Any]) -> Metadata:
    return Metadata(
        row.collection,
        row.created_at,
        row.updated_at,
        row.first_message_id,
        row.first_source_id,
        row.last_message_id,
        row.last_source_id,
    )
