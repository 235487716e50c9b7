"""Profiles Sync's feed: what each resolved event did to a space's profiles, kept in the state
database until the space's warehouse has loaded it (spec/unify-engage.md §11).

The identity resolution stage calls ``ProfilesSyncFeed.record`` for every event it resolves in a
space with Profiles Sync on (or ``record_many`` for a run of them: a few statements per run
instead of two per event), inside its own transaction, so an event's graph changes and its
outbox row commit together or not at all. The row holds the event and its changes in the order
they applied, already expanded into what the raw tables need:

- a creation (``segment_id = canonical_segment_id``) and, for a merge, one row for every
  profile id that pointed at the merged profile — itself and the profiles merged into it before
  (Segment's recursive ``id_graph_updates`` rows). The feed keeps its own pointers
  (``unify_sync_profiles``: segment id → canonical id), so it does not depend on which graph
  store resolved the event;
- the identifiers the event added (``external_id_mapping_updates``);
- the traits the event changed, per profile (``profile_traits_updates``), each with the
  canonical profile it belongs to now;
- the user ↔ account links the event made (identity resolution's ``LinkProfiles``: a Group
  call's user joins the account for the first time), as ``link`` changes naming the account
  by its ``group_id``, and the account traits it changed (``accounts``), for the
  ``user_accounts`` and ``account_traits`` tables. An account is its ``group_id``, as Engage's
  batch engine reads it: the feed keeps no pointers for account profiles.

``record`` is idempotent on the event's ``messageId`` while its row is in the outbox, and the
warehouse rows it leads to have ids made from the ``messageId``, so a repeat adds no row there
either. Once pruned, a repeat is kept out by the graph store (its ``messageId`` was applied:
the resolution is a duplicate, which is not recorded). Events that did not resolve to a user
profile (dropped, duplicates, no identifiers) are not recorded: Profiles Sync's tables are
about profiles. Account profiles have no rows of their own (no ``id_graph_updates``, no
``user_traits``): their links and traits are kept by ``group_id``.

The warehouse side (``headwater.warehouse.profiles_sync``) reads the outbox in ``seq`` order,
keeps a position per (space, warehouse) and prunes what every warehouse needing it has loaded.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, NamedTuple

import msgspec
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from headwater.store import schema
from headwater.timestamps import parse_timestamp
from headwater.unify.graph import AddIdentifier, CreateProfile, LinkProfiles, MergeProfiles
from headwater.unify.identifiers import Identifier, text
from headwater.unify.resolution import Resolution, event_time

USERS = "users"
ACCOUNTS = "accounts"
GROUP_ID = "group_id"

# One change as the outbox keeps it (JSON lists):
#   ["create", segment_id, at]
#   ["add", segment_id, type, value, at]
#   ["merge", from_id, into_id, at, [segment ids now pointing at into_id, from_id first]]
#   ["link", segment_id, group_id, at]
Op = list[Any]


# Built once: a statement given its values as parameters compiles once (``.values(body)``
# would make SQLAlchemy walk the whole event for its cache key, on every event).
_POINTER_INSERT: Final = {
    True: sqlite.insert(schema.unify_sync_profiles).on_conflict_do_nothing(),
    False: postgresql.insert(schema.unify_sync_profiles).on_conflict_do_nothing(),
}

Traits = Sequence[tuple[str, Mapping[str, Any]]]


class Resolved(NamedTuple):
    """One event the identity stage resolved, as ``record_many`` takes it."""

    source_id: str
    event: Mapping[str, Any]
    resolution: Resolution
    traits: Traits  # (segment id, {trait: new value or None}) per profile it changed
    identifiers: tuple[Identifier, ...] = ()  # the event's, blocked values left out


class OutboxEntry(NamedTuple):
    """One recorded event, as the warehouse side reads it."""

    seq: int
    space_id: str
    message_id: str
    source_id: str
    segment_id: str  # the event tables' segment_id: the profile at event time
    event: dict[str, Any]
    timestamp: float  # the event's time (its timestamp, else receivedAt), seconds
    received_at: float | None
    ops: list[Op]
    traits: list[tuple[str, dict[str, Any]]]  # (canonical segment id, {trait: value or None})
    accounts: list[tuple[str, dict[str, Any]]]  # (group_id, {trait: value or None})


class ProfilesSyncFeed:
    """Writes the outbox rows of one state database; stateless between calls."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def record(
        self,
        conn: Connection,
        space_id: str,
        source_id: str,
        event: Mapping[str, Any],
        resolution: Resolution,
        traits: Traits,
    ) -> None:
        """Keep what ``event`` did for the space's warehouse, in ``conn``'s transaction."""
        self.record_many(conn, space_id, [Resolved(source_id, event, resolution, traits)])

    def record_many(self, conn: Connection, space_id: str, events: Sequence[Resolved]) -> None:
        """``record`` for a run of events in the order they resolved: a few statements for
        the run, plus a couple per merge (PostgreSQL answers each statement over the
        network)."""
        kept = [e for e in events if e.resolution.status == "resolved" and e.resolution.user]
        if not kept:
            return
        ids = [_message_id(e) for e in kept]
        box = schema.unify_sync_outbox
        seen = set(
            conn.execute(
                sa.select(box.c.message_id).where(
                    box.c.space_id == space_id, box.c.message_id.in_(set(ids))
                )
            ).scalars()
        )
        rows: list[tuple[str, str, str]] = []  # message_id, source_id, body (JSON text)
        created: list[dict[str, str]] = []
        now = int(self._clock())
        for message_id, item in zip(ids, kept, strict=True):
            if message_id in seen:
                continue  # recorded already (a retried transaction, a replay): nothing moves
            seen.add(message_id)
            body, made = self._body(conn, space_id, item)
            created += [
                {"space_id": space_id, "segment_id": p, "canonical_segment_id": p} for p in made
            ]
            rows.append((message_id, item.source_id, msgspec.json.encode(body).decode()))
        if rows:
            _insert_outbox(conn, space_id, now, rows)
        if created:  # after the merges' pointers: a profile made and merged here keeps those
            conn.execute(_POINTER_INSERT[conn.dialect.name == "sqlite"], created)

    def _body(
        self, conn: Connection, space_id: str, item: Resolved
    ) -> tuple[dict[str, Any], list[str]]:
        """An event's outbox body and the profiles it made; its merges re-point at once (a
        later event of the run reads them)."""
        resolution = item.resolution
        assert resolution.user is not None
        stored = dict(item.event)
        at = event_time(stored)
        received = parse_timestamp(stored.get("receivedAt"))
        ops: list[Op] = []
        made: list[str] = []
        here: dict[str, str] = {}  # ids this event re-points, to where
        groups = _group_ids(item)
        accounts = {resolution.account} if resolution.account else set()
        for change in resolution.changes:
            if isinstance(change, CreateProfile) and change.collection == USERS:
                made.append(change.profile_id)
                ops.append(["create", change.profile_id, change.at])
            elif isinstance(change, AddIdentifier) and change.collection == USERS:
                ops.append(["add", change.profile_id, change.type, change.value, change.at])
            elif isinstance(change, MergeProfiles) and change.collection == USERS:
                moved = _repoint(conn, space_id, change.from_id, change.into_id)
                here.update((segment, change.into_id) for segment in moved)
                ops.append(["merge", change.from_id, change.into_id, change.at, moved])
            elif isinstance(change, MergeProfiles):
                accounts.update((change.from_id, change.into_id))
            elif isinstance(change, LinkProfiles):
                ops += [["link", change.user_id, group, change.at] for group in groups]
        merged = [op[1] for op in ops if op[0] == "merge"]
        # The stage names the resolved (canonical) profile; any other goes through pointers.
        users = [(s, t) for s, t in item.traits if s not in accounts]
        others = [s for s, _ in users if s != resolution.user and s not in here]
        known = _canonical_of(conn, space_id, others)
        body = {
            # The case study (§11.4) keeps an event that merged profiles on the profile it
            # merged away (E4 → profile_2); joining id_graph gives the canonical one.
            "segment_id": merged[0] if merged else resolution.user,
            "event": stored,
            "timestamp": at if at is not None else self._clock(),
            "received_at": received.timestamp() if received is not None else None,
            "ops": ops,
            "traits": [[_follow(s, here, known), dict(changed)] for s, changed in users],
            "accounts": [
                [group, dict(changed)]
                for segment, changed in item.traits
                if segment in accounts
                for group in groups
            ],
        }
        return body, made


def _message_id(item: Resolved) -> str:
    """The event's messageId; without one (the Tracking API always sets one) a fresh id, as
    nothing can be deduplicated."""
    return (
        item.resolution.message_id
        or str(item.event.get("messageId") or "")
        or f"no-message-id:{uuid.uuid4()}"
    )


def _group_ids(item: Resolved) -> list[str]:
    """The accounts the event names: its ``group_id`` identifiers, blocked values left out;
    given none (``record`` is not), the Group call's ``groupId``."""
    if item.identifiers:
        return list(
            dict.fromkeys(
                i.value for i in item.identifiers if i.collection == ACCOUNTS and i.type == GROUP_ID
            )
        )
    group = text(item.event.get("groupId")) if item.event.get("type") == "group" else None
    return [group] if group else []


def _follow(segment: str, here: Mapping[str, str], known: Mapping[str, str]) -> str:
    """Where a profile id points once this event's merges are made."""
    found = known.get(segment, segment)
    return here.get(found, here.get(segment, found))


# --- the feed's pointers -----------------------------------------------------------------------


def _repoint(conn: Connection, space_id: str, from_id: str, into_id: str) -> list[str]:
    """Point the profile ids that resolve to ``from_id`` (itself first: a profile made before
    Profiles Sync was on has no pointer yet, it is its own) at ``into_id``; those ids. On the
    driver's cursor: a merge costs four index probes, not the building of SQLAlchemy
    constructs."""
    pg = conn.dialect.name == "postgresql"
    cursor = conn.connection.cursor()
    params = (space_id, from_id, from_id)
    try:
        if pg:
            cursor.execute(_driver(_POINTING_AT + " ORDER BY segment_id", pg), params)
            others = [row[0] for row in cursor.fetchall()]
        else:
            # Sorted here: with ORDER BY, SQLite (no statistics) walks the whole space's
            # pointers in key order rather than probe the canonical index. Its BINARY order
            # is Python's.
            cursor.execute(_POINTING_AT, params)
            others = sorted(row[0] for row in cursor.fetchall())
        # Two updates, not one with OR: each is a probe of one index.
        cursor.execute(_driver(_REPOINT_OTHERS, pg), (into_id, space_id, from_id))
        cursor.execute(_driver(_REPOINT_ITSELF, pg), (into_id, space_id, from_id))
        cursor.execute(_driver(_POINT_NEW, pg), (space_id, from_id, into_id))
    finally:
        cursor.close()
    return [from_id, *others]


_POINTING_AT: Final = (
    "SELECT segment_id FROM unify_sync_profiles WHERE space_id = ? "
    "AND canonical_segment_id = ? AND segment_id != ?"
)
_REPOINT_OTHERS: Final = (
    "UPDATE unify_sync_profiles SET canonical_segment_id = ? "
    "WHERE space_id = ? AND canonical_segment_id = ?"
)
_REPOINT_ITSELF: Final = (
    "UPDATE unify_sync_profiles SET canonical_segment_id = ? WHERE space_id = ? AND segment_id = ?"
)
_POINT_NEW: Final = (
    "INSERT INTO unify_sync_profiles (space_id, segment_id, canonical_segment_id) "
    "VALUES (?, ?, ?) ON CONFLICT (space_id, segment_id) DO NOTHING"
)


def _insert_outbox(
    conn: Connection, space_id: str, now: int, rows: Sequence[tuple[str, str, str]]
) -> None:
    """The run's outbox rows in order, on the driver's cursor: on PostgreSQL one statement,
    the rows as arrays sent in binary (``%b``: in text psycopg escapes each element with a
    regular expression); on SQLite one ``executemany``. Bodies as the engine's serializer
    writes them."""
    cursor = conn.connection.cursor()
    try:
        if conn.dialect.name == "postgresql":
            columns = [list(column) for column in zip(*rows, strict=True)]
            cursor.execute(_OUTBOX_PG, (space_id, now, *columns))
        else:
            cursor.executemany(_OUTBOX, [(space_id, m, s, now, b) for m, s, b in rows])
    finally:
        cursor.close()


_OUTBOX: Final = (
    "INSERT INTO unify_sync_outbox (space_id, message_id, source_id, recorded_at, body) "
    "VALUES (?, ?, ?, ?, ?)"
)
_OUTBOX_PG: Final = """INSERT INTO unify_sync_outbox
    (space_id, recorded_at, message_id, source_id, body)
SELECT %s, %s, u.message_id, u.source_id, u.body::json
FROM unnest(%b::text[], %b::text[], %b::text[]) WITH ORDINALITY AS u(message_id, source_id, body, n)
ORDER BY u.n"""


def _driver(sql: str, pg: bool) -> str:
    """``sql`` (written with ``?``) in the driver's parameter style."""
    return sql.replace("?", "%s") if pg else sql


def _canonical_of(conn: Connection, space_id: str, segment_ids: Sequence[str]) -> dict[str, str]:
    if not segment_ids:
        return {}
    p = schema.unify_sync_profiles
    return {
        row.segment_id: row.canonical_segment_id
        for row in conn.execute(
            sa.select(p.c.segment_id, p.c.canonical_segment_id).where(
                p.c.space_id == space_id, p.c.segment_id.in_(set(segment_ids))
            )
        )
    }


def canonical_ids(conn: Connection, space_id: str) -> dict[str, str]:
    """Every profile id the feed knows in a space, with where it points (for tests and
    diagnosis; a space's ids can be many)."""
    p = schema.unify_sync_profiles
    return {
        row.segment_id: row.canonical_segment_id
        for row in conn.execute(
            sa.select(p.c.segment_id, p.c.canonical_segment_id).where(p.c.space_id == space_id)
        )
    }


# --- the outbox, as the warehouse side reads it ------------------------------------------------


def pending(conn: Connection, space_id: str, after: int, limit: int) -> list[OutboxEntry]:
    """The space's outbox rows after ``after``, oldest first, at most ``limit``."""
    box = schema.unify_sync_outbox
    rows = conn.execute(
        sa.select(box)
        .where(box.c.space_id == space_id, box.c.seq > after)
        .order_by(box.c.seq)
        .limit(limit)
    )
    found = []
    for row in rows:
        body = row.body
        found.append(
            OutboxEntry(
                seq=int(row.seq),
                space_id=row.space_id,
                message_id=row.message_id,
                source_id=row.source_id,
                segment_id=str(body["segment_id"]),
                event=dict(body["event"]),
                timestamp=float(body["timestamp"]),
                received_at=None if body["received_at"] is None else float(body["received_at"]),
                ops=list(body["ops"]),
                traits=[(str(s), dict(t)) for s, t in body["traits"]],
                accounts=[(str(g), dict(t)) for g, t in body.get("accounts", ())],
            )
        )
    return found


def position(conn: Connection, space_id: str, warehouse_id: str) -> int:
    """The last outbox ``seq`` the warehouse loaded for the space (0: none)."""
    p = schema.unify_sync_positions
    found = conn.execute(
        sa.select(p.c.seq).where(p.c.space_id == space_id, p.c.warehouse_id == warehouse_id)
    ).scalar()
    return int(found or 0)


def advance(conn: Connection, space_id: str, warehouse_id: str, seq: int, now: float) -> None:
    """The warehouse has loaded the space's outbox through ``seq``; prune what no warehouse
    needing the space's rows still lacks."""
    p = schema.unify_sync_positions
    updated = conn.execute(
        sa.update(p)
        .where(p.c.space_id == space_id, p.c.warehouse_id == warehouse_id)
        .values(seq=seq, updated_at=int(now))
    ).rowcount
    if not updated:
        conn.execute(
            p.insert().values(
                space_id=space_id, warehouse_id=warehouse_id, seq=seq, updated_at=int(now)
            )
        )
    prune(conn, space_id)


def prune(conn: Connection, space_id: str) -> int:
    """Delete the space's outbox rows that every warehouse syncing the space has loaded;
    the number deleted. With no such warehouse nothing goes (turning Profiles Sync off and
    on again continues where it was)."""
    ps, p, box = schema.space_profiles_sync, schema.unify_sync_positions, schema.unify_sync_outbox
    needing = list(
        conn.execute(sa.select(ps.c.warehouse_id).where(ps.c.space_id == space_id)).scalars()
    )
    if not needing:
        return 0
    loaded = dict(
        conn.execute(
            sa.select(p.c.warehouse_id, p.c.seq).where(
                p.c.space_id == space_id, p.c.warehouse_id.in_(needing)
            )
        ).all()
    )
    through = min(int(loaded.get(w, 0)) for w in needing)
    if through <= 0:
        return 0
    return int(
        conn.execute(
            sa.delete(box).where(box.c.space_id == space_id, box.c.seq <= through)
        ).rowcount
    )
