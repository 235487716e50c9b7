"""Identity resolution: one event in, the profile it belongs to and the graph's changes out.

Segment's flat matching logic (spec/unify-engage.md §2.4) with its rules, exactly:

1. The event's identifiers (``identifiers.py``), blocked values left out (``ID value
   blocked``). None left: ``No matching identifiers on event``, the event is not resolved.
2. Look for the profiles holding any of them. The *final profile* would hold their identifiers
   and the event's. If a type would then hold more values than its limit (over its period:
   values first seen within it), demote the event's lowest-priority identifier and try again
   (``Identifier value limit exceeded``, or ``… time limit exceeded`` when every type over its
   limit has a period), until nothing is over or one identifier is left (§21 #14); of one
   type's values, a new one goes before one the graph holds already. A type that
   is over its limit already on one of the profiles (the settings were tightened since) only
   counts when the event would add to it: settings apply to new events only (A-UE-19).
3. No profile: create one. One profile: add the new identifiers to it. Several: merge them
   into the oldest, one by one, unless the merged profile would count more than 100 merges
   (``Profile merge limit exceeded``) or 1,000 identifier values (``Identifier mapping limit
   exceeded``); a merge refused leaves that profile as it is and the event resolves anyway.
   New identifiers go on the resulting profile while it holds fewer than 1,000 values.
4. A group call resolves its account the same way in the ``accounts`` collection (``group_id``
   and account identifiers) and links the user's profile to it (A-UE-8).

A profile's identifiers never change afterwards except by moving, whole, in a merge.

Idempotence: ``Resolver.resolve`` skips an event whose ``messageId`` the store has applied;
otherwise it plans the event's changes from reads alone, and the store applies them and records
the ``messageId`` in one transaction. A crash before that commit leaves nothing; a replay of an
applied range changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Literal, NamedTuple

from headwater import reasons
from headwater.timestamps import parse_timestamp
from headwater.unify.graph import (
    AddIdentifier,
    Change,
    CreateProfile,
    GraphStore,
    LinkProfiles,
    MergeProfiles,
    StoredIdentifier,
)
from headwater.unify.identifiers import Event, Extraction, Extractor, Identifier
from headwater.unify.ingestion import drop_reason
from headwater.unify.profile_ids import ProfileIds
from headwater.unify.settings import IdentitySettings

Status = Literal["resolved", "unresolved", "dropped", "duplicate"]


class Violation(NamedTuple):
    """One Profiles Insights violation: an identifier left out, or a merge not made."""

    reason: str  # Segment's name (reasons.INSIGHTS_REASONS)
    collection: str
    type: str
    value: str
    profile_id: str | None  # the profile the event resolved to in that collection


class Resolution(NamedTuple):
    """What one event did. ``reason``: the ingestion drop code (``dropped``) or Insights'
    error (``unresolved``). ``changes``: what was (or, from ``plan``, would be) applied: the
    success log of merges and mappings, and the feed of Profiles Sync's graph tables."""

    message_id: str
    status: Status
    user: str | None = None
    account: str | None = None
    reason: str | None = None
    violations: tuple[Violation, ...] = ()
    changes: tuple[Change, ...] = ()
    rejected: int = 0  # context.externalIds elements not promoted (A-UE-7)


def event_time(event: Event) -> float | None:
    """The event's ``timestamp`` (else ``receivedAt``) in seconds since 1970: an identifier's
    first-seen time and the end of a limit's period."""
    for field in ("timestamp", "receivedAt"):
        parsed = parse_timestamp(event.get(field))
        if parsed is not None:
            return parsed.timestamp()
    return None


class _Plan:
    """One event's reads and pending changes."""

    def __init__(self, event: Event, source_id: str, at: float) -> None:
        self.source_id = source_id
        self.message_id = str(event.get("messageId") or "")
        self.event_type = str(event.get("type") or "")
        self.at = at
        self.changes: list[Change] = []
        self.violations: list[Violation] = []


class Resolver:
    """Resolves one space's events against its graph, in the order they are given."""

    def __init__(
        self,
        store: GraphStore,
        settings: IdentitySettings | None = None,
        *,
        ids: ProfileIds | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self._ids = ids or ProfileIds()
        self._clock = clock
        self.settings = settings or IdentitySettings()

    @property
    def settings(self) -> IdentitySettings:
        return self._settings

    @settings.setter
    def settings(self, settings: IdentitySettings) -> None:
        """New settings apply from the next event on; nothing stored is revisited (A-UE-19)."""
        self._settings = settings
        self._extractor = Extractor(settings)

    def resolve(self, event: Event, source_id: str) -> Resolution:
        """Resolve ``event`` and apply its changes, unless its ``messageId`` was applied."""
        message_id = str(event.get("messageId") or "")
        if message_id and self.store.applied(message_id):
            return Resolution(message_id, "duplicate")
        resolution = self.plan(event, source_id)
        if resolution.status != "dropped":
            self.store.apply(message_id, resolution.changes)
        return resolution

    def plan(
        self, event: Event, source_id: str, extraction: Extraction | None = None
    ) -> Resolution:
        """What ``event`` would do to the graph as it is now; reads only. ``extraction``: the
        event's, when the caller made it already with these settings (it is not made twice)."""
        message_id = str(event.get("messageId") or "")
        dropped = drop_reason(event)
        if dropped is not None:
            return Resolution(message_id, "dropped", reason=dropped)
        at = event_time(event)
        plan = _Plan(event, source_id, self._clock() if at is None else at)
        if extraction is None:
            extraction = self._extractor.extract(event)
        for blocked in extraction.blocked:
            plan.violations.append(Violation(reasons.ID_VALUE_BLOCKED, *blocked, None))
        users = [i for i in extraction.identifiers if i.collection == "users"]
        accounts = [i for i in extraction.identifiers if i.collection == "accounts"]
        user = self._resolve(plan, "users", users) if users else None
        account = self._resolve(plan, "accounts", accounts) if accounts else None
        if user is not None and account is not None and not self._linked(plan, user, account):
            plan.changes.append(LinkProfiles(user, account, plan.at, source_id, plan.message_id))
        violations = tuple(
            v
            if v.profile_id is not None
            else v._replace(profile_id=user if v.collection == "users" else account)
            for v in plan.violations
        )
        if user is None:
            return Resolution(
                message_id,
                "unresolved",
                account=account,
                reason=reasons.NO_MATCHING_IDENTIFIERS,
                violations=violations,
                changes=tuple(plan.changes),
                rejected=extraction.rejected,
            )
        return Resolution(
            message_id,
            "resolved",
            user=user,
            account=account,
            violations=violations,
            changes=tuple(plan.changes),
            rejected=extraction.rejected,
        )

    # --- one collection -----------------------------------------------------------------------

    def _resolve(self, plan: _Plan, collection: str, ids: list[Identifier]) -> str:
        store, settings = self.store, self._settings
        held_by = store.find_many(ids)
        found = {i: held_by.get(i) for i in ids}
        # Priority is per type; among one type's values, those the graph holds rank above new
        # ones, so a demotion drops a new value before one already on a profile.
        ids = sorted(ids, key=lambda i: (settings.rank(i.type), found[i] is None))
        rows: dict[tuple[str, tuple[str, ...] | None], list[StoredIdentifier]] = {}

        def held(profile: str, types: Collection[str] | None) -> list[StoredIdentifier]:
            key = (profile, None if types is None else tuple(sorted(types)))
            if key not in rows:
                rows[key] = store.identifiers(profile, types)
            return rows[key]

        demoted: list[tuple[Identifier, list[str]]] = []
        while True:
            matches = list(dict.fromkeys(p for i in ids if (p := found[i]) is not None))
            new = [i for i in ids if found[i] is None]
            over = self._over_limit(plan.at, matches, new, held)
            if not over or len(ids) == 1:
                break
            demoted.append((ids.pop(), over))

        for identifier, types in demoted:
            windowed = all(settings.by_type[t].window is not None for t in types)
            reason = (
                reasons.IDENTIFIER_VALUE_TIME_LIMIT_EXCEEDED
                if windowed
                else reasons.IDENTIFIER_VALUE_LIMIT_EXCEEDED
            )
            plan.violations.append(Violation(reason, *identifier, None))

        if not matches:
            profile = self._ids.new(plan.at)
            plan.changes.append(
                CreateProfile(profile, collection, plan.at, plan.source_id, plan.message_id)
            )
            mappings = 0
        elif len(matches) == 1 and not new:
            return matches[0]  # the common case: a known profile, nothing to add
        else:
            records = sorted((store.profile(p) for p in matches), key=lambda r: r.seq)
            survivor, others = records[0], records[1:]
            profile, merges, mappings = survivor.id, survivor.merges, survivor.mappings
            for other in others:
                if merges + other.merges + 1 > settings.max_merges:
                    refused = reasons.PROFILE_MERGE_LIMIT_EXCEEDED
                elif mappings + other.mappings > settings.max_mappings:
                    refused = reasons.IDENTIFIER_MAPPING_LIMIT_EXCEEDED
                else:
                    plan.changes.append(
                        MergeProfiles(
                            other.id,
                            profile,
                            collection,
                            plan.at,
                            plan.source_id,
                            plan.message_id,
                            plan.event_type,
                        )
                    )
                    merges += other.merges + 1
                    mappings += other.mappings
                    continue
                first = next(i for i in ids if found[i] == other.id)
                plan.violations.append(Violation(refused, *first, profile))

        for identifier in new:
            if mappings >= settings.max_mappings:
                plan.violations.append(
                    Violation(reasons.IDENTIFIER_MAPPING_LIMIT_EXCEEDED, *identifier, profile)
                )
                continue
            plan.changes.append(
                AddIdentifier(profile, *identifier, plan.at, plan.source_id, plan.message_id)
            )
            mappings += 1
        return profile

    def _over_limit(
        self,
        at: float,
        matches: list[str],
        new: list[Identifier],
        held: Callable[[str, Collection[str] | None], list[StoredIdentifier]],
    ) -> list[str]:
        """The types the final profile would hold more values of than their limits allow."""
        if not new and len(matches) <= 1:
            return []  # the event adds nothing to its one profile
        added: dict[str, set[str]] = {}
        for identifier in new:
            added.setdefault(identifier.type, set()).add(identifier.value)
        # With one profile only the event's new types can grow; a merge can grow any type.
        types = None if len(matches) > 1 else added.keys()
        on_profiles = [held(p, types) for p in matches]
        kinds = set(added).union(*({row.type for row in rows} for rows in on_profiles))
        over = []
        for kind in sorted(kinds, key=self._settings.rank):
            setting = self._settings.get(kind)
            if setting is None:
                continue  # no longer configured: no limit to keep
            window = setting.window
            since = float("-inf") if window is None else at - window
            each = [
                sum(1 for row in rows if row.type == kind and row.first_seen > since)
                for rows in on_profiles
            ]
            total = sum(each) + len(added.get(kind, ()))
            if total > setting.limit and total > max(each, default=0):
                over.append(kind)
        return over

    def _linked(self, plan: _Plan, user: str, account: str) -> bool:
        """Whether the two are linked once the event's merges are made: a profile this event
        creates has no links, and a merged one brings its links along."""
        made = {c.profile_id for c in plan.changes if isinstance(c, CreateProfile)}
        users, accounts = [user], [account]
        for change in plan.changes:
            if isinstance(change, MergeProfiles):
                (users if change.collection == "users" else accounts).append(change.from_id)
        return any(
            self.store.linked(u, a)
            for u in users
            if u not in made
            for a in accounts
            if a not in made
        )
