"""The identity graph as resolution sees it: the ``GraphStore`` protocol and its records.

Resolution reads the graph through a handful of lookups, each an index probe or one profile's
rows, and writes one event's changes in one ``apply`` call, which a SQL store runs as one
transaction together with the event's ``messageId``. So an event is applied once or not at all,
and a merge touches only the two profiles it joins (and the few merged into the one that goes),
whatever the size of the graph.

Every identifier value (collection, type, value) is on exactly one profile, a canonical one: a
merge moves the merged profile's identifiers to the profile it goes into and leaves the merged
profile pointing there (``canonical``), so a lookup by identifier is one probe and a lookup by a
merged-away ``use_…`` id is two.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import NamedTuple, Protocol


class StoredIdentifier(NamedTuple):
    """An identifier on a profile, with the event that first brought it to the graph."""

    type: str
    value: str
    first_seen: float  # the event's time, seconds since 1970
    source_id: str
    message_id: str


class ProfileRecord(NamedTuple):
    id: str
    collection: str
    seq: int  # creation order within the space: lower is older
    created_at: float
    merges: int  # profiles merged into this one, directly or through profiles merged into it
    mappings: int  # identifier values on it


# --- one event's changes, in the order they apply ----------------------------------------------


class CreateProfile(NamedTuple):
    profile_id: str
    collection: str
    at: float
    source_id: str
    message_id: str


class AddIdentifier(NamedTuple):
    profile_id: str
    collection: str
    type: str
    value: str
    at: float
    source_id: str
    message_id: str


class MergeProfiles(NamedTuple):
    """``from_id`` goes into ``into_id``: its identifiers, links and lineage move there."""

    from_id: str
    into_id: str
    collection: str
    at: float
    source_id: str
    message_id: str
    event_type: str


class LinkProfiles(NamedTuple):
    """A user profile belongs to an account (a group call)."""

    user_id: str
    account_id: str
    at: float
    source_id: str
    message_id: str


Change = CreateProfile | AddIdentifier | MergeProfiles | LinkProfiles


class GraphStore(Protocol):
    """One space's identity graph. Reads never see a half-applied event."""

    def applied(self, message_id: str) -> bool:
        """Whether an event with this ``messageId`` was applied (idempotence)."""
        ...

    def find(self, collection: str, type_: str, value: str) -> str | None:
        """The canonical profile holding this identifier value, if any."""
        ...

    def find_many(self, keys: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], str]:
        """``find`` for one event's (collection, type, value) keys at once (one query): the
        keys found, with their canonical profiles."""
        ...

    def profile(self, profile_id: str) -> ProfileRecord:
        """A canonical profile (KeyError when there is none)."""
        ...

    def identifiers(
        self, profile_id: str, types: Collection[str] | None = None
    ) -> list[StoredIdentifier]:
        """A canonical profile's identifiers, of ``types`` only when given, in the order they
        were added."""
        ...

    def linked(self, user_id: str, account_id: str) -> bool: ...

    def canonical(self, profile_id: str) -> str | None:
        """The profile a ``use_…`` id resolves to now (itself, or where it was merged), or
        None for an id the graph never had."""
        ...

    def links(self, profile_id: str) -> list[str]:
        """The canonical profiles linked to this one (accounts of a user, users of an
        account), in the order the links were made."""
        ...

    def apply(self, message_id: str, changes: Sequence[Change]) -> None:
        """Apply one event's changes and remember its ``messageId``, all or nothing."""
        ...
