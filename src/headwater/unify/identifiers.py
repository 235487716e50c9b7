"""The identifiers an event carries, as a space's settings read them (§2.1, §2.2).

Built-in types come from fixed places: ``user_id`` from ``userId``, ``anonymous_id`` from
``anonymousId``, ``email`` from ``traits``, ``context.traits`` and ``properties``, the device
types from ``context.device`` (``id``, ``advertisingId`` when ``adTrackingEnabled`` is true,
``token``) by its ``type``, ``ga_client_id`` from the Google Analytics integration options,
``group_id`` from a group call's ``groupId``. A custom type is read from its key (camelCase or
snake_case) in ``traits``, ``context.traits`` and ``properties``. Every configured type is also
read from ``context.externalIds`` elements that carry all four of ``id``, ``type`` (lowercase,
the type's name), ``collection`` and ``encoding: "none"``; an element lacking one is rejected
(A-UE-7).

A group call's ``traits`` describe the account, so they are read for account identifiers and
never for the user's. Values are strings, or numbers spelled as JavaScript spells them; an
empty string, ``null``, a boolean, an object or a list is no identifier. Values are kept
exactly as sent: Segment documents no case folding or trimming, and folding would join
profiles Segment keeps apart.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

from headwater.unify.settings import IdentifierSetting, IdentitySettings

Event = dict[str, Any]


class Identifier(NamedTuple):
    collection: str  # "users" or "accounts"
    type: str
    value: str


class Extraction(NamedTuple):
    """An event's identifiers in priority order (highest first; a type's values in the order
    of the places they were read from), the values its blocked lists stopped (each an
    ``ID value blocked`` violation) and how many ``context.externalIds`` elements were
    rejected."""

    identifiers: tuple[Identifier, ...]
    blocked: tuple[Identifier, ...]
    rejected: int


def text(value: object) -> str | None:
    """An identifier's value as a string; None when the value cannot be one."""
    kind = type(value)
    if kind is str:
        return value or None  # type: ignore[return-value]
    if kind is int:  # not bool: type(True) is bool
        return str(value)
    if kind is float:
        number: float = value  # type: ignore[assignment]
        if number != number or number in (float("inf"), float("-inf")):
            return None
        if number.is_integer() and abs(number) < 1e21:
            return str(int(number))
        return repr(number)
    return None


def _dig(obj: object, *path: str) -> object:
    for key in path:
        if type(obj) is not dict:
            return None
        obj = obj.get(key)
    return obj


_EMPTY: dict[str, Any] = {}


def _object(value: object) -> dict[str, Any]:
    return value if type(value) is dict else _EMPTY


class View:
    """The parts of one event the readers look at, found once."""

    __slots__ = ("context", "device", "event", "group", "kind", "properties", "traits", "user")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.group = event.get("type") == "group"
        self.context = context = _object(event.get("context"))
        self.device = device = _object(context.get("device"))
        kind = device.get("type")
        self.kind = kind.lower() if type(kind) is str else None
        self.traits = _object(event.get("traits"))
        self.properties = _object(event.get("properties"))
        # The user's traits and properties, in the order read; a group call's own traits are
        # the account's.
        self.user = (
            self.traits if not self.group else _EMPTY,
            _object(context.get("traits")),
            self.properties,
        )


Reader = Callable[[View], list[object]]


def _at(*path: str) -> Reader:
    first, rest = path[0], path[1:]
    return lambda v: [_dig(v.event.get(first), *rest)]


def _device_field(kind: str, field: str, *, ad_tracking: bool = False) -> Reader:
    def read(v: View) -> list[object]:
        if v.kind != kind or (ad_tracking and v.device.get("adTrackingEnabled") is not True):
            return []
        return [v.device.get(field)]

    return read


def _user_keys(*keys: str) -> Reader:
    """``keys`` in the user's ``traits``, ``context.traits`` and ``properties``."""
    return lambda v: [place.get(key) for place in v.user for key in keys]


GA = "Google Analytics"
BUILT_IN: dict[str, Reader] = {
    "user_id": lambda v: [v.event.get("userId")],
    "email": _user_keys("email"),
    "android.id": _device_field("android", "id"),
    "android.idfa": _device_field("android", "advertisingId", ad_tracking=True),
    "android.push_token": _device_field("android", "token"),
    "anonymous_id": lambda v: [v.event.get("anonymousId")],
    "ga_client_id": lambda v: [
        _dig(v.context, "integrations", GA, "clientId"),
        _dig(v.event.get("integrations"), GA, "clientId"),
    ],
    "group_id": lambda v: [v.event.get("groupId")] if v.group else [],
    "ios.id": _device_field("ios", "id"),
    "ios.idfa": _device_field("ios", "advertisingId", ad_tracking=True),
    "ios.push_token": _device_field("ios", "token"),
    "braze_id": _at("context", "Braze", "braze_id"),
    "cross_domain_id": _at("context", "traits", "crossDomainId"),
}

_UPPER = re.compile(r"(?<=[a-z0-9])([A-Z])")
_UNDERSCORE = re.compile(r"_([a-z0-9])")


def key_variants(key: str) -> tuple[str, ...]:
    """The key as given, then its snake_case or camelCase twin (``phone_number`` and
    ``phoneNumber`` find each other)."""
    snake = _UPPER.sub(lambda m: "_" + m.group(1).lower(), key)
    camel = _UNDERSCORE.sub(lambda m: m.group(1).upper(), key)
    return tuple(dict.fromkeys((key, snake, camel)))


def _custom(setting: IdentifierSetting) -> Reader:
    keys = key_variants(setting.key or setting.type)
    if setting.collection == "accounts":  # an account's: a group call's traits
        return lambda v: [v.traits.get(key) for key in keys] if v.group else []
    return _user_keys(*keys)


class Extractor:
    """Reads events with one space's settings (built once per settings)."""

    def __init__(self, settings: IdentitySettings) -> None:
        self.settings = settings
        ordered = sorted(settings.identifiers, key=lambda s: settings.rank(s.type))
        self._readers: list[tuple[IdentifierSetting, Reader]] = [
            (s, BUILT_IN[s.type] if s.type in BUILT_IN else _custom(s)) for s in ordered
        ]

    def extract(self, event: Event) -> Extraction:
        view = View(event)
        external, rejected = self._external_ids(view)
        found: dict[Identifier, None] = {}
        blocked: dict[Identifier, None] = {}
        for setting, read in self._readers:
            collection = setting.collection
            values = read(view)
            if external:
                values.extend(external.get((collection, setting.type), ()))
            for raw in values:
                value = text(raw)
                if value is None:
                    continue
                identifier = Identifier(collection, setting.type, value)
                if setting.is_blocked(value):
                    blocked[identifier] = None
                else:
                    found[identifier] = None
        return Extraction(tuple(found), tuple(blocked), rejected)

    def _external_ids(self, view: View) -> tuple[dict[tuple[str, str], list[object]], int]:
        elements = view.context.get("externalIds")
        if type(elements) is not list:
            return {}, 0
        group = view.group
        values: dict[tuple[str, str], list[object]] = {}
        rejected = 0
        for element in elements:
            if type(element) is not dict or not {"id", "type", "collection", "encoding"} <= set(
                element
            ):
                rejected += 1
                continue
            collection, kind = element["collection"], element["type"]
            if (
                collection not in ("users", "accounts")
                or element["encoding"] != "none"
                or type(kind) is not str
                or kind != kind.lower()  # types must be lowercase here (§2.2)
                or text(element["id"]) is None
            ):
                rejected += 1
                continue
            setting = self.settings.get(kind)
            if setting is None or setting.collection != collection:
                continue  # not an identifier of this space (or not of that collection)
            if collection == "accounts" and not group:
                continue  # accounts are built from group calls
            values.setdefault((collection, kind), []).append(element["id"])
        return values, rejected


def extract(event: Event, settings: IdentitySettings) -> Extraction:
    """The identifiers ``event`` carries under ``settings`` (see ``Extractor``)."""
    return Extractor(settings).extract(event)
