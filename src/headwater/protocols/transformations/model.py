"""A transformation as the Public API writes it (``CreateTransformationV1Input``), checked.

Checks are Segment's: one source, one event (``if``), renames only of properties or traits,
at most ten paths per value transformation, at most one FQL-defined property and never beside
renames, value transformations or a new event name, and the three property conflicts of the
Public API. Every refusal is an ``InvalidError`` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from headwater import fql
from headwater.errors import FQLSyntaxError, InvalidError
from headwater.protocols.transformations.paths import ROOTS, split

MAX_VALUE_PATHS = 10
MAX_FQL_DEFINED = 1
# The published SDK leaves ``algorithm`` a free string; these are taken with or without the
# hyphen, in any case (``SHA-256``, ``SHA256``, ``sha256``), and kept as written.
ALGORITHMS = ("MD5", "SHA-1", "SHA-256", "SHA-384", "SHA-512")


def hashlib_name(algorithm: str) -> str | None:
    """``hashlib``'s name for an accepted algorithm, or None."""
    plain = algorithm.upper().replace("-", "")
    known = {a.replace("-", ""): a.replace("-", "").lower() for a in ALGORITHMS}
    return known.get(plain)


ENCODINGS = ("BASE16", "BASE64", "BASE64URL", "HEX")
FIELDS = (
    "name",
    "sourceId",
    "destinationMetadataId",
    "enabled",
    "if",
    "drop",
    "newEventName",
    "propertyRenames",
    "propertyValueTransformations",
    "fqlDefinedProperties",
    "allowProperties",
    "hashPropertiesConfiguration",
)
IMMUTABLE = ("sourceId", "destinationMetadataId", "if")

# The Public API's standard matchers: Track ``event='X'``, Identify/Group ``type='…'``.
_TRACK = re.compile(r"""^\s*event\s*=\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")\s*$""")
_TYPE = re.compile(r"""^\s*type\s*=\s*['"](identify|group)['"]\s*$""")


@dataclass(frozen=True)
class PropertyRename:
    old_name: str
    new_name: str


@dataclass(frozen=True)
class PropertyValueTransformation:
    property_paths: tuple[str, ...]
    property_value: Any


@dataclass(frozen=True)
class FqlDefinedProperty:
    fql: str
    property_name: str


@dataclass(frozen=True)
class HashPropertiesConfiguration:
    algorithm: str
    paths: tuple[str, ...]
    key: str | None = None
    encoding: str | None = None


@dataclass(frozen=True)
class Transformation:
    """One transformation; ``id`` is empty until stored."""

    name: str
    source_id: str
    enabled: bool
    if_: str
    destination_metadata_id: str | None = None
    drop: bool = False
    new_event_name: str | None = None
    property_renames: tuple[PropertyRename, ...] = ()
    property_value_transformations: tuple[PropertyValueTransformation, ...] = ()
    fql_defined_properties: tuple[FqlDefinedProperty, ...] = ()
    allow_properties: tuple[str, ...] = ()
    hash_properties_configuration: HashPropertiesConfiguration | None = None
    id: str = ""
    created_at: int = field(default=0, compare=False)
    updated_at: int = field(default=0, compare=False)

    @property
    def matcher(self) -> tuple[str, str] | None:
        """("track", event name) or (type, "") for a standard ``if``; None for any other."""
        return standard_matcher(self.if_)

    def to_api(self) -> dict[str, Any]:
        """The Public API's ``TransformationV1``."""
        shown: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "sourceId": self.source_id,
            "enabled": self.enabled,
            "if": self.if_,
            "drop": self.drop,
            "propertyRenames": [
                {"oldName": r.old_name, "newName": r.new_name} for r in self.property_renames
            ],
            "propertyValueTransformations": [
                {"propertyPaths": list(v.property_paths), "propertyValue": v.property_value}
                for v in self.property_value_transformations
            ],
            "fqlDefinedProperties": [
                {"fql": f.fql, "propertyName": f.property_name} for f in self.fql_defined_properties
            ],
            "allowProperties": list(self.allow_properties),
        }
        if self.destination_metadata_id is not None:
            shown["destinationMetadataId"] = self.destination_metadata_id
        if self.new_event_name is not None:
            shown["newEventName"] = self.new_event_name
        if self.hash_properties_configuration is not None:
            shown["hashPropertiesConfiguration"] = hash_to_api(self.hash_properties_configuration)
        return shown


def hash_to_api(config: HashPropertiesConfiguration) -> dict[str, Any]:
    shown: dict[str, Any] = {"algorithm": config.algorithm, "paths": list(config.paths)}
    if config.key is not None:
        shown["key"] = config.key
    if config.encoding is not None:
        shown["encoding"] = config.encoding
    return shown


def standard_matcher(text: str) -> tuple[str, str] | None:
    found = _TRACK.match(text)
    if found:
        name = found.group(1) if found.group(1) is not None else found.group(2)
        return "track", re.sub(r"\\(.)", r"\1", name)
    found = _TYPE.match(text)
    return (found.group(1), "") if found else None


def from_api(body: object, field_prefix: str = "") -> Transformation:
    """A transformation from a ``CreateTransformationV1Input`` body, every check made."""
    if not isinstance(body, Mapping):
        raise InvalidError("the transformation must be an object", field_prefix or None)
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        name = unknown[0]
        raise InvalidError(f"unknown field {name!r}", field_prefix + name)
    for required in ("name", "sourceId", "enabled", "if"):
        if required not in body:
            raise InvalidError(f"{required} is required", field_prefix + required)
    return check(_build(body, field_prefix), field_prefix)


def updated(current: Transformation, body: object, field_prefix: str = "") -> Transformation:
    """``current`` with a PATCH body's fields; source and event cannot change (Segment: make a
    new transformation instead)."""
    if not isinstance(body, Mapping):
        raise InvalidError("the body must be an object", field_prefix or None)
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise InvalidError(f"unknown field {unknown[0]!r}", field_prefix + unknown[0])
    merged = to_input(current)
    for name in IMMUTABLE:
        if name in body and body[name] != merged.get(name):
            raise InvalidError(
                f"{name} cannot be changed; create a new transformation instead",
                field_prefix + name,
            )
    merged.update(body)
    changed = check(_build(merged, field_prefix), field_prefix)
    return replace(changed, id=current.id, created_at=current.created_at)


def to_input(t: Transformation) -> dict[str, Any]:
    """The input body that makes ``t`` again (what config export writes, what PATCH merges)."""
    shown = t.to_api()
    shown.pop("id")
    return shown


def _build(body: Mapping[str, Any], prefix: str) -> Transformation:
    def string(name: str, *, optional: bool = False) -> str | None:
        value = body.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, str) or not value.strip():
            raise InvalidError(f"{name} must be a non-empty string", prefix + name)
        return value

    def boolean(name: str, default: bool | None = None) -> bool:
        value = body.get(name, default)
        if value is None and default is not None:
            return default
        if not isinstance(value, bool):
            raise InvalidError(f"{name} must be true or false", prefix + name)
        return value

    def items(name: str) -> list[Any]:
        value = body.get(name)
        if value is None:
            return []
        if not isinstance(value, list):
            raise InvalidError(f"{name} must be a list", prefix + name)
        return value

    def item_object(name: str, i: int, item: object, keys: tuple[str, ...]) -> Mapping[str, Any]:
        where = f"{prefix}{name}[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidError(f"{name}[{i}] must be an object", where)
        for key in item:
            if key not in keys:
                raise InvalidError(f"{name}[{i}]: unknown field {key!r}", f"{where}.{key}")
        for key in keys:
            if key not in item:
                raise InvalidError(f"{name}[{i}].{key} is required", f"{where}.{key}")
        return item

    def item_string(name: str, i: int, item: Mapping[str, Any], key: str) -> str:
        value = item[key]
        if not isinstance(value, str) or not value:
            raise InvalidError(
                f"{name}[{i}].{key} must be a non-empty string", f"{prefix}{name}[{i}].{key}"
            )
        return value

    renames = []
    for i, item in enumerate(items("propertyRenames")):
        obj = item_object("propertyRenames", i, item, ("oldName", "newName"))
        renames.append(
            PropertyRename(
                item_string("propertyRenames", i, obj, "oldName"),
                item_string("propertyRenames", i, obj, "newName"),
            )
        )
    values = []
    for i, item in enumerate(items("propertyValueTransformations")):
        obj = item_object(
            "propertyValueTransformations", i, item, ("propertyPaths", "propertyValue")
        )
        paths = obj["propertyPaths"]
        where = f"{prefix}propertyValueTransformations[{i}].propertyPaths"
        if not isinstance(paths, list) or not paths:
            raise InvalidError("propertyPaths must be a non-empty list of paths", where)
        if len(paths) > MAX_VALUE_PATHS:
            raise InvalidError(
                f"propertyPaths must contain less than or equal to {MAX_VALUE_PATHS} items",
                where,
            )
        values.append(PropertyValueTransformation(tuple(paths), obj["propertyValue"]))
    defined = []
    for i, item in enumerate(items("fqlDefinedProperties")):
        obj = item_object("fqlDefinedProperties", i, item, ("fql", "propertyName"))
        defined.append(
            FqlDefinedProperty(
                item_string("fqlDefinedProperties", i, obj, "fql"),
                item_string("fqlDefinedProperties", i, obj, "propertyName"),
            )
        )
    allow = items("allowProperties")
    for i, path in enumerate(allow):
        if not isinstance(path, str) or not path:
            raise InvalidError(
                f"allowProperties[{i}] must be a non-empty string", f"{prefix}allowProperties[{i}]"
            )
    hashing = None
    raw_hash = body.get("hashPropertiesConfiguration")
    if raw_hash is not None:
        hashing = _hash_config(raw_hash, prefix + "hashPropertiesConfiguration")
    destination = string("destinationMetadataId", optional=True)
    for name, limit in (("name", 200), ("destinationMetadataId", 100), ("sourceId", 200)):
        value = body.get(name)
        if isinstance(value, str) and len(value) > limit:
            raise InvalidError(f"{name} must be at most {limit} characters", prefix + name)
    return Transformation(
        name=str(string("name")).strip(),
        source_id=str(string("sourceId")),
        destination_metadata_id=destination,
        enabled=boolean("enabled"),
        if_=str(string("if")),
        drop=boolean("drop", False),
        new_event_name=string("newEventName", optional=True),
        property_renames=tuple(renames),
        property_value_transformations=tuple(values),
        fql_defined_properties=tuple(defined),
        allow_properties=tuple(allow),
        hash_properties_configuration=hashing,
    )


def _hash_config(raw: object, where: str) -> HashPropertiesConfiguration:
    if not isinstance(raw, Mapping):
        raise InvalidError("hashPropertiesConfiguration must be an object", where)
    for key in raw:
        if key not in ("algorithm", "key", "encoding", "paths"):
            raise InvalidError(f"hashPropertiesConfiguration: unknown field {key!r}", where)
    algorithm = raw.get("algorithm")
    if not isinstance(algorithm, str) or hashlib_name(algorithm) is None:
        raise InvalidError(
            f"hashPropertiesConfiguration.algorithm must be one of {', '.join(ALGORITHMS)}",
            where + ".algorithm",
        )
    encoding = raw.get("encoding")
    if encoding is not None and encoding not in ENCODINGS:
        raise InvalidError(
            f"hashPropertiesConfiguration.encoding must be one of {', '.join(ENCODINGS)}",
            where + ".encoding",
        )
    key = raw.get("key")
    if key is not None and (not isinstance(key, str) or not key):
        raise InvalidError("hashPropertiesConfiguration.key must be a string", where + ".key")
    paths = raw.get("paths")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise InvalidError(
            "hashPropertiesConfiguration.paths must be a non-empty list of paths", where + ".paths"
        )
    return HashPropertiesConfiguration(str(algorithm), tuple(paths), key, encoding)


def _rename_root(matcher: tuple[str, str] | None) -> tuple[str, ...]:
    if matcher is None:
        return ("properties", "traits")
    return ("properties",) if matcher[0] == "track" else ("traits",)


def check(t: Transformation, prefix: str = "") -> Transformation:
    """Segment's rules for one transformation (field-named refusals)."""
    try:
        fql.parse(t.if_)
    except FQLSyntaxError as exc:
        raise InvalidError(f"if: {exc}", prefix + "if") from None
    matcher = t.matcher
    if t.new_event_name is not None and matcher is not None and matcher[0] != "track":
        raise InvalidError(
            "newEventName renames Track events only; if must match a Track event",
            prefix + "newEventName",
        )
    if t.fql_defined_properties:
        if len(t.fql_defined_properties) > MAX_FQL_DEFINED:
            raise InvalidError(
                f"fqlDefinedProperties must contain less than or equal to {MAX_FQL_DEFINED} items",
                prefix + "fqlDefinedProperties",
            )
        combined = [
            name
            for name, used in (
                ("propertyRenames", t.property_renames),
                ("propertyValueTransformations", t.property_value_transformations),
                ("newEventName", t.new_event_name is not None),
            )
            if used
        ]
        if combined:
            raise InvalidError(
                f"fqlDefinedProperties cannot be combined with {combined[0]}",
                prefix + "fqlDefinedProperties",
            )
        for i, defined in enumerate(t.fql_defined_properties):
            where = f"{prefix}fqlDefinedProperties[{i}]"
            try:
                fql.parse(defined.fql)
            except FQLSyntaxError as exc:
                message = f"fqlDefinedProperties[{i}].fql: {exc}"
                raise InvalidError(message, where + ".fql") from None
            _property_path(defined.property_name, where + ".propertyName")
    roots = _rename_root(matcher)
    renamed: set[tuple[str, ...]] = set()
    for i, rename in enumerate(t.property_renames):
        where = f"{prefix}propertyRenames[{i}]"
        old = split(rename.old_name, where + ".oldName")
        new = split(rename.new_name, where + ".newName")
        for keys, side in ((old, "oldName"), (new, "newName")):
            if len(keys) < 2 or keys[0] not in roots:
                raise InvalidError(
                    f"propertyRenames[{i}].{side}: only {' or '.join(roots)} can be renamed"
                    f" ({'.'.join(keys)!r} is not under {' or '.join(roots)}); top-level"
                    " fields such as userId cannot",
                    f"{where}.{side}",
                )
        if old[0] != new[0]:
            raise InvalidError(
                f"propertyRenames[{i}]: a {old[0]} field cannot move to {new[0]}",
                f"{where}.newName",
            )
        if old in renamed:
            raise InvalidError(
                f"propertyRenames[{i}].oldName renames {rename.old_name!r} twice",
                f"{where}.oldName",
            )
        renamed.add(old)
        renamed.add(new)
    seen_paths: dict[tuple[str, ...], int] = {}
    seen_values: dict[str, int] = {}
    for i, value in enumerate(t.property_value_transformations):
        where = f"{prefix}propertyValueTransformations[{i}]"
        if isinstance(value.property_value, dict | list):
            raise InvalidError(
                f"propertyValueTransformations[{i}].propertyValue must be a single value",
                where + ".propertyValue",
            )
        shown = repr(value.property_value)
        if shown in seen_values:
            raise InvalidError(
                f"propertyValueTransformations[{i}]: a value transformation already exists for"
                f" the property value {value.property_value!r}"
                f" (propertyValueTransformations[{seen_values[shown]}]); add the paths there",
                where + ".propertyValue",
            )
        seen_values[shown] = i
        for j, path in enumerate(value.property_paths):
            keys = _property_path(path, f"{where}.propertyPaths[{j}]")
            if keys in seen_paths:
                raise InvalidError(
                    f"propertyValueTransformations[{i}].propertyPaths[{j}]: the path {path!r}"
                    " appears twice in propertyValueTransformations",
                    f"{where}.propertyPaths[{j}]",
                )
            if keys in renamed:
                raise InvalidError(
                    f"propertyValueTransformations[{i}].propertyPaths[{j}]: the path {path!r}"
                    " is also in propertyRenames",
                    f"{where}.propertyPaths[{j}]",
                )
            seen_paths[keys] = i
    for i, path in enumerate(t.allow_properties):
        keys = split(path, f"{prefix}allowProperties[{i}]")
        if len(keys) < 2 or keys[0] not in ("properties", "traits"):
            raise InvalidError(
                f"allowProperties[{i}]: {path!r} must name a property or trait",
                f"{prefix}allowProperties[{i}]",
            )
    if t.hash_properties_configuration is not None:
        for j, path in enumerate(t.hash_properties_configuration.paths):
            _property_path(path, f"{prefix}hashPropertiesConfiguration.paths[{j}]")
    return t


_UNSETTABLE = ("type", "messageId", "receivedAt", "integrations")


def _property_path(path: str, where: str) -> tuple[str, ...]:
    keys = split(path, where)
    if len(keys) == 1 and keys[0] in (*_UNSETTABLE, *ROOTS):
        raise InvalidError(f"{where}: {path!r} cannot be set by a transformation", where)
    return keys
