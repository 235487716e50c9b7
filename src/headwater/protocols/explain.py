"""Why an event fails a rule, found by walking the rule in Python instead of asking jsonschema-rs.

jsonschema-rs decides fast (`is_valid`: a fraction of a µs) but its error objects are dear: each
one costs ~1.6 µs to build in Rust and hand to Python, and reading its fields back ~1 µs more.
Most plans are the shape Segment's editor writes — objects of named properties, each a few
scalar keywords (`type`, `enum`, `pattern`, `minimum`…) — and for that shape the violations can
be written directly: the walk follows jsonschema-rs's order (`required` in the schema's order,
then properties in the event's order, then each scalar's keywords in a fixed order), every
keyword's verdict still comes from jsonschema-rs (one tiny validator per keyword, so types,
regexes, formats and numeric equality mean exactly what they mean there), and only the English
is written here, with `schema_messages`' words. Anything else inside a rule (arrays of objects,
`anyOf`, `patternProperties`…) is left to jsonschema-rs for that subtree, paths prefixed.
`tests/protocols/test_explain.py` checks the walk against jsonschema-rs's own errors on
generated schemas and events.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jsonschema_rs

from headwater.protocols.schema_messages import (
    LIMITS,
    ROOT,
    Violation,
    compact,
    field_path,
    json_type,
    number,
    title,
    violations_from,
)

Draft = type[jsonschema_rs.Validator]
Path = tuple[str, ...]
Explainer = Callable[[Any], list[Violation]]

# Keywords that only annotate: jsonschema-rs never fails on them.
_ANNOTATIONS = frozenset(
    {"$schema", "$id", "id", "$comment", "title", "description", "default", "examples", "labels"}
)
# Scalar keywords in the order jsonschema-rs reports them (numbers' and strings' keywords never
# fail together, so the two groups' relative order does not matter).
_SCALAR_ORDER = (
    "type", "const", "enum",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "minLength", "maxLength", "pattern", "format",
)  # fmt: skip
_SCALAR = frozenset(_SCALAR_ORDER)
_OBJECT = frozenset({"type", "properties", "required", "additionalProperties"})
# jsonschema-rs lists a failing `type`'s alternatives in this order, whatever the schema's.
_TYPE_ORDER = ("null", "boolean", "integer", "number", "string", "array", "object")
_SAFE_INTEGER = 2**53


def explainer(schema: Mapping[str, Any], draft: Draft) -> Explainer | None:
    """A walk for a rule whose top level is an object of named members, else None.

    The caller keeps rules with `$ref` (it points from the root) and with `allOf`/`then`/`else`
    (their summary violations need whole-rule paths) away from here. The walk's validators are
    made when the rule first fails: most rules of a plan never do, and a plan compiles at every
    change.
    """
    if not isinstance(schema, dict) or not _is_object(schema):
        return None
    root: _Node | None = None

    def explain(event: Any) -> list[Violation]:
        nonlocal root
        if root is None:
            root = _node(schema, draft)
        out: list[Violation] = []
        root.explain(event, (), out)
        return out

    return explain


class _Node:
    """A subschema: `is_valid` decides, `explain` writes the violations of a failing value."""

    is_valid: Callable[[Any], bool]

    def explain(self, value: Any, path: Path, out: list[Violation]) -> None:
        raise NotImplementedError


class _Anything(_Node):
    """A member planned with no constraint (`{}`, or only a description)."""


class _Opaque(_Node):
    """A subtree jsonschema-rs explains itself; its paths are prefixed with where it sits."""

    def __init__(self, schema: Any, draft: Draft) -> None:
        self._validator = draft(schema, validate_formats=True)
        self.is_valid = self._validator.is_valid

    def explain(self, value: Any, path: Path, out: list[Violation]) -> None:
        out.extend(violations_from(self._validator.iter_errors(value), False, path))


Message = Callable[[Any, Path], Violation]


class _Scalar(_Node):
    """A member of scalar keywords: one validator for the verdict, one per keyword for the
    reasons (made when the member first fails: most members never do)."""

    def __init__(self, schema: dict[str, Any], draft: Draft) -> None:
        self.is_valid = draft(schema, validate_formats=True).is_valid
        self._schema = schema
        self._draft = draft
        self._keywords: list[tuple[Callable[[Any], bool], Message]] | None = None

    def explain(self, value: Any, path: Path, out: list[Violation]) -> None:
        keywords = self._keywords
        if keywords is None:
            schema, draft = self._schema, self._draft
            keywords = self._keywords = [
                (draft({k: schema[k]}, validate_formats=True).is_valid, _message(k, schema[k]))
                for k in _SCALAR_ORDER
                if k in schema
            ]
        for is_valid, message in keywords:
            if not is_valid(value):
                out.append(message(value, path))


class _Object(_Node):
    """An object of named members: `required` in the schema's order, then the event's members in
    the event's order (a member the plan does not name fails only under
    `additionalProperties: false`)."""

    def __init__(self, schema: dict[str, Any], draft: Draft, closed: bool) -> None:
        self.is_valid = draft(schema, validate_formats=True).is_valid
        self._type = _Scalar({"type": schema["type"]}, draft) if "type" in schema else None
        self._required: tuple[str, ...] = tuple(schema.get("required", ()))
        members = {name: _node(member, draft) for name, member in schema["properties"].items()}
        self._named = frozenset(members)
        # members planned with no constraint never fail: only the named set knows them
        self._members = {name: m for name, m in members.items() if not isinstance(m, _Anything)}
        self._closed = closed

    def explain(self, value: Any, path: Path, out: list[Violation]) -> None:
        if type(value) is not dict:
            if self._type is not None:  # the other keywords only look at objects
                self._type.explain(value, path, out)
            return
        for name in self._required:
            if name not in value:
                full = field_path((*path, name))
                out.append(Violation("Required", full, f"{full} is required"))
        members, closed = self._members, self._closed
        for name, member in value.items():
            node = members.get(name)
            if node is not None:
                if not node.is_valid(member):
                    node.explain(member, (*path, name), out)
            elif closed and name not in self._named:
                where = field_path((*path, name))
                message = f"Additional property {name} is not allowed"
                out.append(Violation("Additional Property Not Allowed", where, message))


_ANYTHING = _Anything()


def _node(schema: Any, draft: Draft) -> _Node:
    if not isinstance(schema, dict):
        return _Opaque(schema, draft)  # `true` / `false` schemas
    keywords = schema.keys() - _ANNOTATIONS
    if not keywords:
        return _ANYTHING
    if keywords <= _SCALAR and _scalar_limits_plain(schema):
        return _Scalar(schema, draft)
    if _is_object(schema):
        closed = schema.get("additionalProperties", True) is not True
        return _Object({"properties": {}, **schema}, draft, closed)
    return _Opaque(schema, draft)


def _is_object(schema: dict[str, Any]) -> bool:
    """Named members the walk can visit: `properties`, `required` and a closed or open rest."""
    keywords = schema.keys() - _ANNOTATIONS
    if not keywords <= _OBJECT or not ("properties" in keywords or "required" in keywords):
        return False
    kind = schema.get("type", "object")
    kinds = [kind] if isinstance(kind, str) else kind
    if not isinstance(kinds, list) or "object" not in kinds:
        return False  # an object that must not be one: rare, left to jsonschema-rs
    return (
        isinstance(schema.get("properties", {}), dict)
        and isinstance(schema.get("required", []), list)
        and schema.get("additionalProperties", True) in (True, False, {"not": {}})
    )


def _scalar_limits_plain(schema: Mapping[str, Any]) -> bool:
    """Numeric limits whose text is the schema's own number (draft 4's boolean
    `exclusiveMinimum` and integers past 2^53 are left to jsonschema-rs)."""
    for keyword in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"):
        limit = schema.get(keyword)
        if limit is None:
            continue
        if type(limit) not in (int, float) or (type(limit) is int and abs(limit) > _SAFE_INTEGER):
            return False
    return True


def _message(keyword: str, argument: Any) -> Message:
    """The violation a failing scalar keyword makes, with its text fixed at compile time."""
    if keyword == "type":
        kinds = {argument} if isinstance(argument, str) else set(argument)
        ordered = [kind for kind in _TYPE_ORDER if kind in kinds]
        expected = ordered[0] if len(ordered) == 1 else "[" + ",".join(ordered) + "]"
        prefix = f"Invalid type. Expected: {expected}, given: "
        return lambda value, path: _new(
            Violation, ("Invalid Type", ".".join(path) or ROOT, prefix + json_type(value))
        )
    if keyword == "const":
        text = f" does not match: {compact(argument)}"
        return lambda value, path: _at("const", path, (".".join(path) or ROOT) + text)
    if keyword == "enum":
        text = " must be one of the following: " + ", ".join(compact(o) for o in argument)
        return lambda value, path: _at("enum", path, (".".join(path) or ROOT) + text)
    if keyword == "pattern":
        return _fixed("pattern", f"Does not match pattern '{argument}'")
    if keyword == "format":
        return _fixed("format", f"Does not match format '{argument}'")
    kind, template = LIMITS[keyword]
    return _fixed(kind, template.format(number(argument)))


def _fixed(kind: str, description: str) -> Message:
    return lambda value, path: _at(kind, path, description)


def _at(kind: str, path: Path, description: str) -> Violation:
    return _new(Violation, (title(kind), ".".join(path) or ROOT, description))


# A NamedTuple's `__new__` is a Python function; this is the tuple it makes, made directly (a
# failing member's message is on the stage's hot path).
_new = tuple.__new__
