"""Moving profiles through live journeys, in identity resolution's pass (a ``Follower`` of
``engage.stage.EngageStage``): state, step log, profile traits and messages are written on the
pass's connection, so they commit or roll back with the resolution.

A member (one profile in one journey version; for an event-triggered journey, one instance
per unique identifier value) records the steps it joined and when. After every event and
every change of its profile's values, and when its ``due_at`` comes, the runner joins every
step it can, in the journey's order, until none is left (§15.2):

- a step whose parent is joined and whose condition holds (an audience membership, read from
  the profile's real-time state) is joined, and stays joined if the condition later fails —
  users only move forward;
- a delay is joined once its parent was joined that long ago (not in real time: at the next
  ``due`` pass, slightly later is fine), so a condition step after it is joined then, if its
  condition still holds, or as soon after as it does;
- a true/false split sends the profile down one side on reaching it, for good; a randomized
  split chooses by a hash of journey, split and profile, so re-entry takes the same branch; a
  multi-branch split lets it join every branch whose condition holds;
- a Hold Until waits for one of its branch events (with the instance's unique identifier) or
  its maximum duration; a branch with "send back" restarts the wait instead;
- joining a send step sends its messages; joining any step writes
  ``j_<journey>__<step>__step_joined_time`` (trait class ``computed_trait``) on the profile.

A classic journey lets in the profiles that join its entry audience after publication; with
"Use historical data" also those already members then (``due`` lets them in, a batch at a time).
Exit settings end a classic membership N after entry (event destinations get the exits);
re-entry settings let it enter again M after the exit if the entry condition still holds.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection as DbConnection

from headwater.engage import outbox
from headwater.engage.activation import Identity
from headwater.engage.due import due_profiles
from headwater.engage.journeys import payloads
from headwater.engage.journeys.model import ENTRY, EXIT, Condition, LiveJourney, Plan, Step
from headwater.engage.realtime import (
    Change,
    Computation,
    ProfileState,
    decode_state,
    event_name,
)
from headwater.store import schema
from headwater.timestamps import format_timestamp
from headwater.unify.profiles import ProfileData
from headwater.unify.spaces import SpaceInfo
from headwater.unify.sql_graph import SqlGraph

DUE_BATCH = 1_000
MAX_INSTANCES = 25  # §16: concurrent instances per profile
MAX_INSTANCE_ID = 150  # §16: a unique identifier's value
MAX_LOOPS = 100  # §16: "send back" loops per instance
KEEP_DONE = 90 * 86_400  # §16: an instance's data is kept 90 days after it ends

Journeys = Callable[[str], Sequence[LiveJourney]]  # a space's live versions
Computations = Callable[[str], Sequence[Computation]]
MemberKey = tuple[str, int, str]  # journey id, version, instance


def joined_trait(journey_key: str, step: str) -> str:
    return f"j_{journey_key}__{step.lstrip('@')}__step_joined_time"


@dataclass
class _Work:
    """One follow or due call's work on one profile."""

    conn: DbConnection
    space: SpaceInfo
    graph: SqlGraph
    profile_id: str
    state: ProfileState
    now: float
    audiences: Mapping[str, str]  # key → computation id
    members: dict[MemberKey, dict[str, Any]]
    changed: set[MemberKey] = field(default_factory=set)
    gone: set[MemberKey] = field(default_factory=set)
    log: list[dict[str, Any]] = field(default_factory=list)
    traits: list[tuple[str, str, str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    identity: Identity | None = None
    changes: Sequence[Change] = ()  # the values this call's event or time changed


class JourneyFollower:
    """Journeys as a follower of the Engage stage."""

    def __init__(self, journeys: Journeys, computations: Computations) -> None:
        self._journeys = journeys
        self._computations = computations
        self._backfilled: set[tuple[str, int]] = set()  # versions with none left to let in

    # --- the Follower protocol ------------------------------------------------------------

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
        live = self._journeys(space.id)
        if not live:
            return
        work = self._work(conn, space, graph, profile_id, state, now, {})
        work.changes = changes
        if not changes and all(
            j.plan.kind == "classic"
            and not (j.plan.entry.historical and self._holds(work, j.plan.entry.condition))
            for j in live
        ):
            return  # nothing moved: no entry, no condition newly met (time is ``due``'s)
        work.members.update(self._load(conn, space, profile_id))
        for journey in live:
            if journey.plan.kind == "classic":
                self._classic(work, journey)
            else:
                self._triggered(work, journey, event)
        self._write(work)

    def due(
        self,
        conn: DbConnection,
        space: SpaceInfo,
        graph: SqlGraph,
        now: float,
        state_of: Callable[[str], ProfileState],
    ) -> int:
        done = self._backfill(conn, space, graph, now)
        profiles = due_profiles(conn, schema.engage_journey_members, space.id, now, DUE_BATCH)
        if not profiles:
            return done
        live = {(j.id, j.version): j for j in self._journeys(space.id)}
        for profile_id in profiles:
            members = self._load(conn, space, profile_id)
            work = self._work(conn, space, graph, profile_id, state_of(profile_id), now, members)
            for key, member in members.items():
                journey = live.get(key[:2])
                if member.get("due") is None or member["due"] > now:
                    continue
                if journey is None:  # archived or deleted: progress stops
                    member["due"] = None
                    work.changed.add(key)
                    continue
                if journey.plan.kind == "classic":
                    self._classic(work, journey)
                elif member.get("done"):
                    work.gone.add(key)
                else:
                    self._advance(work, journey, key, member)
                if member.get("due") is not None and member["due"] <= now:
                    member["due"] = None  # never due for ever: the idle loop must end
            self._write(work)
        return done + len(profiles)

    def _backfill(self, conn: DbConnection, space: SpaceInfo, graph: SqlGraph, now: float) -> int:
        """ "Use historical data": the entry audience's members at publication enter, a batch
        of profiles per call, in profile id order (``backfill_after`` keeps the place)."""
        versions, profiles = schema.engage_journey_versions, schema.engage_profiles
        done = 0
        for journey in self._journeys(space.id):
            key = (journey.id, journey.version)
            plan = journey.plan
            if key in self._backfilled or journey.status != "published" or plan.kind != "classic":
                continue
            match = sa.and_(
                versions.c.journey_id == journey.id, versions.c.version == journey.version
            )
            after = conn.execute(sa.select(versions.c.backfill_after).where(match)).scalar()
            if after is None:
                self._backfilled.add(key)
                continue
            batch = conn.execute(
                sa.select(profiles.c.profile_id, profiles.c.state)
                .where(profiles.c.space_id == space.id, profiles.c.profile_id > after)
                .order_by(profiles.c.profile_id)
                .limit(DUE_BATCH)
            ).all()
            for profile_id, state in batch:
                work = self._work(conn, space, graph, profile_id, decode_state(state), now, {})
                if not self._holds(work, plan.entry.condition):
                    continue
                work.members.update(self._load(conn, space, profile_id))
                if (journey.id, journey.version, "") not in work.members:
                    self._classic(work, journey)
                    self._write(work)
            last = batch[-1].profile_id if len(batch) == DUE_BATCH else None
            conn.execute(versions.update().where(match).values(backfill_after=last))
            done += len(batch)
        return done

    def merged(
        self, conn: DbConnection, space: SpaceInfo, from_id: str, into_id: str, now: float
    ) -> None:
        """The merged-away profile's journey instances move to the survivor; where both were
        in the same one, the one further along stays (see ``_further``)."""
        table = schema.engage_journey_members
        moving = self._load(conn, space, from_id)
        if not moving:
            return
        staying = self._load(conn, space, into_id)
        for key, member in moving.items():
            kept = staying.get(key)
            match = sa.and_(
                table.c.space_id == space.id,
                table.c.journey_id == key[0],
                table.c.version == key[1],
                table.c.instance == key[2],
            )
            if kept is None or _further(member, kept):
                if kept is not None:
                    member["entries"] = max(member["entries"], kept["entries"])
                    conn.execute(table.delete().where(match, table.c.profile_id == into_id))
                conn.execute(
                    table.update()
                    .where(match, table.c.profile_id == from_id)
                    .values(profile_id=into_id, state=member)
                )
            else:
                if member["entries"] > kept["entries"]:
                    kept["entries"] = member["entries"]
                    conn.execute(
                        table.update()
                        .where(match, table.c.profile_id == into_id)
                        .values(state=kept)
                    )
                conn.execute(table.delete().where(match, table.c.profile_id == from_id))

    # --- classic journeys -----------------------------------------------------------------

    def _classic(self, work: _Work, journey: LiveJourney) -> None:
        plan = journey.plan
        key: MemberKey = (journey.id, journey.version, "")
        member = work.members.get(key)
        now = work.now
        if member is None:
            if journey.status != "published" or not self._holds(work, plan.entry.condition):
                return
            if not plan.entry.historical and not self._entered(work, plan.entry.condition):
                return  # a member from before publication: only "Use historical data" lets it in
            if plan.exclude_previous and any(
                k[0] == journey.id and k[1] != journey.version for k in work.members
            ):
                return
            self._enter(work, journey, key, entries=1)
            return
        if member.get("exited") is not None:
            again = plan.reentry_after
            if (
                again is not None
                and now >= member["exited"] + again
                and journey.status == "published"
                and self._holds(work, plan.entry.condition)
            ):
                self._enter(work, journey, key, entries=member["entries"] + 1)
            else:
                self._schedule(work, journey, key, member)
            return
        if plan.exit_after is not None and now >= member["entered"] + plan.exit_after:
            self._exit(work, journey, key, member)
            return
        self._advance(work, journey, key, member)

    def _exit(
        self, work: _Work, journey: LiveJourney, key: MemberKey, member: dict[str, Any]
    ) -> None:
        """Out of every step and destination (list destinations keep their users)."""
        identity = None
        for sid in member["joined"]:
            step = journey.plan.steps.get(sid)
            if step is None or step.kind != "send":
                continue
            identity = identity or self._identity(work)
            work.messages += payloads.classic(
                work.space.id,
                journey.id,
                step,
                False,
                identity,
                at=work.now,
                cause=self._cause(work, key, member, f"exit:{sid}"),
            )
        member["exited"] = work.now
        member["joined"] = {}
        self._log(work, key, EXIT)
        self._schedule(work, journey, key, member)

    # --- event-triggered journeys -----------------------------------------------------------

    def _triggered(
        self, work: _Work, journey: LiveJourney, event: Mapping[str, Any] | None
    ) -> None:
        plan = journey.plan
        mine = {k: m for k, m in work.members.items() if k[:2] == (journey.id, journey.version)}
        name = event_name(event) if event is not None else None
        properties = _properties(event) if event is not None else {}
        held: set[MemberKey] = set()
        if name is not None:
            for key, member in mine.items():
                if not member.get("done") and self._hold_event(
                    work, journey, key, member, name, properties
                ):
                    held.add(key)
        entry = plan.entry
        if (
            name == entry.event
            and journey.status == "published"
            and _matches(entry.where, properties)
            and (entry.condition is None or self._holds(work, entry.condition))
        ):
            instance = ""
            if entry.every_time:
                found = properties.get(entry.unique_id)
                instance = "" if found is None else _text(found)
            key = (journey.id, journey.version, instance)
            existing = work.members.get(key)
            active = sum(1 for m in mine.values() if not m.get("done"))
            allowed = (
                (instance or not entry.every_time)
                and len(instance) <= MAX_INSTANCE_ID
                and key not in held
                and active < MAX_INSTANCES
            )
            if entry.every_time:
                allowed = allowed and (existing is None or bool(existing.get("done")))
            else:
                allowed = allowed and not any(k[0] == journey.id for k in work.members)
            if allowed:
                entries = existing["entries"] + 1 if existing else 1
                self._enter(work, journey, key, entries=entries, context={name: properties})
                mine[key] = work.members[key]
        for key, member in mine.items():
            if not member.get("done"):
                self._advance(work, journey, key, member)

    def _hold_event(
        self,
        work: _Work,
        journey: LiveJourney,
        key: MemberKey,
        member: dict[str, Any],
        name: str,
        properties: Mapping[str, Any],
    ) -> bool:
        """An event for a waiting Hold Until of this instance: join its branch (or restart
        the wait); whether it was used."""
        plan = journey.plan
        unique = plan.entry.unique_id
        if unique and _text(properties.get(unique)) != key[2]:
            return False
        joined = member["joined"]
        for hold in plan.steps.values():
            if hold.kind != "hold_until" or hold.id not in joined:
                continue
            if any(c in joined for c in plan.children.get(hold.id, ())):
                continue  # this hold is over
            for bid in plan.children.get(hold.id, ()):
                branch = plan.steps[bid]
                if branch.kind != "branch" or branch.event != name:
                    continue
                if not _matches(branch.where, properties):
                    continue
                member["context"][f"{name} - {branch.name}"] = properties
                if branch.send_back:
                    if member.get("loops", 0) >= MAX_LOOPS:
                        return False  # no more loops: the hold runs out
                    member["since"][hold.id] = work.now
                    member["loops"] = member.get("loops", 0) + 1
                else:
                    self._join(work, journey, key, member, branch)
                work.changed.add(key)
                return True
        return False

    # --- moving on ------------------------------------------------------------------------

    def _enter(
        self,
        work: _Work,
        journey: LiveJourney,
        key: MemberKey,
        *,
        entries: int,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        member: dict[str, Any] = {
            "entered": work.now,
            "entries": entries,
            "joined": {ENTRY: work.now},
            "exited": None,
            "context": dict(context or {}),
            "since": {},
            "epoch": secrets.token_hex(5),
        }
        work.members[key] = member
        work.changed.add(key)
        self._log(work, key, ENTRY)
        work.traits.append(
            (work.profile_id, "computed_trait", joined_trait(journey.key, ENTRY), _iso(work.now))
        )
        self._advance(work, journey, key, member)

    def _advance(
        self, work: _Work, journey: LiveJourney, key: MemberKey, member: dict[str, Any]
    ) -> None:
        plan = journey.plan
        moved = True
        while moved:
            moved = False
            for step in plan.steps.values():
                if step.id in member["joined"] or not self._ready(work, plan, member, step):
                    continue
                self._join(work, journey, key, member, step)
                moved = True
        if plan.kind == "event_triggered" and not self._pending(work, plan, member):
            member["done"] = member.get("done") or work.now
            work.changed.add(key)
        self._schedule(work, journey, key, member)

    def _ready(self, work: _Work, plan: Plan, member: dict[str, Any], step: Step) -> bool:
        joined = member["joined"]
        at = joined.get(step.parent)
        if at is None:
            return False
        parent = plan.steps.get(step.parent)
        if parent is not None and parent.kind in ("true_false", "randomized", "hold_until"):
            # one branch only, chosen on reaching the split (a hold's by an event)
            if any(c in joined for c in plan.children.get(parent.id, ())):
                return False
            if step.kind == "timeout":
                return work.now >= float(member["since"].get(parent.id, at)) + parent.seconds
            return False
        if step.kind == "delay":
            return work.now >= float(at) + step.seconds
        if step.condition is not None:
            return self._holds(work, step.condition)
        return True

    def _pending(self, work: _Work, plan: Plan, member: dict[str, Any]) -> bool:
        """Whether anything could still be joined (an event-triggered instance is done when
        not)."""
        joined = member["joined"]
        for step in plan.steps.values():
            if step.id in joined or step.parent not in joined:
                continue
            parent = plan.steps.get(step.parent)
            if parent is not None and parent.kind in ("true_false", "randomized", "hold_until"):
                if not any(c in joined for c in plan.children.get(parent.id, ())):
                    return True
                continue
            return True
        return False

    def _join(
        self,
        work: _Work,
        journey: LiveJourney,
        key: MemberKey,
        member: dict[str, Any],
        step: Step,
    ) -> None:
        plan = journey.plan
        member["joined"][step.id] = work.now
        work.changed.add(key)
        self._log(work, key, step.id)
        work.traits.append(
            (work.profile_id, "computed_trait", joined_trait(journey.key, step.id), _iso(work.now))
        )
        if step.kind == "send" and step.send is not None:
            identity = self._identity(work)
            cause = self._cause(work, key, member, step.id)
            if plan.kind == "classic":
                work.messages += payloads.classic(
                    work.space.id, journey.id, step, True, identity, at=work.now, cause=cause
                )
            else:
                traits = (
                    {
                        k: t.value
                        for k, t in ProfileData(work.conn.engine, work.space.id)
                        .traits(work.profile_id, keys=step.send.traits)
                        .items()
                    }
                    if step.send.traits
                    else {}
                )
                work.messages += payloads.triggered(
                    work.space.id,
                    journey.id,
                    step,
                    identity,
                    member["context"],
                    traits,
                    epoch=member["epoch"],
                    at=work.now,
                    cause=cause,
                )
        elif step.kind == "true_false":
            for bid in plan.children.get(step.id, ()):
                branch = plan.steps[bid]
                if branch.side == self._holds(work, branch.condition):
                    self._join(work, journey, key, member, branch)
        elif step.kind == "randomized":
            branches = [plan.steps[b] for b in plan.children.get(step.id, ())]
            point = _bucket(journey.id, step.id, work.profile_id)
            for branch in branches:
                point -= branch.percent
                if point < 0:
                    self._join(work, journey, key, member, branch)
                    break
        elif step.kind == "hold_until":
            member["since"][step.id] = work.now

    def _schedule(
        self, work: _Work, journey: LiveJourney, key: MemberKey, member: dict[str, Any]
    ) -> None:
        """When time alone moves this member next."""
        plan = journey.plan
        times: list[float] = []
        if member.get("exited") is not None:
            again = member["exited"] + (plan.reentry_after or 0)
            if plan.reentry_after is not None and again > work.now:
                times.append(again)  # once open, an entry condition met lets it in
        elif member.get("done"):
            if key[2]:  # an instance by unique id is forgotten; "enter once" is remembered
                times.append(float(member["done"]) + KEEP_DONE)
        else:
            if plan.exit_after is not None:
                times.append(member["entered"] + plan.exit_after)
            joined = member["joined"]
            for step in plan.steps.values():
                if step.id in joined or step.parent not in joined:
                    continue
                if step.kind == "delay":
                    times.append(joined[step.parent] + step.seconds)
                elif step.kind == "timeout":
                    hold = plan.steps[step.parent]
                    if not any(c in joined for c in plan.children.get(hold.id, ())):
                        since = member["since"].get(hold.id, joined[hold.id])
                        times.append(since + hold.seconds)
        due = min(times) if times else None
        if member.get("due") != due:
            member["due"] = due
            work.changed.add(key)

    # --- reads and writes ---------------------------------------------------------------------

    def _holds(self, work: _Work, condition: Condition | None) -> bool:
        if condition is None:
            return True
        computation = work.audiences.get(condition.audience)
        member = bool(work.state.c.get(computation)) if computation is not None else False
        return member == condition.member

    def _entered(self, work: _Work, condition: Condition | None) -> bool:
        """Whether this call's changes made the entry condition hold (it holds now)."""
        if condition is None:
            return True
        computation = work.audiences.get(condition.audience)
        return any(c.computation.id == computation for c in work.changes)

    def _identity(self, work: _Work) -> Identity:
        if work.identity is None:
            canonical = work.graph.canonical(work.profile_id) or work.profile_id
            values: dict[str, list[str]] = {}
            for found in work.graph.identifiers(canonical):
                values.setdefault(found.type, []).append(found.value)
            users = values.get("user_id", [])
            work.identity = Identity(
                user_id=users[-1] if users else None,
                emails=values.get("email", []),
                anonymous_ids=values.get("anonymous_id", []),
                values=values,
            )
        return work.identity

    def _cause(self, work: _Work, key: MemberKey, member: dict[str, Any], what: str) -> str:
        return f"journey:{key[0]}:{key[1]}:{work.profile_id}:{key[2]}:{member['epoch']}:{what}"

    def _log(self, work: _Work, key: MemberKey, step: str) -> None:
        work.log.append(
            {
                "journey_id": key[0],
                "version": key[1],
                "profile_id": work.profile_id,
                "instance": key[2],
                "step": step,
                "at": int(work.now),
            }
        )

    def _work(
        self,
        conn: DbConnection,
        space: SpaceInfo,
        graph: SqlGraph,
        profile_id: str,
        state: ProfileState,
        now: float,
        members: dict[MemberKey, dict[str, Any]],
    ) -> _Work:
        audiences = {c.key: c.id for c in self._computations(space.id) if c.kind == "audience"}
        return _Work(conn, space, graph, profile_id, state, now, audiences, members)

    def _load(
        self, conn: DbConnection, space: SpaceInfo, profile_id: str
    ) -> dict[MemberKey, dict[str, Any]]:
        table = schema.engage_journey_members
        rows = conn.execute(
            sa.select(table.c.journey_id, table.c.version, table.c.instance, table.c.state).where(
                table.c.space_id == space.id, table.c.profile_id == profile_id
            )
        )
        return {(r.journey_id, r.version, r.instance): dict(r.state) for r in rows}

    def _write(self, work: _Work) -> None:
        conn = work.conn
        table = schema.engage_journey_members
        for key in sorted(work.changed | work.gone):
            member = work.members[key]
            match = sa.and_(
                table.c.journey_id == key[0],
                table.c.version == key[1],
                table.c.profile_id == work.profile_id,
                table.c.instance == key[2],
            )
            conn.execute(table.delete().where(match))
            if key in work.gone:
                continue
            due = member.get("due")
            conn.execute(
                table.insert().values(
                    journey_id=key[0],
                    version=key[1],
                    profile_id=work.profile_id,
                    instance=key[2],
                    space_id=work.space.id,
                    state=member,
                    due_at=int(due) + (0 if due == int(due) else 1) if due is not None else None,
                )
            )
        if work.log:
            conn.execute(schema.engage_journey_log.insert(), work.log)
        if work.traits:
            ProfileData(conn.engine, work.space.id).set_computed(
                conn, work.traits, _engage_source(conn, work.space.id), work.now
            )
        outbox.add(conn, work.space.id, work.messages, int(work.now))


def _further(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether instance ``a`` is further along than ``b``: one still in the journey before
    one that exited or ended, then more steps joined, then the earlier entry."""

    def rank(m: Mapping[str, Any]) -> tuple[bool, int, float]:
        active = m.get("exited") is None and not m.get("done")
        return (active, len(m["joined"]), -float(m["entered"]))

    return rank(a) > rank(b)


def _bucket(journey_id: str, split: str, profile_id: str) -> int:
    """0–99, the same for the same profile at the same split: re-entry keeps the branch."""
    digest = hashlib.blake2b(f"{journey_id}\x1f{split}\x1f{profile_id}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big") % 100


def _matches(filters: Iterable[tuple[str, tuple[Any, ...]]], properties: Mapping[str, Any]) -> bool:
    for name, values in filters:
        found = properties.get(name)
        if found is None or not any(_same(found, v) for v in values):
            return False
    return True


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return _text(a) == _text(b)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _properties(event: Mapping[str, Any]) -> dict[str, Any]:
    found = event.get("properties")
    return dict(found) if isinstance(found, Mapping) else {}


def _iso(at: float) -> str:
    return format_timestamp(datetime.fromtimestamp(at, UTC))


def _engage_source(conn: DbConnection, space_id: str) -> str:
    found = conn.execute(
        sa.select(schema.engage_sources.c.source_id).where(
            schema.engage_sources.c.space_id == space_id
        )
    ).scalar_one_or_none()
    return found or "engage"
