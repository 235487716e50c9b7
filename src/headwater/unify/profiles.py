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
changes. An Engage message's traits (``context.personas``: audiences, computed and SQL traits)
take the classes ``audience`` and ``computed_trait``; its ``email`` is the address it was sent
to, not a trait.

Timeline (§3.2): Track, Page (as ``Page Viewed``) and Screen (as ``Screen Viewed``) calls, never
Identify or Group; unique on ``messageId`` per profile, so recording an event again changes
nothing. Kept 14 days by the event's ``timestamp`` (``prune``).

Consent (protocols §12.4): a user profile keeps the ``context.consent.categoryPreferences`` of
its latest Identify or ``Segment Consent Preference Updated`` event (by the event's time, as
traits), whole: a newer object replaces the older one. It is not a trait (Segment's Profile API
does not return consent among traits); the Profile API shows it with the metadata.

Merges (§21 #4): the merged-away profile's traits go to the survivor key by key, the later
``updated_at`` winning; its events, metadata and consent move too. Only the two profiles' rows
change.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, Row

from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.timestamps import format_timestamp, parse_timestamp
from headwater.unify.graph import MergeProfiles
from headwater.unify.identifiers import Extractor, Identifier
from headwater.unify.resolution import Resolution
from headwater.unify.settings import IdentitySettings

EVENT_RETENTION_DAYS = 14
TIMELINE_EVENTS = {"track", "page", "screen"}
PAGE_VIEWED = "Page Viewed"
SCREEN_VIEWED = "Screen Viewed"
CUSTOM = "custom"
TRAIT_CLASSES = (CUSTOM, "computed_trait", "audience")
CONSENT_EVENT = "Segment Consent Preference Updated"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)

Sort = Literal["asc", "desc"]


class Trait(NamedTuple):
    value: Any
    source_id: str
    updated_at: int  # microseconds since 1970


class Consent(NamedTuple):
    preferences: dict[str, Any]
    updated_at: int  # microseconds since 1970
    message_id: str
    source_id: str


def event_consent(event: dict[str, Any]) -> dict[str, Any] | None:
    """The preferences an event stores on its user's profile: an Identify's or the consent
    event's ``context.consent.categoryPreferences``, when it is an object."""
    kind = event.get("type")
    if kind != "identify" and (kind != "track" or event.get("event") != CONSENT_EVENT):
        return None
    context = event.get("context")
    consent = context.get("consent") if isinstance(context, dict) else None
    preferences = consent.get("categoryPreferences") if isinstance(consent, dict) else None
    return preferences if isinstance(preferences, dict) else None


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


def computed_class(event: dict[str, Any]) -> str | None:
    """The trait class of an Engage message's traits (``context.personas``), or None."""
    context = event.get("context")
    personas = context.get("personas") if isinstance(context, dict) else None
    if not isinstance(personas, dict):
        return None
    return "audience" if personas.get("computation_class") == "audience" else "computed_trait"


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
        self._pg = engine.dialect.name == "postgresql"
        self._buffer: _Buffer | None = None

    # --- writes (the caller's transaction) -----------------------------------------------------

    def record(
        self,
        conn: Connection,
        profile_id: str,
        collection: str,
        event: dict[str, Any],
        source_id: str,
        identifiers: Sequence[Identifier] | None = None,
    ) -> dict[str, Any]:
        """Apply one resolved event to a profile; the traits it changed ({key: new value, or
        None when removed}). Inside ``batch`` the timeline entry and metadata are written when
        the batch ends (or before a merge that reads them). ``identifiers``: the event's, when
        the caller extracted them already with these settings."""
        buffer = self._buffer
        if buffer is None or buffer.conn is not conn:
            with self._one_off(conn) as buffer:
                return self._record(buffer, profile_id, collection, event, source_id, identifiers)
        return self._record(buffer, profile_id, collection, event, source_id, identifiers)

    @contextmanager
    def batch(self, conn: Connection) -> Iterator[None]:
        """Buffer the timeline entries and metadata of the ``record``s made on ``conn`` inside
        the block and write them, one statement per table, when it ends: per event they cost
        more than the rest of its resolution. A block that raises writes nothing (its
        transaction must roll back)."""
        if self._buffer is not None:
            raise RuntimeError("a batch is already open")
        self._buffer = buffer = _Buffer(conn)
        try:
            yield
            self._flush(buffer)
        finally:
            self._buffer = None
            buffer.close()

    def apply(
        self,
        conn: Connection,
        resolution: Resolution,
        event: dict[str, Any],
        source_id: str,
        identifiers: Sequence[Identifier] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """One resolved event, as the identity stage applies it: the event's merges in their
        order, then its user's and its account's profiles. The traits changed, by profile;
        ``identifiers`` as in ``record``."""
        changed: dict[str, dict[str, Any]] = {}
        for change in resolution.changes:
            if isinstance(change, MergeProfiles):
                merged = self.merge(conn, change.from_id, change.into_id)
                changed.setdefault(change.into_id, {}).update(merged)
        for profile, collection in ((resolution.user, "users"), (resolution.account, "accounts")):
            if profile is not None:
                done = self.record(conn, profile, collection, event, source_id, identifiers)
                changed.setdefault(profile, {}).update(done)
        return {profile: traits for profile, traits in changed.items() if traits}

    def merge(self, conn: Connection, from_id: str, into_id: str) -> dict[str, Any]:
        """Move ``from_id``'s data to ``into_id``; the survivor's traits that changed."""
        buffer = self._buffer
        if buffer is None or buffer.conn is not conn:
            with self._one_off(conn) as buffer:
                return self._merge(buffer, from_id, into_id)
        return self._merge(buffer, from_id, into_id)

    def set_computed(
        self,
        conn: Connection,
        values: Sequence[tuple[str, str, str, Any]],
        source_id: str,
        at: float,
    ) -> None:
        """Write values Engage computed: ``(profile, trait class, key, value)`` with class
        ``computed_trait`` or ``audience`` (None removes). Engage writes a value only when it
        changed, and its value is the one that holds now, so nothing is read first: one
        statement for all of them, as of ``at`` (a key given twice for a profile: the last)."""
        if not values:
            return
        when = micros(datetime.fromtimestamp(at, UTC))
        rows: dict[tuple[str, str], tuple[str, str, str | None, str]] = {}
        for profile_id, trait_class, key, value in values:
            if trait_class not in TRAIT_CLASSES:
                raise ValueError(f"unknown trait class {trait_class!r}")
            text = _json_text(value) if value is not None else None
            rows[profile_id, key] = (profile_id, key, text, trait_class)
        buffer = self._buffer
        if buffer is None or buffer.conn is not conn:
            with self._one_off(conn) as buffer:
                self._write_computed(buffer, list(rows.values()), source_id, when)
        else:
            self._write_computed(buffer, list(rows.values()), source_id, when)

    def _write_computed(
        self,
        buffer: _Buffer,
        rows: list[tuple[str, str, str | None, str]],
        source_id: str,
        when: int,
    ) -> None:
        cursor = buffer.cursor()
        if self._pg:  # one statement, the rows as arrays: see _flush
            columns = [list(column) for column in zip(*rows, strict=True)]
            cursor.execute(_UPSERT_COMPUTED_PG, [self.space_id, source_id, when, *columns])
            return
        cursor.executemany(
            _sql(_UPSERT_TRAITS, False),
            [
                (self.space_id, p, k, text, text is not None, c, source_id, when)
                for p, k, text, c in rows
            ],
        )

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

    def consent(self, profile_id: str) -> Consent | None:
        """The profile's latest consent preferences, if an event gave any."""
        c = schema.unify_profile_consent
        with self._engine.connect() as conn:
            row = conn.execute(
                sa.select(c).where(c.c.space_id == self.space_id, c.c.profile_id == profile_id)
            ).first()
        if row is None:
            return None
        preferences = row.preferences if isinstance(row.preferences, dict) else {}
        return Consent(preferences, row.updated_at, row.message_id, row.source_id)

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

    @contextmanager
    def _one_off(self, conn: Connection) -> Iterator[_Buffer]:
        """A buffer for one write outside ``batch``, written at its end."""
        buffer = _Buffer(conn)
        try:
            yield buffer
            self._flush(buffer)
        finally:
            buffer.close()

    def _record(
        self,
        buffer: _Buffer,
        profile_id: str,
        collection: str,
        event: dict[str, Any],
        source_id: str,
        identifiers: Sequence[Identifier] | None,
    ) -> dict[str, Any]:
        when = event_instant(event, self._clock)
        message_id = str(event.get("messageId") or "")
        traits = event_traits(collection, event)
        computed = computed_class(event)
        if computed is not None:
            traits.pop("email", None)  # the key Engage sent it to, not a trait it computed
        changed = (
            self._write_traits(buffer, profile_id, traits, source_id, micros(when), computed)
            if traits
            else {}
        )
        self._note(buffer, profile_id, collection, event, source_id, when, message_id, identifiers)
        if collection == "users":
            preferences = event_consent(event)
            if preferences is not None:  # rare: one statement, no buffering
                buffer.cursor().execute(
                    _sql(_UPSERT_CONSENT, self._pg),
                    (
                        self.space_id,
                        profile_id,
                        _json_text(preferences),
                        micros(when),
                        message_id,
                        source_id,
                    ),
                )
        return changed

    def _merge(self, buffer: _Buffer, from_id: str, into_id: str) -> dict[str, Any]:
        self._flush(buffer, (from_id, into_id))  # what the merge moves is in the tables
        cursor = buffer.cursor()
        pg = self._pg
        cursor.execute(_sql(_MERGED_TRAITS, pg), (self.space_id, from_id, into_id))
        rows = {(r[0], r[1]): _StoredTrait(*r[1:]) for r in cursor.fetchall()}
        changed: dict[str, Any] = {}
        moved: list[tuple[Any, ...]] = []
        for (profile, key), row in rows.items():
            if profile != from_id:
                continue
            kept = rows.get((into_id, key))
            if kept is not None and kept.updated_at >= row.updated_at:
                continue
            moved.append(
                (
                    self.space_id,
                    into_id,
                    key,
                    row.value,  # JSON text, moved as it is
                    bool(row.present),
                    row.trait_class,
                    row.source_id,
                    row.updated_at,
                )
            )
            before = kept is not None and kept.present
            value = _decode(row.value)
            if row.present and not (
                before and kept is not None and _same(_decode(kept.value), value)
            ):
                changed[key] = value
            elif not row.present and before:
                changed[key] = None
        if moved:
            cursor.executemany(_sql(_UPSERT_TRAITS, pg), moved)
        cursor.execute(_sql(_DELETE_TRAITS, pg), (self.space_id, from_id))
        cursor.execute(
            _sql(_MOVE_EVENTS, pg), (into_id, self.space_id, from_id, self.space_id, into_id)
        )
        cursor.execute(_sql(_DELETE_EVENTS, pg), (self.space_id, from_id))
        cursor.execute(_sql(_MERGE_METADATA, pg), (into_id, self.space_id, from_id))
        cursor.execute(_sql(_DELETE_METADATA, pg), (self.space_id, from_id))
        cursor.execute(_sql(_MERGE_CONSENT, pg), (into_id, self.space_id, from_id))
        cursor.execute(_sql(_DELETE_CONSENT, pg), (self.space_id, from_id))
        return changed

    def _write_traits(
        self,
        buffer: _Buffer,
        profile_id: str,
        traits: dict[str, Any],
        source_id: str,
        at: int,
        trait_class: str | None = None,
    ) -> dict[str, Any]:
        cursor = buffer.cursor()
        pg = self._pg
        keys = list(traits)
        if pg:
            cursor.execute(_sql(_EVENT_TRAITS_PG, pg), (self.space_id, profile_id, keys))
        else:
            cursor.execute(_event_traits_sqlite(len(keys)), (self.space_id, profile_id, *keys))
        stored = {r[0]: r for r in cursor.fetchall()}  # key, value, present, class, updated_at
        changed: dict[str, Any] = {}
        writes: list[tuple[Any, ...]] = []
        for key, value in traits.items():
            row = stored.get(key)
            if row is not None and row[4] > at:
                continue  # a newer write holds the trait (§21 #4)
            present = value is not None
            if (
                row is not None
                and bool(row[2]) == present
                and (not present or _same(_decode(row[1]), value))
            ):
                continue  # nothing to change
            if present:
                changed[key] = value
            elif row is not None:
                changed[key] = None
            # (no row and a removal: nothing changes, but the removal is kept against older
            # events arriving later)
            kind = trait_class or (row[3] if row is not None else CUSTOM)
            text = _json_text(value) if present else None
            writes.append((self.space_id, profile_id, key, text, present, kind, source_id, at))
        if writes:
            cursor.executemany(_sql(_UPSERT_TRAITS, pg), writes)
        return changed

    def _note(
        self,
        buffer: _Buffer,
        profile_id: str,
        collection: str,
        event: dict[str, Any],
        source_id: str,
        when: datetime,
        message_id: str,
        identifiers: Sequence[Identifier] | None,
    ) -> None:
        """Buffer the event's timeline entry and fold it into the profile's buffered metadata."""
        at = micros(when)
        kind = event.get("type")
        if kind in TIMELINE_EVENTS and message_id:
            name, body = self._timeline_body(
                event, str(kind), source_id, when, message_id, identifiers
            )
            buffer.events.setdefault(profile_id, []).append(
                (self.space_id, profile_id, at * 1000, message_id, name, _json_text(body))
            )
        meta = buffer.metadata.get(profile_id)
        if meta is None:
            buffer.metadata[profile_id] = [
                collection,
                at,
                at,
                message_id,
                source_id,
                message_id,
                source_id,
            ]
            return
        # As one event at a time would: the earliest time (the first to reach it) and the
        # latest (the first to reach it), each with its message and source.
        if at < meta[1]:
            meta[1], meta[3], meta[4] = at, message_id, source_id
        if at > meta[2]:
            meta[2], meta[5], meta[6] = at, message_id, source_id

    def _timeline_body(
        self,
        event: dict[str, Any],
        kind: str,
        source_id: str,
        when: datetime,
        message_id: str,
        identifiers: Sequence[Identifier] | None,
    ) -> tuple[str, dict[str, Any]]:
        properties = dict(_object(event.get("properties")))
        if kind == "track":
            name = str(event.get("event") or "")
        else:
            name = PAGE_VIEWED if kind == "page" else SCREEN_VIEWED
            if isinstance(event.get("name"), str):
                properties.setdefault("name", event["name"])
        external_ids = [
            {"collection": i.collection, "type": i.type, "id": i.value, "encoding": "none"}
            for i in (
                self._extractor.extract(event).identifiers if identifiers is None else identifiers
            )
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
        return name, body

    def _flush(self, buffer: _Buffer, profiles: Collection[str] | None = None) -> None:
        """Write the buffered rows (only ``profiles``' when given) on the driver's cursor."""
        if profiles is None:
            events = [row for rows in buffer.events.values() for row in rows]
            metadata = [(self.space_id, p, *m) for p, m in buffer.metadata.items()]
            buffer.events.clear()
            buffer.metadata.clear()
        else:
            events = [row for p in profiles for row in buffer.events.pop(p, ())]
            metadata = [
                (self.space_id, p, *m)
                for p in profiles
                if (m := buffer.metadata.pop(p, None)) is not None
            ]
        cursor = buffer.cursor()
        # On PostgreSQL one statement a table, the rows as arrays (not one Bind/Execute a
        # row), sent in binary (``%b``): in text psycopg escapes a text array's elements
        # with a regular expression, ~12 µs a timeline body.
        if self._pg:
            if events:
                cursor.execute(_INSERT_EVENTS_PG, [self.space_id, *_columns(events)])
            if metadata:
                cursor.execute(_UPSERT_METADATA_PG, [self.space_id, *_columns(metadata)])
            return
        if events:
            cursor.executemany(_sql(_INSERT_EVENTS, False), events)
        if metadata:
            cursor.executemany(_UPSERT_METADATA, metadata)


class _Buffer:
    """A batch's timeline entries (by profile, in order) and metadata (by profile: collection,
    created_at, updated_at, first message and source, last message and source)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.events: dict[str, list[tuple[Any, ...]]] = {}
        self.metadata: dict[str, list[Any]] = {}
        self._cursor: Any = None

    def cursor(self) -> Any:
        if self._cursor is None:
            self._cursor = self.conn.connection.cursor()
        return self._cursor

    def close(self) -> None:
        self.events.clear()
        self.metadata.clear()
        if self._cursor is not None:
            self._cursor.close()
            self._cursor = None


# The driver's SQL (written with ``?``; ``?J`` a JSON parameter). Times of a profile's metadata
# as ``_note`` folds them: an existing row keeps its values on ties (it came first).
_INSERT_EVENTS = (
    "INSERT INTO unify_profile_events (space_id, profile_id, at_ns, message_id, event, body) "
    "VALUES (?, ?, ?, ?, ?, ?J) ON CONFLICT (space_id, profile_id, message_id) DO NOTHING"
)
_UPSERT_METADATA = """INSERT INTO unify_profile_metadata AS m (space_id, profile_id, collection,
    created_at, updated_at, first_message_id, first_source_id, last_message_id, last_source_id)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (space_id, profile_id) DO UPDATE SET
    created_at = CASE WHEN excluded.created_at < m.created_at
        THEN excluded.created_at ELSE m.created_at END,
    first_message_id = CASE WHEN excluded.created_at < m.created_at
        THEN excluded.first_message_id ELSE m.first_message_id END,
    first_source_id = CASE WHEN excluded.created_at < m.created_at
        THEN excluded.first_source_id ELSE m.first_source_id END,
    updated_at = CASE WHEN excluded.updated_at > m.updated_at
        THEN excluded.updated_at ELSE m.updated_at END,
    last_message_id = CASE WHEN excluded.updated_at > m.updated_at
        THEN excluded.last_message_id ELSE m.last_message_id END,
    last_source_id = CASE WHEN excluded.updated_at > m.updated_at
        THEN excluded.last_source_id ELSE m.last_source_id END
WHERE excluded.created_at < m.created_at OR excluded.updated_at > m.updated_at"""


_INSERT_EVENTS_PG = """INSERT INTO unify_profile_events
    (space_id, profile_id, at_ns, message_id, event, body)
SELECT %s, u.profile_id, u.at_ns, u.message_id, u.event, u.body::json
FROM unnest(%b::text[], %b::bigint[], %b::text[], %b::text[], %b::text[])
    AS u(profile_id, at_ns, message_id, event, body)
ON CONFLICT (space_id, profile_id, message_id) DO NOTHING"""
_UPSERT_METADATA_PG = """INSERT INTO unify_profile_metadata AS m (space_id, profile_id, collection,
    created_at, updated_at, first_message_id, first_source_id, last_message_id, last_source_id)
SELECT %s, u.* FROM unnest(%b::text[], %b::text[], %b::bigint[], %b::bigint[], %b::text[],
    %b::text[], %b::text[], %b::text[]) AS u
""" + _UPSERT_METADATA[_UPSERT_METADATA.index("ON CONFLICT") :]
_UPSERT_TRAITS = """INSERT INTO unify_profile_traits
    (space_id, profile_id, key, value, present, trait_class, source_id, updated_at)
VALUES (?, ?, ?, ?J, ?, ?, ?, ?)
ON CONFLICT (space_id, profile_id, key) DO UPDATE SET value = excluded.value,
    present = excluded.present, trait_class = excluded.trait_class,
    source_id = excluded.source_id, updated_at = excluded.updated_at"""
_UPSERT_COMPUTED_PG = """INSERT INTO unify_profile_traits
    (space_id, profile_id, key, value, present, trait_class, source_id, updated_at)
SELECT %s, u.profile_id, u.key, u.value::json, u.value IS NOT NULL, u.trait_class, %s, %s
FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[])
    AS u(profile_id, key, value, trait_class)
""" + _UPSERT_TRAITS[_UPSERT_TRAITS.index("ON CONFLICT") :]
_EVENT_TRAITS_PG = (
    "SELECT key, value::text, present, trait_class, updated_at FROM unify_profile_traits "
    "WHERE space_id = ? AND profile_id = ? AND key = ANY(?)"
)
_MERGED_TRAITS = (
    "SELECT profile_id, key, value?T, present, trait_class, source_id, updated_at "
    "FROM unify_profile_traits WHERE space_id = ? AND profile_id IN (?, ?)"
)
_DELETE_TRAITS = "DELETE FROM unify_profile_traits WHERE space_id = ? AND profile_id = ?"
# The merged-away profile's events the survivor does not hold move; the rest go.
_MOVE_EVENTS = """UPDATE unify_profile_events SET profile_id = ?
WHERE space_id = ? AND profile_id = ? AND NOT EXISTS (
    SELECT 1 FROM unify_profile_events AS there WHERE there.space_id = ?
    AND there.profile_id = ? AND there.message_id = unify_profile_events.message_id)"""
_DELETE_EVENTS = "DELETE FROM unify_profile_events WHERE space_id = ? AND profile_id = ?"
# The merged-away profile's metadata folded into the survivor's as one more write would be.
_MERGE_METADATA = """INSERT INTO unify_profile_metadata AS m (space_id, profile_id, collection,
    created_at, updated_at, first_message_id, first_source_id, last_message_id, last_source_id)
SELECT space_id, ?, collection, created_at, updated_at, first_message_id, first_source_id,
    last_message_id, last_source_id
FROM unify_profile_metadata WHERE space_id = ? AND profile_id = ?
""" + _UPSERT_METADATA[_UPSERT_METADATA.index("ON CONFLICT") :]
_DELETE_METADATA = "DELETE FROM unify_profile_metadata WHERE space_id = ? AND profile_id = ?"
# A profile's consent: the later event wins (the later arrival on a tie, as traits).
_UPSERT_CONSENT = """INSERT INTO unify_profile_consent AS c
    (space_id, profile_id, preferences, updated_at, message_id, source_id)
VALUES (?, ?, ?J, ?, ?, ?)
ON CONFLICT (space_id, profile_id) DO UPDATE SET preferences = excluded.preferences,
    updated_at = excluded.updated_at, message_id = excluded.message_id,
    source_id = excluded.source_id
WHERE excluded.updated_at >= c.updated_at"""
_MERGE_CONSENT = """INSERT INTO unify_profile_consent AS c
    (space_id, profile_id, preferences, updated_at, message_id, source_id)
SELECT space_id, ?, preferences, updated_at, message_id, source_id
FROM unify_profile_consent WHERE space_id = ? AND profile_id = ?
ON CONFLICT (space_id, profile_id) DO UPDATE SET preferences = excluded.preferences,
    updated_at = excluded.updated_at, message_id = excluded.message_id,
    source_id = excluded.source_id
WHERE excluded.updated_at > c.updated_at"""
_DELETE_CONSENT = "DELETE FROM unify_profile_consent WHERE space_id = ? AND profile_id = ?"


class _StoredTrait(NamedTuple):
    key: str
    value: str | float | None  # JSON text (see _decode)
    present: bool
    trait_class: str
    source_id: str
    updated_at: int


@functools.cache
def _event_traits_sqlite(keys: int) -> str:
    return (
        "SELECT key, value, present, trait_class, updated_at FROM unify_profile_traits "
        f"WHERE space_id = ? AND profile_id = ? AND key IN ({', '.join('?' * keys)})"
    )


def _columns(rows: list[tuple[Any, ...]]) -> list[list[Any]]:
    """The rows' columns after the first (the space), as PostgreSQL arrays take them."""
    return [list(column) for column in zip(*rows, strict=True)][1:]


def _decode(stored: str | float | None) -> Any:
    """A JSON value as read on the driver's cursor: its text, or on SQLite a number (a JSON
    column has numeric affinity there, so ``3`` is stored as the integer 3)."""
    return msgspec.json.decode(stored) if isinstance(stored, str) else stored


@functools.cache
def _sql(sql: str, pg: bool) -> str:
    """``sql`` in the driver's parameter style."""
    if not pg:
        return sql.replace("?J", "?").replace("?T", "")
    return sql.replace("?J", "%s::json").replace("?T", "::text").replace("?", "%s")


def _json_text(value: Any) -> str:
    """JSON as the engine's serializer writes it (store/database.py), so reads match."""
    return msgspec.json.encode(value).decode()


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
