"""jsonschema-rs errors as Segment's violations, in gojsonschema's English.

Segment validates with Go's gojsonschema and shows its default-locale messages (`properties.x is
required`, `Invalid type. Expected: integer, given: number`, `(root)` for the top level). Teams
moving off Segment grep, alert and dedupe on those strings, so the wording, the field paths, the
order and the violation types (gojsonschema's error type title-cased: `Required`, `Invalid Type`,
`Number All Of`…) are reproduced here from jsonschema-rs's structured error kinds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, cast

import jsonschema_rs

ROOT = "(root)"


class Violation(NamedTuple):
    """One violation as Segment writes it in `context.protocols.violations`.

    A NamedTuple rather than a frozen dataclass: made per violation on the hot path, and a
    frozen dataclass's `__init__` costs four times as much.
    """

    type: str
    field: str
    description: str

    def display(self) -> str:
        """Segment's debugger form, `field: description`."""
        return f"{self.field}: {self.description}"


_JSON_TYPES: dict[type, str] = {
    str: "string",
    bool: "boolean",
    int: "integer",
    dict: "object",
    list: "array",
    type(None): "null",
}


def json_type(value: Any) -> str:
    """gojsonschema's name for a value's type: an integral number is an `integer`."""
    known = _JSON_TYPES.get(type(value))  # the decoded JSON types, in one lookup
    if known is not None:
        return known
    if type(value) is float:
        return "integer" if value.is_integer() else "number"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "integer" if value.is_integer() else "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    return "object"


def field_path(path: Sequence[str | int]) -> str:
    """A dotted instance path as gojsonschema prints it (`properties.products.0.id`)."""
    if not path:
        return ROOT
    return ".".join(map(str, path))


_TITLES: dict[str, str] = {}


def title(kind: str) -> str:
    """gojsonschema's error type as Segment shows it: `number_gte` → `Number Gte`."""
    found = _TITLES.get(kind)
    if found is None:
        found = _TITLES[kind] = kind.replace("_", " ").title()
    return found


def _violation(kind: str, path: Sequence[str | int], description: str) -> Violation:
    return Violation(title(kind), field_path(path), description)


def number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value)


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _types(types: Sequence[str]) -> str:
    if len(types) == 1:
        return types[0]
    return "[" + ",".join(types) + "]"


def _duplicate_pair(items: Sequence[Any]) -> tuple[int, int]:
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        key = json.dumps(item, sort_keys=True)
        if key in seen:
            return seen[key], index
        seen[key] = index
    return 0, 0


# Schema-path keywords that step into the instance (the next segment names the child, or not).
_STEP_WITH_NAME = frozenset({"properties", "patternProperties"})
_STEP = frozenset({"additionalProperties", "additionalItems", "contains"})
_SKIP_NAME = frozenset({"allOf", "anyOf", "oneOf", "dependencies", "definitions", "$defs"})


def _instance_depth(evaluation_path: Sequence[str | int]) -> int:
    """How many instance segments a schema evaluation path has consumed."""
    depth = 0
    index = 0
    while index < len(evaluation_path):
        part = evaluation_path[index]
        if part in _STEP_WITH_NAME:
            depth += 1
            index += 2
            continue
        if part == "items":
            depth += 1
            nxt = evaluation_path[index + 1] if index + 1 < len(evaluation_path) else None
            index += 2 if isinstance(nxt, int) else 1
            continue
        if part in _STEP:
            depth += 1
        elif part in _SKIP_NAME:
            index += 1
        index += 1
    return depth


def _wrappers(error: jsonschema_rs.ValidationError) -> list[tuple[str, tuple[Any, ...]]]:
    """The allOf / then / else keywords an error sits under, outermost first."""
    path = error.evaluation_path
    if "allOf" not in path and "then" not in path and "else" not in path:
        return []  # the common case: nothing to summarise
    found = []
    instance = list(error.instance_path)
    for index, part in enumerate(path):
        if part in ("allOf", "then", "else"):
            keyword = str(part)
            location = tuple(path[:index])
            depth = _instance_depth(path[:index])
            found.append((keyword, (location, tuple(instance[:depth]))))
    return found


def _one(error: jsonschema_rs.ValidationError, prefix: Sequence[str]) -> list[Violation]:
    """Violations for one jsonschema-rs error (anyOf/oneOf bring their best branch along)."""
    kind = error.kind
    name = kind.name
    path: list[str | int] = error.instance_path  # a fresh list each time it is read
    if prefix:
        path[:0] = prefix
    # The two kinds most events fail with come first, each with only what it needs.
    if name == "type":
        expected = _types(cast(Any, kind).types)  # the stubs lack the per-kind fields
        given = json_type(error.instance)
        description = f"Invalid type. Expected: {expected}, given: {given}"
        return [Violation("Invalid Type", field_path(path), description)]
    details = kind.as_dict()
    if name == "required":
        if "dependencies" in error.evaluation_path:
            return [
                _violation("missing_dependency", path, f"Has a dependency on {details['property']}")
            ]
        full = field_path([*path, details["property"]])
        return [Violation("Required", full, f"{full} is required")]
    where = field_path(path)
    if name == "enum":
        allowed = ", ".join(compact(option) for option in details["options"])
        return [_violation("enum", path, f"{where} must be one of the following: {allowed}")]
    if name == "const":
        allowed = compact(details["expected_value"])
        return [_violation("const", path, f"{where} does not match: {allowed}")]
    if name == "pattern":
        return [_violation("pattern", path, f"Does not match pattern '{details['pattern']}'")]
    if name == "format":
        return [_violation("format", path, f"Does not match format '{details['format']}'")]
    if name in ("anyOf", "oneOf"):
        keyword, label = (
            ("number_any_of", "Must validate at least one schema (anyOf)")
            if name == "anyOf"
            else ("number_one_of", "Must validate one and only one schema (oneOf)")
        )
        branches: list[list[jsonschema_rs.ValidationError]] = details.get("context", [])
        out = [_violation(keyword, path, label)]
        if branches and all(branches):  # all branches failed (not oneOf's "more than one passed")
            best = min(branches, key=len)
            out.extend(violations_from(best, True, prefix))
        return out
    if name == "not" and tuple(error.evaluation_path[-2:]) == ("additionalProperties", "not"):
        # compiled.py's stand-in for `additionalProperties: false` (one error per property)
        return [
            _violation(
                "additional_property_not_allowed",
                path,
                f"Additional property {path[-1]} is not allowed",
            )
        ]
    if name == "not":
        return [_violation("number_not", path, "Must not validate the schema (not)")]
    if name == "additionalProperties":
        return [
            _violation(
                "additional_property_not_allowed",
                [*path, prop],
                f"Additional property {prop} is not allowed",
            )
            for prop in details["unexpected"]
        ]
    if name == "falseSchema":
        return [_violation("false", path, "False always fails validation")]
    if name == "uniqueItems":
        instance = error.instance
        first, second = _duplicate_pair(instance if isinstance(instance, list) else [])
        return [_violation("unique", path, f"array items[{first},{second}] must be unique")]
    if name == "propertyNames":
        inner = details["error"]
        return [
            _violation(
                "invalid_property_name", path, f'Property name of "{inner.instance}" does not match'
            )
        ]
    simple = LIMITS.get(name)
    if simple is not None:
        keyword, template = simple
        limit = details.get("limit", details.get("multiple_of"))
        return [_violation(keyword, path, template.format(number(limit)))]
    if name == "additionalItems":
        message = "No additional items allowed on array"
        return [_violation("array_no_additional_items", path, message)]
    if name == "contains":
        return [_violation("contains", path, "At least one of the items must match")]
    return [_violation(name, path, error.message)]


LIMITS = {
    "minimum": ("number_gte", "Must be greater than or equal to {}"),
    "maximum": ("number_lte", "Must be less than or equal to {}"),
    "exclusiveMinimum": ("number_gt", "Must be greater than {}"),
    "exclusiveMaximum": ("number_lt", "Must be less than {}"),
    "multipleOf": ("multiple_of", "Must be a multiple of {}"),
    "minLength": ("string_gte", "String length must be greater than or equal to {}"),
    "maxLength": ("string_lte", "String length must be less than or equal to {}"),
    "minItems": ("array_min_items", "Array must have at least {} items"),
    "maxItems": ("array_max_items", "Array must have at most {} items"),
    "minProperties": ("array_min_properties", "Must have at least {} properties"),
    "maxProperties": ("array_max_properties", "Must have at most {} properties"),
}

_WRAPPER_MESSAGES = {
    "allOf": ("number_all_of", "Must validate all the schemas (allOf)"),
    "then": ("condition_then", 'Must validate "then" as "if" was valid'),
    "else": ("condition_else", 'Must validate "else" as "if" was not valid'),
}


def violations_from(
    errors: Iterable[jsonschema_rs.ValidationError],
    summaries: bool = True,
    prefix: Sequence[str] = (),
) -> list[Violation]:
    """Segment's violations for a validator's errors, in gojsonschema's order.

    gojsonschema adds a summary error for a failing `allOf` (after its branches' errors) and for
    a failing `then`/`else` (before them); jsonschema-rs reports only the inner errors, so the
    summaries are rebuilt from each error's evaluation path, once per keyword location
    (``summaries=False``: the schema has none of those keywords, skip looking). ``prefix``: where
    in the event the validated value sits, for a validator of one subtree (explain.py).
    """
    out: list[Violation] = []
    if not summaries:
        for error in errors:
            out.extend(_one(error, prefix))
        return out
    pending_all_of: dict[tuple[Any, ...], Violation] = {}
    seen: set[tuple[Any, ...]] = set()
    for error in errors:
        for keyword, key in _wrappers(error):
            if (keyword, key) in seen:
                continue
            seen.add((keyword, key))
            kind, message = _WRAPPER_MESSAGES[keyword]
            summary = _violation(kind, list(key[1]), message)
            if keyword == "allOf":
                pending_all_of[key] = summary
            else:
                out.append(summary)
        out.extend(_one(error, prefix))
    out.extend(pending_all_of.values())
    return out
