"""``MemoryGraph``: the identity graph in dictionaries, for tests and as the reference a SQL
store is compared with (same events, same graph).

Its structures are the tables and indexes a SQL store needs: ``_index`` is the unique index on
(collection, type, value) → profile; a profile's identifiers are its rows by profile id; the
merged-away profiles of a canonical one are the rows whose ``canonical`` column names it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from headwater.unify.graph import (
    AddIdentifier,
    Change,
    CreateProfile,
    LinkProfiles,
    MergeProfiles,
    ProfileRecord,
    StoredIdentifier,
)


@dataclass
class _Profile:
    id: str
    collection: str
    seq: int
    created_at: float
    source_id: str
    message_id: str
    merges: int = 0
    canonical: str | None = None  # None while the profile is canonical
    identifiers: dict[tuple[str, str], StoredIdentifier] = field(default_factory=dict)
    merged: list[str] = field(default_factory=list)  # profiles whose canonical is this one
    links: dict[str, None] = field(default_factory=dict)


class MemoryGraph:
    def __init__(self) -> None:
        self._index: dict[tuple[str, str, str], str] = {}
        self._profiles: dict[str, _Profile] = {}
        self._applied: set[str] = set()
        self._seq = 0
        self.merges: list[MergeProfiles] = []  # the merge history, oldest first

    # --- GraphStore ---------------------------------------------------------------------------

    def applied(self, message_id: str) -> bool:
        return message_id in self._applied

    def find(self, collection: str, type_: str, value: str) -> str | None:
        return self._index.get((collection, type_, value))

    def find_many(self, keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
        index = self._index
        return {key: index[key] for key in keys if key in index}

    def profile(self, profile_id: str) -> ProfileRecord:
        p = self._live(profile_id)
        return ProfileRecord(p.id, p.collection, p.seq, p.created_at, p.merges, len(p.identifiers))

    def identifiers(
        self, profile_id: str, types: Collection[str] | None = None
    ) -> list[StoredIdentifier]:
        rows = self._live(profile_id).identifiers.values()
        if types is None:
            return list(rows)
        return [row for row in rows if row.type in types]

    def linked(self, user_id: str, account_id: str) -> bool:
        return account_id in self._live(user_id).links

    def canonical(self, profile_id: str) -> str | None:
        p = self._profiles.get(profile_id)
        if p is None:
            return None
        return p.canonical or p.id

    def links(self, profile_id: str) -> list[str]:
        return list(self._live(profile_id).links)

    def apply(self, message_id: str, changes: Sequence[Change]) -> None:
        self._check(changes)  # all or nothing: refuse before changing anything
        for change in changes:
            if isinstance(change, CreateProfile):
                self._create(change)
            elif isinstance(change, AddIdentifier):
                self._add(change)
            elif isinstance(change, MergeProfiles):
                self._merge(change)
            else:
                self._link(change)
        if message_id:
            self._applied.add(message_id)

    # --- writes -------------------------------------------------------------------------------

    def _check(self, changes: Sequence[Change]) -> None:
        """Raise ValueError unless every change applies after the ones before it (touching
        only the profiles the changes name)."""
        created: dict[str, str] = {}
        gone: set[str] = set()
        taken: set[tuple[str, str, str]] = set()

        def collection(profile_id: str) -> str | None:
            if profile_id in gone:
                return None
            if profile_id in created:
                return created[profile_id]
            p = self._profiles.get(profile_id)
            return p.collection if p is not None and p.canonical is None else None

        for change in changes:
            if isinstance(change, CreateProfile):
                if change.profile_id in self._profiles or change.profile_id in created:
                    raise ValueError(f"profile {change.profile_id} exists")
                created[change.profile_id] = change.collection
            elif isinstance(change, AddIdentifier):
                key = (change.collection, change.type, change.value)
                if key in self._index or key in taken:
                    raise ValueError(f"{key} is on a profile already")
                if collection(change.profile_id) != change.collection:
                    raise ValueError(f"no profile {change.profile_id} of {change.collection}")
                taken.add(key)
            elif isinstance(change, MergeProfiles):
                kind = collection(change.from_id)
                if kind is None or kind != collection(change.into_id):
                    raise ValueError(f"cannot merge {change.from_id} into {change.into_id}")
                if change.from_id == change.into_id:
                    raise ValueError(f"cannot merge {change.from_id} into itself")
                gone.add(change.from_id)
            elif (collection(change.user_id), collection(change.account_id)) != (
                "users",
                "accounts",
            ):
                raise ValueError(f"cannot link {change.user_id} to {change.account_id}")

    def _live(self, profile_id: str) -> _Profile:
        p = self._profiles[profile_id]
        if p.canonical is not None:
            raise KeyError(f"{profile_id} was merged into {p.canonical}")
        return p

    def _create(self, change: CreateProfile) -> None:
        if change.profile_id in self._profiles:
            raise ValueError(f"profile {change.profile_id} exists")
        self._seq += 1
        self._profiles[change.profile_id] = _Profile(
            change.profile_id,
            change.collection,
            self._seq,
            change.at,
            change.source_id,
            change.message_id,
        )

    def _add(self, change: AddIdentifier) -> None:
        key = (change.collection, change.type, change.value)
        if key in self._index:
            raise ValueError(f"{key} is on {self._index[key]} already")
        p = self._live(change.profile_id)
        if p.collection != change.collection:
            raise ValueError(f"{key} does not belong on a profile of {p.collection}")
        self._index[key] = p.id
        p.identifiers[(change.type, change.value)] = StoredIdentifier(
            change.type, change.value, change.at, change.source_id, change.message_id
        )

    def _merge(self, change: MergeProfiles) -> None:
        gone, into = self._live(change.from_id), self._live(change.into_id)
        if gone is into or gone.collection != into.collection:
            raise ValueError(f"cannot merge {gone.id} into {into.id}")
        for (type_, value), row in gone.identifiers.items():
            self._index[(gone.collection, type_, value)] = into.id
            into.identifiers[(type_, value)] = row
        gone.identifiers = {}
        into.merges += gone.merges + 1
        # Lineage stays one hop deep: what pointed at the merged profile points at the
        # survivor (Profiles Sync's recursive id_graph_updates rows).
        for merged in gone.merged:
            self._profiles[merged].canonical = into.id
        into.merged.extend([*gone.merged, gone.id])
        gone.merged = []
        gone.canonical = into.id
        for other_id in gone.links:
            other = self._profiles[other_id]
            del other.links[gone.id]
            other.links[into.id] = None
            into.links[other_id] = None
        gone.links = {}
        self.merges.append(change)

    def _link(self, change: LinkProfiles) -> None:
        user, account = self._live(change.user_id), self._live(change.account_id)
        user.links[account.id] = None
        account.links[user.id] = None

    # --- views for tests ----------------------------------------------------------------------

    def profiles(self, collection: str = "users") -> list[str]:
        """Canonical profiles of a collection, oldest first."""
        live = [p for p in self._profiles.values() if p.canonical is None]
        return [p.id for p in sorted(live, key=lambda p: p.seq) if p.collection == collection]

    def identities(self, profile_id: str) -> dict[str, list[str]]:
        """A profile's identifiers as ``{type: [values in the order added]}``."""
        found: dict[str, list[str]] = {}
        for row in self._live(profile_id).identifiers.values():
            found.setdefault(row.type, []).append(row.value)
        return found

    def snapshot(self) -> dict[str, Any]:
        """Everything the graph holds, for comparing two graphs."""
        return {
            "applied": sorted(self._applied),
            "profiles": {
                p.id: (
                    p.collection,
                    p.seq,
                    p.created_at,
                    p.merges,
                    p.canonical,
                    sorted(p.identifiers.values()),
                    sorted(p.merged),
                    sorted(p.links),
                )
                for p in self._profiles.values()
            },
            "merges": list(self.merges),
        }

    def shape(self) -> frozenset[tuple[str, frozenset[tuple[str, str]], int]]:
        """The graph without its profile ids: each canonical profile's collection, identifier
        values and merge count, so graphs built with different random ids compare equal."""
        return frozenset(
            (p.collection, frozenset(p.identifiers), p.merges)
            for p in self._profiles.values()
            if p.canonical is None
        )
