"""What a deletion asks of each store: the subject, and the contract every store's eraser keeps.

A regulation that deletes (``SUPPRESS_WITH_DELETE``, ``DELETE_ONLY``, ``DELETE_INTERNAL``, …)
becomes one ``Erasure``. Before any store is touched, the runner asks every ``Expander`` (the
identity graph) for the identifiers the subject's profiles hold, and stores the widened
``Subjects`` with the regulation, so a crash after the graph itself was erased still knows
what to delete elsewhere. Then it calls each ``Eraser`` whose ``Target.kind`` the regulation
type reaches, and records each one's outcome: that is the regulation's ``streamStatus``.

An eraser lives next to the store it cleans (the archive's beside ``store/archive.py``, a
warehouse's beside its loader) and knows nothing of regulations; this module is the whole
contract between them, so it sits in the lowest layer and imports nothing of Headwater's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

# What a regulation type reaches (spec/protocols-privacy-api.md §10.1):
#   "archive"     the archive's hour files (DELETE_ARCHIVE_ONLY reaches only these)
#   "internal"    every other store Headwater keeps: the log and its dedup state, the state
#                 database (debugger, samples, blocked events, queues), profiles and Engage
#   "warehouse"   connected warehouses and data lakes (DML deletes, rewritten files)
#   "destination" destinations that take deletion requests (forwarded)
TargetKind = Literal["archive", "internal", "warehouse", "destination"]

KINDS_OF: Mapping[str, frozenset[TargetKind]] = {
    "DELETE_ARCHIVE_ONLY": frozenset({"archive"}),
    "DELETE_INTERNAL": frozenset({"archive", "internal"}),
    "SUPPRESS_WITH_DELETE_INTERNAL": frozenset({"archive", "internal"}),
    "DELETE_ONLY": frozenset({"archive", "internal", "warehouse", "destination"}),
    "SUPPRESS_WITH_DELETE": frozenset({"archive", "internal", "warehouse", "destination"}),
    "SUPPRESS_ONLY": frozenset(),
    "UNSUPPRESS": frozenset(),
}


@dataclass(frozen=True)
class Subjects:
    """Every identifier whose events and records are to go.

    ``user_ids`` and ``anonymous_ids`` come from the request and from the subject's profiles
    (``Expander``); ``profile_ids`` are the profiles' ``use_…`` ids; ``external_ids`` are
    every other identifier on those profiles, as ``(type, value)``; ``object_ids`` are a
    cloud source's objects (``subjectType: OBJECT_ID``).
    """

    user_ids: frozenset[str] = frozenset()
    anonymous_ids: frozenset[str] = frozenset()
    profile_ids: frozenset[str] = frozenset()
    external_ids: frozenset[tuple[str, str]] = frozenset()
    object_ids: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(
            self.user_ids
            or self.anonymous_ids
            or self.profile_ids
            or self.external_ids
            or self.object_ids
        )

    def union(self, other: Subjects) -> Subjects:
        return Subjects(
            user_ids=self.user_ids | other.user_ids,
            anonymous_ids=self.anonymous_ids | other.anonymous_ids,
            profile_ids=self.profile_ids | other.profile_ids,
            external_ids=self.external_ids | other.external_ids,
            object_ids=self.object_ids | other.object_ids,
        )

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether a Spec message (camelCase, as the log and archive keep it) is the subject's.

        An event is the subject's when its ``userId`` is one of the user ids, its
        ``anonymousId`` one of the anonymous ids, or (an alias) its ``previousId`` either;
        a cloud source's object by its ``id`` or ``objectId``.
        """
        ids = self.user_ids
        anonymous = self.anonymous_ids
        user_id = event.get("userId")
        if isinstance(user_id, str) and user_id in ids:
            return True
        anonymous_id = event.get("anonymousId")
        if isinstance(anonymous_id, str) and anonymous_id in anonymous:
            return True
        previous = event.get("previousId")
        if isinstance(previous, str) and (previous in ids or previous in anonymous):
            return True
        if self.object_ids:
            for key in ("id", "objectId"):
                value = event.get(key)
                if isinstance(value, str) and value in self.object_ids:
                    return True
        return False

    def to_json(self) -> dict[str, list[Any]]:
        return {
            "user_ids": sorted(self.user_ids),
            "anonymous_ids": sorted(self.anonymous_ids),
            "profile_ids": sorted(self.profile_ids),
            "external_ids": [list(pair) for pair in sorted(self.external_ids)],
            "object_ids": sorted(self.object_ids),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Subjects:
        return cls(
            user_ids=frozenset(data.get("user_ids", ())),
            anonymous_ids=frozenset(data.get("anonymous_ids", ())),
            profile_ids=frozenset(data.get("profile_ids", ())),
            external_ids=frozenset((str(t), str(v)) for t, v in data.get("external_ids", ())),
            object_ids=frozenset(data.get("object_ids", ())),
        )


@dataclass(frozen=True)
class Erasure:
    """One deletion as the stores see it.

    ``source_ids`` is None for a workspace-wide regulation, else the sources it covers (a
    store that cannot tell sources apart, such as a profile, is erased only when None).
    ``created_at`` is when the regulation was made (epoch seconds): events received after it
    are not the regulation's business (§10.3: data sent after an ``UNSUPPRESS`` is not cleaned
    by an earlier deletion), though an eraser may delete them too when that is simpler.
    """

    regulation_id: str
    workspace_id: str
    subjects: Subjects
    created_at: float
    source_ids: frozenset[str] | None = None


@dataclass(frozen=True)
class Target:
    """Where an eraser deletes: its kind and, for warehouses and destinations, the instance."""

    kind: TargetKind
    id: str  # a stable name for internal stores ("archive", "log", "profiles"), else the id
    name: str = ""


@dataclass(frozen=True)
class Progress:
    """An eraser that cannot finish yet (the log's segments have not expired, a destination's
    job is queued): the runner calls it again after ``retry_after`` seconds."""

    detail: str
    retry_after: float = 60.0


class NotSupported(Exception):
    """Raised by an eraser whose store cannot take deletions (a destination with no deletion
    API): the step fails at once, without retries. As in Segment, such a destination makes
    the regulation ``FAILED`` though every other step finished (§10.2): the user must ask
    that vendor separately, and the step's error says so."""


class Eraser(Protocol):
    """Deletes one subject from one store. ``erase`` must be idempotent and safe to repeat
    after a crash at any point: the runner repeats it until it returns None (done), and a
    raised exception is a failure it retries with back-off, then records as ``FAILED``."""

    @property
    def target(self) -> Target: ...

    def erase(self, erasure: Erasure) -> Progress | None: ...


class Expander(Protocol):
    """Widens a subject to every identifier its profiles hold (the identity graph)."""

    def expand(self, erasure: Erasure) -> Subjects: ...
