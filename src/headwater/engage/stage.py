"""Real-time Engage as an observer of identity resolution: in the same pass and transaction,
each resolved event updates its profile's state, the computations reading what changed are
evaluated again, and every value that changed is written to the profile (trait classes
``computed_trait`` and ``audience``) and queued, as messages to the connected destinations, in
Engage's outbox.

Running inside the identity stage's pass gives Engage its one writer per space, the profile
the event resolved to, and merges as they happen; its state commits or rolls back with the
resolution. Per pass it reads the state of the profiles the events touch in one statement and
writes those that changed in one more.

Besides events: a merge folds the merged-away profile's state into the survivor's and
evaluates everything (it may enter audiences: §14.2 item 5); a new identifier on a profile
re-sends its current values keyed by that identifier (A-UE-41); and ``expire`` (the stage's idle
work and every pass) re-evaluates the profiles whose windows time has moved.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.engine import Engine

from headwater.engage import activation, batch_runs, outbox, states
from headwater.engage.activation import Connection, Identity
from headwater.engage.due import due_profiles
from headwater.engage.realtime import (
    Change,
    Computation,
    Plan,
    ProfileState,
    decode_state,
    encode_state,
)
from headwater.store import schema
from headwater.unify.graph import AddIdentifier, MergeProfiles, StoredIdentifier
from headwater.unify.profiles import ProfileData
from headwater.unify.profiles_sync import Resolved
from headwater.unify.spaces import SpaceInfo
from headwater.unify.sql_graph import SqlGraph

# §13.3: without "Include Anonymous Users" a member needs one of these.
ELIGIBLE = frozenset({"user_id", "email", "android.idfa", "ios.idfa"})
EXPIRE_BATCH = 1_000  # profiles re-evaluated per call of ``expire``
STAGED_BATCH = 2_000  # batch results applied per call of ``expire``
TRAIT_CLASS = {"audience": "audience", "trait": "computed_trait"}

Computations = Callable[[str], Sequence[Computation]]  # a space's, by space id
Connections = Callable[[str], Sequence[Connection]]  # a computation's, by computation id


class Follower(Protocol):
    """Engage work that follows the computations' results in the same pass and transaction
    (journeys): told of every resolved event and every change of a profile's values, and
    asked for its own time-driven work. It writes its state and its messages (``outbox.add``)
    on ``conn``."""

    def follow(
        self,
        conn: DbConnection,
        space: SpaceInfo,
        graph: SqlGraph,
        profile_id: str,
        state: ProfileState,
        changes: Sequence[Change],
        event: Mapping[str, Any] | None,
        now: float,
    ) -> None:
        """One profile after one event (``event``) or after time moved its values (None);
        ``state`` is its state after the changes (``state.c``: current values by id)."""
        ...

    def due(
        self,
        conn: DbConnection,
        space: SpaceInfo,
        graph: SqlGraph,
        now: float,
        state_of: Callable[[str], ProfileState],
    ) -> int:
        """Work whose time has come (delays, holds, exits); how much was done."""
        ...

    def merged(
        self, conn: DbConnection, space: SpaceInfo, from_id: str, into_id: str, now: float
    ) -> None:
        """``from_id`` was merged into ``into_id``: what followed the one now follows the
        other (told before the survivor's ``follow`` for the same event)."""
        ...


@dataclass
class _Touched:
    """A profile the pass changed: its state and what to write."""

    state: ProfileState
    dirty: bool = False


@dataclass
class _Resync:
    """Values to send again, keyed by a profile's new identifiers (A-UE-41), once the pass
    has read the identifiers of every profile it has messages for."""

    user: str
    values: list[tuple[Computation, Any, Sequence[Connection]]]
    new_user: str | None
    emails: list[str]
    anonymous: list[str]
    cause: str


@dataclass
class _Pass:
    """One observe or expire call's work on one space."""

    conn: DbConnection
    space: SpaceInfo
    graph: SqlGraph
    plan: Plan
    now: float
    data: ProfileData
    profiles: dict[str, _Touched] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    messages: list[dict[str, Any]] = field(default_factory=list)
    values: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # profile→class→
    identifiers: dict[str, list[StoredIdentifier]] = field(default_factory=dict)
    # (profile, computation, value, connections, cause): messages to make at the pass's end
    emissions: list[tuple[str, Computation, Any, Sequence[Connection], str]] = field(
        default_factory=list
    )
    resyncs: list[_Resync] = field(default_factory=list)  # A-UE-41's, made before emissions
    engage_source: str | None = None  # the space's Engage source (``_engage_sources``)


class EngageStage:
    """The identity stage's observer for real-time audiences and computed traits."""

    def __init__(
        self,
        engine: Engine,
        computations: Computations,
        connections: Connections,
        *,
        clock: Callable[[], float] = time.time,
        followers: Sequence[Follower] = (),
    ) -> None:
        self._engine = engine
        self._computations = computations
        self._connections = connections
        self._clock = clock
        self._followers = tuple(followers)
        self._plans: dict[str, tuple[tuple[Computation, ...], Plan]] = {}
        self._started: dict[str, Plan] = {}  # space → the plan whose vectors are registered

    def plan(self, space_id: str) -> Plan:
        computations = tuple(self._computations(space_id))
        cached = self._plans.get(space_id)
        if cached is None or cached[0] != computations:
            cached = self._plans[space_id] = (computations, Plan(computations))
        return cached[1]

    def _plan(self, conn: DbConnection, space: SpaceInfo, now: float) -> Plan:
        """The space's plan, its vectors registered: a new vector counts events received
        from now on, and waits for its history from the batch engine (when the space has
        Profiles Sync to read it from and a reader includes history)."""
        plan = self.plan(space.id)
        if self._started.get(space.id) is not plan:
            since = batch_runs.register_vectors(
                conn, space.id, plan, now, history=space.profiles_sync is not None
            )
            plan.start(since)
            self._started[space.id] = plan
        return plan

    # --- the identity stage's observer --------------------------------------------------------

    def observe(
        self,
        conn: DbConnection,
        space: SpaceInfo,
        graph: SqlGraph,
        profiles: ProfileData,
        resolved: Sequence[Resolved],
    ) -> None:
        plan = self.plan(space.id)
        if (plan.empty and not self._followers) or not resolved:
            return
        now = self._clock()
        plan = self._plan(conn, space, now)
        work = _Pass(conn, space, graph, plan, now, profiles)
        engage_sources = _engage_sources(work)
        needed: set[str] = set()
        for item in resolved:
            if item.resolution.user is not None:
                needed.add(item.resolution.user)
            for change in item.resolution.changes:
                if isinstance(change, MergeProfiles) and change.collection == "users":
                    needed.update((change.from_id, change.into_id))
        self._load(work, needed)
        for item in resolved:
            changes = self._event(work, item, engage_sources)
            user = item.resolution.user
            if (
                self._followers
                and user is not None
                and item.resolution.status == "resolved"
                and item.source_id not in engage_sources
            ):
                state = self._state(work, user).state
                for follower in self._followers:
                    follower.follow(conn, space, graph, user, state, changes, item.event, work.now)
        self._write(work, profiles)

    def expire(
        self, conn: DbConnection, space: SpaceInfo, graph: SqlGraph, profiles: ProfileData
    ) -> int:
        """Re-evaluate the profiles whose windows time has moved, then the followers' work
        whose time has come; how much was done."""
        now = self._clock()
        plan = self._plan(conn, space, now)
        done = self._expire(conn, space, graph, profiles, plan, now) if not plan.empty else 0
        done += self._apply_batch(conn, space, graph, profiles, plan, now)
        for follower in self._followers:
            done += follower.due(conn, space, graph, now, lambda p: self._stored(conn, space, p))
        return done

    def _expire(
        self,
        conn: DbConnection,
        space: SpaceInfo,
        graph: SqlGraph,
        profiles: ProfileData,
        plan: Plan,
        now: float,
    ) -> int:
        due = due_profiles(conn, schema.engage_profiles, space.id, now, EXPIRE_BATCH)
        if not due:
            return 0
        work = _Pass(conn, space, graph, plan, now, profiles)
        self._load(work, due)
        for profile_id in due:
            touched = work.profiles[profile_id]
            touched.dirty = True  # its due time moves on, whatever else changes
            plan.prune(touched.state, now)
            changes = plan.evaluate(
                touched.state, set(), set(), now, self._eligible(work, profile_id), everything=True
            )
            self._changed(work, profile_id, changes, f"expire:{profile_id}:{int(now) // 3600}")
            for follower in self._followers:
                follower.follow(conn, space, graph, profile_id, touched.state, changes, None, now)
        self._write(work, profiles)
        return len(due)

    def _apply_batch(
        self,
        conn: DbConnection,
        space: SpaceInfo,
        graph: SqlGraph,
        profiles: ProfileData,
        plan: Plan,
        now: float,
    ) -> int:
        """Apply what batch runs staged (``batch_runs``): values of batch definitions,
        buckets from history, values to send again to a newly connected destination."""
        staged = batch_runs.staged(conn, space.id, STAGED_BATCH)
        if not staged:
            return 0
        by_id = {c.id: c for c in self._computations(space.id)}
        work = _Pass(conn, space, graph, plan, now, profiles)
        # None: a profile erased since the run read it (a deletion regulation): nothing of it
        # may come back, so its rows are dropped unapplied.
        owner = {p: graph.canonical(p) for p in {row[1] for row in staged}}
        self._load(work, {user for user in owner.values() if user is not None})
        changes: dict[str, list[Change]] = {}
        traits: dict[str, dict[str, Any]] = {}
        seeded: set[str] = set()
        applied: list[int] = []
        for seq, profile_id, kind, target, destination, body in staged:
            user = owner[profile_id]
            if user is None:
                applied.append(seq)
                continue
            if kind == "buckets":
                applied.append(seq)
                touched = self._state(work, user)
                if plan.seed(touched.state, target, body):
                    touched.dirty = True
                    seeded.add(user)
                continue
            computation = by_id.get(target)
            if computation is None:
                continue  # too new for this process's plan yet (a deletion removes its rows)
            applied.append(seq)
            if kind == "resend":
                self._resend(work, user, computation, destination, f"backfill:{seq}")
                continue
            touched = self._state(work, user)
            before = touched.state.c.get(computation.id)
            after = bool(body) if computation.kind == "audience" else body
            if computation.kind == "audience":
                before = bool(before)
            if after == before and type(after) is type(before):
                continue
            if after is None or after is False:
                touched.state.c.pop(computation.id, None)
            else:
                touched.state.c[computation.id] = after
            touched.dirty = True
            if computation.definition.kind == "accounts":
                self._account(work, user, computation, after, f"batch:{seq}")
                continue
            changes.setdefault(user, []).append(Change(computation, before, after))
            traits.setdefault(user, {})[computation.key] = after
        run = staged[0][0]  # with the profile: the messageIds of this application
        for user in changes.keys() | seeded:
            cause = f"batch:{run}:{user}"
            state = work.profiles[user].state
            found = list(changes.get(user, ()))
            read = plan.apply_traits(state, traits.get(user, {}))
            if read or user in seeded:
                found += plan.evaluate(
                    state, set(), read, now, self._eligible(work, user), everything=user in seeded
                )
            self._changed(work, user, found, cause)
            for follower in self._followers:
                follower.follow(conn, space, graph, user, state, found, None, now)
        batch_runs.applied(conn, space.id, applied)
        self._write(work, profiles)
        return len(applied)

    def _account(
        self, work: _Pass, account: str, computation: Computation, value: Any, cause: str
    ) -> None:
        """An account-level value (§13.10): on the account's profile, a Group call for the
        account, and an Identify or Track for each of its users."""
        classes = work.values.setdefault(account, {})
        classes.setdefault(TRAIT_CLASS[computation.kind], {})[computation.key] = value
        connections = self._connections_now(work, computation.id)
        if not connections:
            return
        users = work.graph.links(account)
        for user in users:
            work.emissions.append((user, computation, value, connections, f"{cause}:{user}"))
        group_ids = _identifiers(work, account, frozenset({"group_id"}))
        user_id = next(
            (i.value for u in users for i in _identifiers(work, u, frozenset({"user_id"}))), None
        )
        if group_ids and user_id is not None:
            work.messages += activation.group_messages(
                work.space.id,
                computation,
                value,
                group_ids[0].value,
                user_id,
                connections,
                at=work.now,
                cause=cause,
            )

    def _resend(
        self,
        work: _Pass,
        user: str,
        computation: Computation,
        destination: str | None,
        cause: str,
    ) -> None:
        """A destination connected after the values were sent gets the current one."""
        connections = [
            c for c in self._connections_now(work, computation.id) if c.destination == destination
        ]
        value = work.profiles[user].state.c.get(computation.id) if user in work.profiles else None
        if connections and value is not None:
            work.emissions.append((user, computation, value, connections, cause))

    def _connections_now(self, work: _Pass, computation_id: str) -> Sequence[Connection]:
        """A computation's connections, a list destination's audience id read in the pass's
        transaction when the engine's copy has none yet (the id was stored a moment ago:
        a member entering now must not be missed)."""
        found = self._connections(computation_id)
        if not any(c.list_audience and c.external_audience_id is None for c in found):
            return found
        table, dest = schema.engage_connections, schema.destinations
        ids = dict(
            work.conn.execute(
                sa.select(dest.c.name, table.c.external_audience_id)
                .join(dest, dest.c.id == table.c.destination_id)
                .where(table.c.computation_id == computation_id)
            ).all()
        )
        return [
            replace(c, external_audience_id=ids.get(c.destination))
            if c.list_audience and c.external_audience_id is None
            else c
            for c in found
        ]

    def _stored(self, conn: DbConnection, space: SpaceInfo, profile_id: str) -> ProfileState:
        """A profile's state as this transaction has it (empty when Engage never saw it)."""
        table = schema.engage_profiles
        found = conn.execute(
            sa.select(table.c.state).where(
                table.c.space_id == space.id, table.c.profile_id == profile_id
            )
        ).scalar_one_or_none()
        return decode_state(found) if found is not None else ProfileState()

    # --- one event ------------------------------------------------------------------------------

    def _event(self, work: _Pass, item: Resolved, engage_sources: set[str]) -> Sequence[Change]:
        """Apply one resolved event; the values it changed."""
        resolution = item.resolution
        user = resolution.user
        if resolution.status in ("dropped", "unresolved") or user is None:
            return ()
        plan = work.plan
        cause = str(item.event.get("messageId") or "")
        everything = False
        added: list[AddIdentifier] = []
        for change in resolution.changes:
            if isinstance(change, MergeProfiles) and change.collection == "users":
                survivor = self._state(work, change.into_id)
                merged = work.profiles.pop(change.from_id, None)
                work.gone.add(change.from_id)
                if merged is not None:
                    plan.merge(survivor.state, merged.state)
                survivor.dirty = True
                everything = True
                for follower in self._followers:
                    follower.merged(work.conn, work.space, change.from_id, change.into_id, work.now)
            elif isinstance(change, AddIdentifier) and change.collection == "users":
                added.append(change)
        touched = self._state(work, user)
        traits: set[str] = set()
        for profile_id, changed in item.traits:
            if profile_id == user:
                traits |= plan.apply_traits(touched.state, changed)
        vectors: set[str] = set()
        if item.source_id not in engage_sources:  # Engage's own events compute nothing
            vectors = plan.apply_event(touched.state, item.event, item.source_id, work.now)
        # An identifier of these types can make a profile eligible (§13.3); one the event
        # carries (not blocked) is on the profile it resolved to, whatever limits applied.
        eligibility = bool(added) and any(a.type in ELIGIBLE for a in added)
        if eligibility or (
            touched.state.e is not True
            and any(i.type in ELIGIBLE and i.collection == "users" for i in item.identifiers)
        ):
            touched.state.e = True
        if not (vectors or traits or everything or eligibility):
            if added:
                self._resync(work, user, dict(touched.state.c), (), added, cause)
            return ()
        touched.dirty = True
        before = dict(touched.state.c)
        changes = plan.evaluate(
            touched.state,
            vectors,
            traits,
            work.now,
            self._eligible(work, user),
            everything=everything,
            eligibility=eligibility,
        )
        self._changed(work, user, changes, cause)
        if added:
            self._resync(work, user, before, changes, added, cause)
        return changes

    def _resync(
        self,
        work: _Pass,
        user: str,
        before: Mapping[str, Any],
        changes: Sequence[Change],
        added: Sequence[AddIdentifier],
        cause: str,
    ) -> None:
        """A-UE-41: values that did not change are sent again, keyed by the new identifiers
        (the messages are made when the pass ends, as ``_changed``'s are)."""
        new_user = next((a.value for a in added if a.type == "user_id"), None)
        emails = [a.value for a in added if a.type == "email"]
        anonymous = [a.value for a in added if a.type == "anonymous_id"]
        if new_user is None and not emails and not anonymous:
            return
        changed = {c.computation.id for c in changes}
        values = []
        for c in self._computations(work.space.id):  # real-time and batch values alike
            if c.id in changed or c.id not in before:
                continue
            connections = self._connections_now(work, c.id)
            if connections:
                values.append((c, before[c.id], connections))
        if values:
            work.resyncs.append(_Resync(user, values, new_user, emails, anonymous, cause))

    def _changed(self, work: _Pass, user: str, changes: Sequence[Change], cause: str) -> None:
        """Note the profile's new values, and what to tell the connected destinations: the
        messages are made when the pass ends, with every such profile's identifiers read in
        one statement."""
        for change in changes:
            computation = change.computation
            classes = work.values.setdefault(user, {})
            classes.setdefault(TRAIT_CLASS[computation.kind], {})[computation.key] = change.after
            connections = self._connections_now(work, computation.id)
            if connections:
                work.emissions.append((user, computation, change.after, connections, cause))

    def _emit(self, work: _Pass) -> None:
        """The messages of the pass's resyncs, then of its changes (a merged-away profile's
        changes go with it: the survivor was evaluated in full), with the identifiers of all
        their profiles read in one statement."""
        emissions = [e for e in work.emissions if e[0] not in work.gone]
        _load_identifiers(work, {e[0] for e in emissions} | {r.user for r in work.resyncs})
        identities: dict[str, Identity] = {}

        def identity_of(user: str) -> Identity:
            found = identities.get(user)
            if found is None:
                found = identities[user] = self._identity(work, user)
            return found

        for resync in work.resyncs:
            known = identity_of(resync.user)
            user_id = resync.new_user or known.user_id
            # Without a user id a message is keyed by an anonymous id: the profile's latest.
            keyed = resync.anonymous or ([] if user_id else known.anonymous_ids[-1:])
            fresh = Identity(
                user_id,
                resync.emails,
                keyed,
                {t: v for t, v in known.values.items() if t not in ("email", "anonymous_id")},
            )
            for computation, value, connections in resync.values:
                work.messages += activation.messages(
                    work.space.id,
                    computation,
                    value,
                    fresh,
                    connections,
                    at=work.now,
                    cause=f"resync:{resync.cause}",
                )
        for user, computation, value, connections, cause in emissions:
            identity = identity_of(user)
            wanted = {trait for c in connections for trait, _ in c.trait_enrichment}
            traits = (
                {k: t.value for k, t in work.data.traits(user, keys=wanted).items()}
                if wanted
                else None
            )
            work.messages += activation.messages(
                work.space.id,
                computation,
                value,
                identity,
                connections,
                at=work.now,
                cause=cause,
                traits=traits,
            )

    # --- reads and writes -----------------------------------------------------------------------

    def _eligible(self, work: _Pass, profile_id: str) -> Callable[[], bool]:
        state = work.profiles[profile_id].state

        def eligible() -> bool:
            if state.e is None:  # identifiers only ever join a profile: True stays True
                state.e = bool(_identifiers(work, profile_id, ELIGIBLE))
            return state.e

        return eligible

    def _identity(self, work: _Pass, profile_id: str) -> Identity:
        values: dict[str, list[str]] = {}
        for found in _identifiers(work, profile_id, None):
            values.setdefault(found.type, []).append(found.value)
        users = values.get("user_id", [])
        return Identity(
            user_id=users[-1] if users else None,
            emails=values.get("email", []),
            anonymous_ids=values.get("anonymous_id", []),
            values=values,
        )

    def _state(self, work: _Pass, profile_id: str) -> _Touched:
        touched = work.profiles.get(profile_id)
        if touched is None:
            touched = work.profiles[profile_id] = _Touched(ProfileState())
        work.gone.discard(profile_id)
        return touched

    def _load(self, work: _Pass, profile_ids: Iterable[str]) -> None:
        wanted = [p for p in profile_ids if p not in work.profiles]
        for profile_id, state in states.read(work.conn, work.space.id, wanted).items():
            work.profiles[profile_id] = _Touched(decode_state(state))

    def _write(self, work: _Pass, profiles: ProfileData) -> None:
        space_id = work.space.id
        conn = work.conn
        states.delete(conn, space_id, sorted(work.gone))
        rows: list[states.Row] = []
        plan, now = work.plan, work.now
        for profile_id, touched in work.profiles.items():
            if not touched.dirty:
                continue
            plan.prune(touched.state, now)
            due = plan.due(touched.state, now)
            rows.append(
                (profile_id, encode_state(touched.state), int(due) if due is not None else None)
            )
        states.write(conn, space_id, rows)
        values = [
            (profile_id, trait_class, key, value)
            for profile_id, classes in work.values.items()
            if profile_id not in work.gone
            for trait_class, by_key in classes.items()
            for key, value in by_key.items()
        ]
        if work.engage_source is None:
            _engage_sources(work)
        profiles.set_computed(conn, values, work.engage_source or "engage", work.now)
        self._emit(work)
        outbox.add(conn, space_id, work.messages, int(work.now))


def _identifiers(
    work: _Pass, profile_id: str, types: frozenset[str] | None
) -> list[StoredIdentifier]:
    """A profile's identifiers (of ``types``; None: all) as the graph has them at the end of
    the pass (the observer runs after it: a profile an event resolved to may have been merged
    by a later one)."""
    found = work.identifiers.get(profile_id)
    if found is None:
        canonical = work.graph.canonical(profile_id) or profile_id
        found = work.identifiers[profile_id] = work.graph.identifiers(canonical)
    return [i for i in found if types is None or i.type in types]


_IDENTIFIERS = """SELECT p.segment_id, i.type, i.value, i.first_seen, i.source_id, i.message_id
FROM unify_profiles p JOIN unify_identities i ON i.profile = p.seq
WHERE p.space_id = {space} AND p.segment_id {ids} AND p.canonical IS NULL ORDER BY i.seq"""
_IDENTIFIERS_PG = _IDENTIFIERS.format(space="%s", ids="= ANY(%b::text[])")
_IDENTIFIERS_SQLITE = _IDENTIFIERS.format(space="?", ids="IN (SELECT value FROM json_each(?))")


def _load_identifiers(work: _Pass, profile_ids: Iterable[str]) -> None:
    """The identifiers of profiles not read yet, in one statement (what ``_identifiers``
    would read one profile at a time); a merged-away profile's are left to it."""
    wanted = [p for p in profile_ids if p not in work.identifiers]
    if not wanted:
        return
    conn = work.conn
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(_IDENTIFIERS_PG, (work.space.id, wanted))
    else:
        ids = msgspec.json.encode(wanted).decode()
        rows = conn.exec_driver_sql(_IDENTIFIERS_SQLITE, (work.space.id, ids))
    found: dict[str, list[StoredIdentifier]] = {}
    for segment_id, type_, value, first_seen, source_id, message_id in rows:
        found.setdefault(segment_id, []).append(
            StoredIdentifier(type_, value, float(first_seen), source_id, message_id)
        )
    work.identifiers.update(found)


def _engage_sources(work: _Pass) -> set[str]:
    """Every space's Engage source (their messages compute nothing); notes this space's, the
    source of the values Engage writes to its profiles."""
    table = schema.engage_sources
    found = set()
    work.engage_source = "engage"  # a space without one (it gets one when Engage is set up)
    for space_id, source_id in work.conn.execute(sa.select(table.c.space_id, table.c.source_id)):
        found.add(source_id)
        if space_id == work.space.id:
            work.engage_source = source_id
    return found
