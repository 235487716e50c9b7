"""A space's identity settings: which identifiers it promotes, their limits and priorities.

Segment's three Identity Resolution rules (spec/unify-engage.md §2.3) per identifier type —
blocked values, a limit on values per profile (optionally per period) and a priority — plus the
system caps of §2.6. The defaults are Segment's: the 11 default identifiers, ``user_id`` limited
to 1 value and every other type to 5, ``user_id`` ranked 1, ``email`` 2 and every other type
after them in alphabetical order, no blocked values (Segment's suggested ones are opt-in:
``SUGGESTED_BLOCKED``), 100 merges and 1,000 identifier values per profile.

Settings are values: resolving an event reads the settings it is given, and nothing stored is
re-evaluated when they change, so a change applies to new events only (A19).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cached_property
from typing import Final, Literal

import msgspec

from headwater.errors import InvalidError

Collection = Literal["users", "accounts"]
Period = Literal["ever", "weekly", "monthly", "annually"]

DAY: Final = 86_400.0
# Segment names the periods but not their lengths; a week is 7 days, a month 30, a year 365.
PERIOD_SECONDS: Final[dict[str, float | None]] = {
    "ever": None,
    "weekly": 7 * DAY,
    "monthly": 30 * DAY,
    "annually": 365 * DAY,
}

# The 11 default identifiers of spaces created after October 2020 (§2.1), in the docs' order.
DEFAULT_TYPES: Final = (
    "user_id",
    "email",
    "android.id",
    "android.idfa",
    "android.push_token",
    "anonymous_id",
    "ga_client_id",
    "group_id",
    "ios.id",
    "ios.idfa",
    "ios.push_token",
)
# Built in but not on by default: the pre-2020 settings page's two extra identifiers (§21 #1).
OPTIONAL_TYPES: Final = ("braze_id", "cross_domain_id")
BUILT_IN_TYPES: Final = frozenset(DEFAULT_TYPES + OPTIONAL_TYPES)
ACCOUNT_TYPES: Final = frozenset({"group_id"})

DEFAULT_LIMIT: Final = 5
MAX_MERGES: Final = 100
MAX_MAPPINGS: Final = 1_000

# Lowercase (context.externalIds types must be), and never ":" (the Profile API's
# ``<type>:<value>`` path segment splits on the first one).
_TYPE_NAME = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,99}")


class BlockedValue(msgspec.Struct, frozen=True, kw_only=True):
    """A value never promoted to an identifier: an exact match, or a regular expression searched
    for in the value (Segment's suggested pattern carries its own anchors)."""

    value: str
    regex: bool = False


# Segment's suggested values to block (§2.3.1), to opt into per identifier.
SUGGESTED_BLOCKED: Final = (
    BlockedValue(value="^[0-]*$", regex=True),
    BlockedValue(value="-1"),
    BlockedValue(value="null"),
    BlockedValue(value="anonymous"),
)


class IdentifierSetting(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """One identifier type of a space.

    ``limit`` values of the type on one profile, counted over all time (``period: ever``) or
    over the values first seen in the last week, month or year. ``priority``: 1 ranks first;
    types without one rank after every ranked type, alphabetically. ``key``: for a custom
    identifier, the trait or property key read from ``traits``, ``context.traits`` and
    ``properties`` (camelCase or snake_case); the type's own name when not given. Every
    configured type is also read from ``context.externalIds`` elements of its collection.
    """

    type: str
    limit: int = DEFAULT_LIMIT
    period: Period = "ever"
    priority: int | None = None
    blocked: tuple[BlockedValue, ...] = ()
    key: str | None = None
    collection: Collection = "users"

    def __post_init__(self) -> None:
        if not _TYPE_NAME.fullmatch(self.type):
            raise InvalidError(
                f"identifier type {self.type!r}: lowercase letters, digits, '_', '.' and '-' "
                "only, at most 100 characters"
            )
        if self.limit < 1:
            raise InvalidError(f"identifier {self.type}: limit must be 1 or more")
        if self.priority is not None and self.priority < 1:
            raise InvalidError(f"identifier {self.type}: priority must be 1 or more")
        if self.key is not None and (self.type in BUILT_IN_TYPES or not self.key):
            raise InvalidError(f"identifier {self.type}: a key is for custom identifiers only")
        if self.type in BUILT_IN_TYPES:
            own = "accounts" if self.type in ACCOUNT_TYPES else "users"
            if self.collection != own:
                raise InvalidError(f"identifier {self.type} belongs to the {own} collection")
        for blocked in self.blocked:
            if blocked.regex:
                try:
                    re.compile(blocked.value)
                except re.error as error:
                    raise InvalidError(
                        f"identifier {self.type}: blocked pattern {blocked.value!r}: {error}"
                    ) from None

    @property
    def default(self) -> bool:
        """Segment's *Default* label."""
        return self.type in DEFAULT_TYPES

    @property
    def custom(self) -> bool:
        return self.type not in BUILT_IN_TYPES

    @property
    def window(self) -> float | None:
        """The period in seconds; None for ``ever``."""
        return PERIOD_SECONDS[self.period]

    @property
    def merge_protected(self) -> bool:
        """One value ever: two profiles holding different values never merge (§2.5)."""
        return self.limit == 1 and self.period == "ever"

    @cached_property
    def _exact_blocked(self) -> frozenset[str]:
        return frozenset(b.value for b in self.blocked if not b.regex)

    @cached_property
    def _patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(re.compile(b.value) for b in self.blocked if b.regex)

    def is_blocked(self, value: str) -> bool:
        return value in self._exact_blocked or any(p.search(value) for p in self._patterns)


def _defaults() -> tuple[IdentifierSetting, ...]:
    ranks = {"user_id": 1, "email": 2}
    return tuple(
        IdentifierSetting(
            type=name,
            limit=1 if name == "user_id" else DEFAULT_LIMIT,
            priority=ranks.get(name),
            collection="accounts" if name in ACCOUNT_TYPES else "users",
        )
        for name in DEFAULT_TYPES
    )


DEFAULT_IDENTIFIERS: Final = _defaults()


class IdentitySettings(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """A space's identity settings; ``IdentitySettings()`` is Segment's default space."""

    identifiers: tuple[IdentifierSetting, ...] = DEFAULT_IDENTIFIERS
    max_merges: int = MAX_MERGES
    max_mappings: int = MAX_MAPPINGS

    def __post_init__(self) -> None:
        seen: set[str] = set()
        ranks: dict[int, str] = {}
        for setting in self.identifiers:
            if setting.type in seen:
                raise InvalidError(f"identifier {setting.type} is configured twice")
            seen.add(setting.type)
            if setting.priority is not None:
                other = ranks.setdefault(setting.priority, setting.type)
                if other != setting.type:
                    raise InvalidError(
                        f"identifiers {other} and {setting.type} share priority {setting.priority}"
                    )
        if self.max_merges < 0 or self.max_mappings < 1:
            raise InvalidError("max_merges must be 0 or more and max_mappings 1 or more")

    @cached_property
    def by_type(self) -> dict[str, IdentifierSetting]:
        return {s.type: s for s in self.identifiers}

    def get(self, type_: str) -> IdentifierSetting | None:
        return self.by_type.get(type_)

    @cached_property
    def _ranks(self) -> dict[str, tuple[int, int, str]]:
        return {
            s.type: (0, s.priority, s.type) if s.priority is not None else (1, 0, s.type)
            for s in self.identifiers
        }

    def rank(self, type_: str) -> tuple[int, int, str]:
        """Sort key: explicitly ranked types by priority, then the others alphabetically, so
        the ranking reshuffles by itself when a new unranked type appears (§2.3.3)."""
        return self._ranks.get(type_) or (2, 0, type_)

    def priority_order(self, types: Iterable[str]) -> list[str]:
        """The Identity Resolution table's order of ``types`` (A17)."""
        return sorted(set(types), key=self.rank)

    def with_identifier(self, setting: IdentifierSetting) -> IdentitySettings:
        """These settings with ``setting`` added, or replacing the type's current one."""
        kept = tuple(s for s in self.identifiers if s.type != setting.type)
        return msgspec.structs.replace(self, identifiers=(*kept, setting))
