"""A space's identity settings: which identifiers it promotes, their limits and priorities.

Segment's three Identity Resolution rules (spec/unify-engage.md §2.3) per identifier type —
blocked values, a limit on values per profile (optionally per period) and a priority — plus the
system caps of §2.6. The defaults are Segment's: the 11 default identifiers, ``user_id`` limited
to 1 value and every other type to 5, ``user_id`` ranked 1, ``email`` 2 and every other type
after them in alphabetical order, no blocked values (Segment's suggested ones are opt-in:
``SUGGESTED_BLOCKED``), 100 merges and 1,000 identifier values per profile.

Settings are values: resolving an event reads the settings it is given, and nothing stored is
re-evaluated when they change, so a change applies to new events only (A-UE-19).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any, Final, Literal, get_args

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
# Bounds of what a space may configure, to keep a stored setting small and its numbers in
# range (a limit above MAX_MAPPINGS is allowed but never reached).
MAX_LIMIT: Final = 100_000
MAX_PRIORITY: Final = 100_000
MAX_IDENTIFIERS: Final = 1_000
MAX_BLOCKED: Final = 1_000
MAX_VALUE_LENGTH: Final = 1_000
MAX_KEY_LENGTH: Final = 200
PERIODS: Final = get_args(Period)

# Lowercase (context.externalIds types must be), and never ":" (the Profile API's
# ``<type>:<value>`` path segment splits on the first one).
_TYPE_NAME = re.compile(r"[a-z0-9][a-z0-9_.\-]{0,99}")


def _check_text(text: str, field: str, longest: int) -> None:
    if len(text) > longest:
        raise InvalidError(f"at most {longest} characters", field)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidError("not valid Unicode (a lone surrogate?)", field) from None
    if "\x00" in text:
        raise InvalidError("must not contain NUL", field)


class BlockedValue(msgspec.Struct, frozen=True, kw_only=True):
    """A value never promoted to an identifier: an exact match, or a regular expression searched
    for in the value (Segment's suggested pattern carries its own anchors)."""

    value: str
    regex: bool = False

    def __post_init__(self) -> None:
        _check_text(self.value, "value", MAX_VALUE_LENGTH)
        if self.regex:
            try:
                re.compile(self.value)
            except (re.error, RecursionError, OverflowError) as error:
                raise InvalidError(
                    f"blocked pattern {self.value!r}: not a regular expression: {error}", "value"
                ) from None


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
        # Each refusal names the field (``InvalidError.field``), for the file and the API to
        # name the entry: ``identifiers[2].limit``.
        if not _TYPE_NAME.fullmatch(self.type):
            raise InvalidError(
                f"identifier type {self.type!r}: lowercase letters, digits, '_', '.' and '-' "
                "only, at most 100 characters",
                "type",
            )
        if not 1 <= self.limit <= MAX_LIMIT:
            raise InvalidError(
                f"identifier {self.type}: limit must be 1 or more, at most {MAX_LIMIT}", "limit"
            )
        if self.priority is not None and not 1 <= self.priority <= MAX_PRIORITY:
            raise InvalidError(
                f"identifier {self.type}: priority must be 1 or more, at most {MAX_PRIORITY}",
                "priority",
            )
        if self.key is not None:
            if self.type in BUILT_IN_TYPES or not self.key:
                raise InvalidError(
                    f"identifier {self.type}: a key is for custom identifiers only", "key"
                )
            _check_text(self.key, "key", MAX_KEY_LENGTH)
        if self.type in BUILT_IN_TYPES:
            own = "accounts" if self.type in ACCOUNT_TYPES else "users"
            if self.collection != own:
                raise InvalidError(
                    f"identifier {self.type} belongs to the {own} collection", "collection"
                )
        if len(self.blocked) > MAX_BLOCKED:
            raise InvalidError(
                f"identifier {self.type}: at most {MAX_BLOCKED} blocked values", "blocked"
            )
        for i, blocked in enumerate(self.blocked):
            if blocked.regex:  # checked by BlockedValue, unless built without its checks
                try:
                    re.compile(blocked.value)
                except (re.error, RecursionError, OverflowError) as error:
                    raise InvalidError(
                        f"identifier {self.type}: blocked pattern {blocked.value!r}: {error}",
                        f"blocked[{i}].value",
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
        if value in self._exact_blocked:
            return True
        patterns = self._patterns  # mostly none: no generator to start for every value
        return bool(patterns) and any(p.search(value) for p in patterns)


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
        if len(self.identifiers) > MAX_IDENTIFIERS:
            raise InvalidError(f"at most {MAX_IDENTIFIERS} identifiers", "identifiers")
        for i, setting in enumerate(self.identifiers):
            if setting.type in seen:
                raise InvalidError(
                    f"identifier {setting.type} is configured twice", f"identifiers[{i}].type"
                )
            seen.add(setting.type)
            if setting.priority is not None:
                other = ranks.setdefault(setting.priority, setting.type)
                if other != setting.type:
                    raise InvalidError(
                        f"identifiers {other} and {setting.type} share priority {setting.priority}",
                        f"identifiers[{i}].priority",
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
        """The Identity Resolution table's order of ``types`` (A-UE-17)."""
        return sorted(set(types), key=self.rank)

    def with_identifier(self, setting: IdentifierSetting) -> IdentitySettings:
        """These settings with ``setting`` added, or replacing the type's current one."""
        kept = tuple(s for s in self.identifiers if s.type != setting.type)
        return msgspec.structs.replace(self, identifiers=(*kept, setting))


# --- the settings as a file or a request gives them ---------------------------------------------


def preset_limit(type_: str) -> int:
    """The limit Segment gives a type that is added without one: 1 for ``user_id``, else 5."""
    return 1 if type_ == "user_id" else DEFAULT_LIMIT


def preset_collection(type_: str) -> Collection:
    return "accounts" if type_ in ACCOUNT_TYPES else "users"


def identifier_of(entry: Mapping[str, Any]) -> IdentifierSetting:
    """One identifier from plain values (``type``, ``limit``, ``period``, ``priority``,
    ``blocked`` as ``[{value, regex}]``, ``key``, ``collection``), already of the right types;
    what is left out (or None) takes Segment's preset: the type's limit (``preset_limit``),
    ``ever``, no priority (ranked after every ranked type), nothing blocked, the type's own
    collection."""
    type_ = entry["type"]
    blocked = []
    for i, item in enumerate(entry.get("blocked") or ()):
        try:
            blocked.append(BlockedValue(value=item["value"], regex=bool(item.get("regex"))))
        except InvalidError as exc:
            raise InvalidError(exc.message, f"blocked[{i}].{exc.field}") from None

    def given(name: str, preset: Any) -> Any:
        value = entry.get(name)
        return preset if value is None else value

    return IdentifierSetting(
        type=type_,
        limit=given("limit", preset_limit(type_)),
        period=given("period", "ever"),
        priority=entry.get("priority"),
        blocked=tuple(blocked),
        key=entry.get("key"),
        collection=given("collection", preset_collection(type_)),
    )


def settings_of(entries: Sequence[Mapping[str, Any]]) -> IdentitySettings:
    """A space's settings from its complete list of identifiers (``identifier_of`` each); an
    ``InvalidError`` names the entry and its field: ``identifiers[2].limit``."""
    if not entries:
        raise InvalidError(
            "a space needs at least one identifier (leave the list out for Segment's 11 defaults)",
            "identifiers",
        )
    identifiers = []
    for i, entry in enumerate(entries):
        try:
            identifiers.append(identifier_of(entry))
        except InvalidError as exc:
            field = f"identifiers[{i}]" + (f".{exc.field}" if exc.field else "")
            raise InvalidError(exc.message, field) from None
    return IdentitySettings(identifiers=tuple(identifiers))


def entry_of(setting: IdentifierSetting, *, complete: bool = False) -> dict[str, Any]:
    """``setting`` as plain values, ``identifier_of``'s inverse: only what differs from the
    preset, or every field (``complete``)."""
    entry: dict[str, Any] = {"type": setting.type}
    fields: list[tuple[str, Any, bool]] = [
        ("limit", setting.limit, setting.limit != preset_limit(setting.type)),
        ("period", setting.period, setting.period != "ever"),
        ("priority", setting.priority, setting.priority is not None),
        (
            "blocked",
            [{"value": b.value, "regex": b.regex} for b in setting.blocked],
            bool(setting.blocked),
        ),
        ("key", setting.key, setting.key is not None),
        ("collection", setting.collection, setting.collection != preset_collection(setting.type)),
    ]
    for name, value, differs in fields:
        if complete or differs:
            entry[name] = value
    if not complete and entry.get("blocked"):
        entry["blocked"] = [
            {"value": b["value"], "regex": True} if b["regex"] else {"value": b["value"]}
            for b in entry["blocked"]
        ]
    return entry


# --- stored ------------------------------------------------------------------------------------


def encode(settings: IdentitySettings) -> dict[str, Any] | None:
    """The stored form: None for Segment's defaults (never set, or set back to them), else
    every field of every identifier."""
    if settings == IdentitySettings():
        return None
    data: dict[str, Any] = msgspec.to_builtins(settings)
    return data


def decode(data: object) -> IdentitySettings:
    """``encode``'s inverse."""
    if data is None:
        return IdentitySettings()
    return msgspec.convert(data, IdentitySettings)
