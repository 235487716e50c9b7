"""A rule's JSON Schema as a small tree of types that each language renders its own way.

Only what typed code can say is kept: types, required keys, enums and consts, nullable
unions, arrays, nested objects and maps. Patterns, bounds and formats stay in the plan (the
server enforces them); descriptions are kept for doc comments.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from headwater.protocols.compiled import Rule


@dataclass(frozen=True, slots=True)
class Unknown:
    """No type given (`{}`, `true`, `allOf`, …): any JSON value."""


@dataclass(frozen=True, slots=True)
class Scalar:
    kind: str  # string | integer | number | boolean | null


@dataclass(frozen=True, slots=True)
class Literals:
    values: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class ListOf:
    item: TypeNode


@dataclass(frozen=True, slots=True)
class MapOf:
    """An object without named properties: string keys, values of one type."""

    value: TypeNode


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: TypeNode
    required: bool
    description: str | None


@dataclass(slots=True)
class ObjectType:
    """An object with named properties. `extra` is the type of undeclared keys, if allowed."""

    name: str
    description: str | None
    fields: list[Field] = field(default_factory=list)
    extra: TypeNode | None = None


@dataclass(frozen=True, slots=True)
class Union:
    members: tuple[TypeNode, ...]


TypeNode = Unknown | Scalar | Literals | ListOf | MapOf | ObjectType | Union

_SCALARS = frozenset({"string", "integer", "number", "boolean", "null"})


class Builder:
    """Turns schemas into type nodes; `objects` lists every named object, children first."""

    def __init__(self, claim: Callable[[str], str], type_name: Callable[[str], str]) -> None:
        self._claim = claim
        self._type_name = type_name
        self.objects: list[ObjectType] = []

    def build(self, schema: Any, hint: str) -> TypeNode:
        if not isinstance(schema, Mapping):
            return Unknown()
        if "const" in schema:
            return Literals((schema["const"],))
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return Literals(tuple(_unique(schema["enum"])))
        for combinator in ("anyOf", "oneOf"):
            options = schema.get(combinator)
            if isinstance(options, list) and options:
                return _union([self.build(o, hint) for o in options])
        declared = schema.get("type")
        kinds = [declared] if isinstance(declared, str) else declared
        if not isinstance(kinds, list):
            if "properties" in schema or "additionalProperties" in schema:
                kinds = ["object"]
            elif "items" in schema:
                kinds = ["array"]
            else:
                return Unknown()
        return _union([self._kind(k, schema, hint) for k in kinds if isinstance(k, str)])

    def _kind(self, kind: str, schema: Mapping[str, Any], hint: str) -> TypeNode:
        if kind in _SCALARS:
            return Scalar(kind)
        if kind == "array":
            items = schema.get("items")
            return ListOf(self.build(items, f"{hint} Item") if items is not None else Unknown())
        if kind == "object":
            return self.object(schema, hint)
        return Unknown()

    def object(self, schema: Mapping[str, Any], hint: str) -> TypeNode:
        properties = schema.get("properties")
        extra_schema = schema.get("additionalProperties", None)
        extra: TypeNode | None = None
        if extra_schema is True or isinstance(extra_schema, Mapping):
            extra = self.build(extra_schema, f"{hint} Value")
        if not isinstance(properties, Mapping) or not properties:
            return MapOf(Unknown() if extra is None else extra)
        name = self._claim(self._type_name(hint))
        description = schema.get("description")
        obj = ObjectType(name, description if isinstance(description, str) else None)
        required = schema.get("required")
        required_keys = set(required) if isinstance(required, list) else set()
        for key, sub in properties.items():
            sub_description = sub.get("description") if isinstance(sub, Mapping) else None
            obj.fields.append(
                Field(
                    name=key,
                    type=self.build(sub, f"{hint} {key}"),
                    required=key in required_keys,
                    description=sub_description if isinstance(sub_description, str) else None,
                )
            )
        obj.extra = extra
        self.objects.append(obj)  # after its children: definitions come out in use order
        return obj


def _unique(values: list[Any]) -> list[Any]:
    seen: list[Any] = []
    for v in values:
        if not any(v == s and type(v) is type(s) for s in seen):
            seen.append(v)
    return seen


def _union(members: list[TypeNode]) -> TypeNode:
    flat: list[TypeNode] = []
    for m in members:
        for part in m.members if isinstance(m, Union) else (m,):
            if isinstance(part, Unknown):
                return Unknown()
            if part not in flat:
                flat.append(part)
    if not flat:
        return Unknown()
    return flat[0] if len(flat) == 1 else Union(tuple(flat))


@dataclass(frozen=True, slots=True)
class Call:
    """One generated function: the newest version of a rule and its payload's type."""

    rule: Rule
    payload: TypeNode
    description: str | None


def latest(rules: list[Rule], kind: str) -> list[Rule]:
    """The newest version of each key of one rule type, sorted by key (names are stable)."""
    newest: dict[str, Rule] = {}
    for rule in rules:
        known = newest.get(rule.key)
        if rule.type == kind and (known is None or rule.version > known.version):
            newest[rule.key] = rule
    return [newest[key] for key in sorted(newest)]


def payload_schema(rule: Rule) -> Any:
    """The part of the rule that describes `properties` (Track, Page, Screen) or `traits`."""
    top = "traits" if rule.type in ("IDENTIFY", "GROUP") else "properties"
    schema = rule.json_schema
    if isinstance(schema, Mapping):
        properties = schema.get("properties")
        if isinstance(properties, Mapping):
            return properties.get(top, {})
    return {}


def rule_description(rule: Rule) -> str | None:
    schema = rule.json_schema
    if isinstance(schema, Mapping) and isinstance(schema.get("description"), str):
        return str(schema["description"]) or None
    return None
