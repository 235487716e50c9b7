"""The audience builder's JSON shape (spec/unify-engage.md §21A) as a definition tree.

The builder is another way to write what Segment Query Language writes, so it lands on the
same tree: ``from_builder`` maps each condition to its nodes, writes the equivalent text with
``to_text`` and parses that text once more, so a builder definition passes exactly the checks
a written one does (at most 50 primary expressions, windows of 1 hour to 3 years, …). Errors
name the JSON path of the part refused (``definition.all_of[1].where[0].op``), at position 0.

    condition := {"all_of": [condition…]} | {"any_of": [condition…]} | {"not": condition}
               | {"event": …, "count"?, "where"?, "window"?, "then"?}
               | {"trait": key, "op": operator, "value"?} | {"part_of_audience": key}
               (each may add "user_quantifier": any | all | none, accounts only)
    computed  := {"type": counter | sum | avg | min | max | aggregation | most_frequent | first
                  | last | unique_list | unique_list_count, "event", "property"?, "where"?,
                  "window"?}
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final, NoReturn, TypeGuard

from headwater.engage.definition import (
    AllUsers,
    And,
    AnyUser,
    Compare,
    CompareOp,
    Condition,
    ContextRef,
    Definition,
    Kind,
    Literal,
    Not,
    Or,
    PropertyRef,
    Reduce,
    ReduceOp,
    Stream,
    TraitRef,
    Value,
    Window,
)
from headwater.engage.language import (
    MAX_DEPTH,
    MAX_WINDOW_HOURS,
    Purpose,
    parse,
    to_text,
)
from headwater.errors import DefinitionError
from headwater.timestamps import parse_timestamp

# The builder's operator names (§5.2, §13.2) in snake case, and the language's own names.
OPERATORS: Final[dict[str, CompareOp]] = {
    "equals": "equals",
    "not_equals": "differs",
    "differs": "differs",
    "less_than": "less_than",
    "greater_than": "greater_than",
    "less_than_or_equal": "at_most",
    "less_than_or_equal_to": "at_most",
    "at_most": "at_most",
    "greater_than_or_equal": "at_least",
    "greater_than_or_equal_to": "at_least",
    "at_least": "at_least",
    "contains": "contains",
    "contains_one_of": "contains",
    "contains_any_of": "contains",
    "does_not_contain": "omits",
    "omits": "omits",
    "starts_with": "starts_with",
    "ends_with": "ends_with",
    "exists": "exists",
    "not_exists": "absent",
    "absent": "absent",
    "equals_one_of": "one_of",
    "equals_any_of": "one_of",
    "one_of": "one_of",
    "before_date": "before_date",
    "after_date": "after_date",
    "within_last": "within_last",
    "within_next": "within_next",
    "before_last": "before_last",
    "after_next": "after_next",
}
COUNT_OPERATORS: Final[dict[str, CompareOp]] = {
    "at_least": "at_least",
    "exactly": "equals",
    "at_most": "at_most",
}
COMPUTED_TYPES: Final[dict[str, ReduceOp]] = {
    "counter": "count",
    "sum": "sum",
    "avg": "avg",
    "min": "min",
    "max": "max",
    "most_frequent": "mode",
    "first": "first",
    "last": "last",
    "unique_list": "unique",
    "unique_list_count": "unique_count",
}
AGGREGATIONS: Final[dict[str, ReduceOp]] = {
    "sum": "sum",
    "avg": "avg",
    "average": "avg",
    "min": "min",
    "minimum": "min",
    "max": "max",
    "maximum": "max",
}
MOST_FREQUENT_MIN: Final = 2  # §5.1: a value must have been tracked at least twice
QUANTIFIERS: Final = ("any", "all", "none")

_CONDITION_KINDS: Final = ("all_of", "any_of", "not", "event", "trait", "part_of_audience")
_KEYS: Final[dict[str, frozenset[str]]] = {
    "all_of": frozenset({"all_of"}),
    "any_of": frozenset({"any_of"}),
    "not": frozenset({"not"}),
    "event": frozenset({"event", "count", "where", "window", "then"}),
    "trait": frozenset({"trait", "op", "value"}),
    "part_of_audience": frozenset({"part_of_audience"}),
}
_THEN_KEYS: Final = frozenset({"event", "count", "where", "then", "negate", "within_of_parent"})
_COMPUTED_KEYS: Final = frozenset(
    {"type", "aggregation", "event", "property", "context", "where", "window"}
)
# What the §21A object holds beside a computed trait's definition when it is not wrapped in
# "definition": left alone here.
_SETTINGS_KEYS: Final = frozenset(
    {
        "key",
        "name",
        "description",
        "level",
        "include_anonymous",
        "include_historical",
        "mode",
        "enabled",
        "destinations",
    }
)
_DURATION_OPS: Final = frozenset({"within_last", "within_next", "before_last", "after_next"})
_ORDERING_OPS: Final = frozenset({"greater_than", "at_least", "less_than", "at_most"})
_STRING_OPS: Final = frozenset({"omits", "starts_with", "ends_with"})
_TEXT_LIMIT: Final = 1_000  # of the JSON an error quotes


def from_builder(shape: Mapping[str, Any], *, kind: Kind = "users", purpose: Purpose) -> Definition:
    """The tree of a builder definition, with ``text`` the equivalent Segment Query Language.

    ``shape`` is the §21A object (its ``definition`` is read) or the definition itself.
    """
    builder = _Builder(shape, kind)
    if kind not in ("users", "accounts"):
        builder.fail("definition", f"unknown kind {kind!r}; expected users or accounts")
    wrapped = isinstance(shape, Mapping) and "definition" in shape
    body = shape["definition"] if wrapped else shape
    root: Condition | Value
    if purpose == "audience":
        root = builder.condition(body, "definition", 0, quantified=False)
    elif purpose == "trait":
        root = builder.computed(body, "definition", strict=wrapped)
    else:
        builder.fail("definition", f"unknown purpose {purpose!r}; expected audience or trait")
    text = to_text(Definition(kind, root))
    try:
        parse(text, kind=kind, purpose=purpose)
    except DefinitionError as refused:
        builder.fail("definition", refused.reason)
    return Definition(kind, root, text)


class _Builder:
    def __init__(self, shape: object, kind: Kind) -> None:
        self.shape = shape
        self.kind = kind

    def fail(self, path: str, message: str) -> NoReturn:
        raise DefinitionError(f"{path}: {message}", _quoted(self.shape), 0)

    # -- conditions --

    def condition(self, node: object, path: str, depth: int, *, quantified: bool) -> Condition:
        if depth > MAX_DEPTH:
            self.fail(path, f"conditions nest deeper than {MAX_DEPTH} levels")
        item = self.mapping(node, path)
        found = [name for name in _CONDITION_KINDS if name in item]
        if len(found) != 1:
            self.fail(
                path,
                f"expected exactly one of {', '.join(_CONDITION_KINDS)}; found "
                f"{', '.join(found) or 'none'}",
            )
        what = found[0]
        self.known_keys(item, path, _KEYS[what] | {"user_quantifier"})
        quantifier = item.get("user_quantifier")
        if quantifier is not None:
            self.check_quantifier(quantifier, f"{path}.user_quantifier", quantified=quantified)
        inner = quantified or quantifier is not None
        result: Condition
        if what in ("all_of", "any_of"):
            result = self.group(item[what], f"{path}.{what}", depth, what, quantified=inner)
        elif what == "not":
            result = Not(self.condition(item["not"], f"{path}.not", depth + 1, quantified=inner))
        elif what == "event":
            result = self.event_condition(item, path, depth, funnel=False)
        elif what == "trait":
            key = self.name(item["trait"], f"{path}.trait")
            result = self.comparison(TraitRef(key), item, path, funnel=False)
        else:
            key = self.name(item["part_of_audience"], f"{path}.part_of_audience")
            result = Compare(TraitRef(key), "equals", (Literal(True),))
        if quantifier == "any":
            return AnyUser(result)
        if quantifier == "all":
            return AllUsers(result)
        if quantifier == "none":
            return AllUsers(Not(result))
        return result

    def check_quantifier(self, quantifier: object, path: str, *, quantified: bool) -> None:
        if quantifier not in QUANTIFIERS:
            self.fail(
                path, f"unknown quantifier {quantifier!r}; expected one of {', '.join(QUANTIFIERS)}"
            )
        if self.kind != "accounts":
            self.fail(path, "a user quantifier needs kind ACCOUNTS (an account-level audience)")
        if quantified:
            self.fail(path, "a user quantifier cannot be nested inside another user quantifier")

    def group(
        self, items: object, path: str, depth: int, what: str, *, quantified: bool
    ) -> Condition:
        listed = self.sequence(items, path)
        if not listed:
            self.fail(path, "needs at least one condition")
        conditions = [
            self.condition(item, f"{path}[{i}]", depth + 1, quantified=quantified)
            for i, item in enumerate(listed)
        ]
        if len(conditions) == 1:
            return conditions[0]
        return And(tuple(conditions)) if what == "all_of" else Or(tuple(conditions))

    def event_condition(
        self, item: Mapping[str, Any], path: str, depth: int, *, funnel: bool
    ) -> Condition:
        """``performed <event> <op> <N> times`` (+ where, window, and a ``then`` funnel step)."""
        if depth > MAX_DEPTH:
            self.fail(path, f"conditions nest deeper than {MAX_DEPTH} levels")
        name = self.name(item["event"], f"{path}.event")
        where: list[Condition] = [
            self.where_item(entry, f"{path}.where[{i}]", funnel=funnel)
            for i, entry in enumerate(self.sequence(item.get("where", []), f"{path}.where"))
        ]
        if funnel:
            window: Window | None = self.parent_window(
                item.get("within_of_parent"), f"{path}.within_of_parent"
            )
        else:
            window = self.window(item.get("window"), f"{path}.window")
        if item.get("then") is not None:
            step_path = f"{path}.then"
            step = self.mapping(item["then"], step_path)
            self.known_keys(step, step_path, _THEN_KEYS)
            if "event" not in step:
                self.fail(step_path, "a funnel step needs an event")
            where.append(self.event_condition(step, step_path, depth + 1, funnel=True))
        op, count = self.count(item.get("count"), f"{path}.count")
        compare = Compare(Reduce(Stream(name, tuple(where), window=window), "count"), op, (count,))
        if funnel:
            negate = item.get("negate", False)
            if not isinstance(negate, bool):
                self.fail(f"{path}.negate", f"expected true or false, found {_json(negate)}")
            if negate:
                return Not(compare)
        return compare

    def count(self, node: object, path: str) -> tuple[CompareOp, Literal]:
        if node is None:
            return "at_least", Literal(1)
        item = self.mapping(node, path)
        self.known_keys(item, path, frozenset({"op", "value"}))
        written = item.get("op", "at_least")
        op = COUNT_OPERATORS.get(_snake(written)) if isinstance(written, str) else None
        if op is None:
            self.fail(
                f"{path}.op",
                f"unknown count operator {_json(written)}; expected at least, exactly or at most",
            )
        value = item.get("value", 1)
        if not _is_int(value) or not 0 <= value < 2**63:
            self.fail(
                f"{path}.value", f"expected a whole number of times ≥ 0, found {_json(value)}"
            )
        return op, Literal(value)

    def where_item(self, node: object, path: str, *, funnel: bool) -> Condition:
        item = self.mapping(node, path)
        self.known_keys(item, path, frozenset({"property", "context", "op", "value"}))
        left: PropertyRef | ContextRef
        if ("property" in item) == ("context" in item):
            self.fail(path, "expected exactly one of property, context")
        if "property" in item:
            left = PropertyRef(self.name(item["property"], f"{path}.property"))
        else:
            left = ContextRef(self.name(item["context"], f"{path}.context"))
        return self.comparison(left, item, path, funnel=funnel)

    def comparison(
        self, left: Value, item: Mapping[str, Any], path: str, *, funnel: bool
    ) -> Compare:
        written = item.get("op")
        op = OPERATORS.get(_snake(written)) if isinstance(written, str) else None
        if op is None:
            self.fail(
                f"{path}.op",
                f"unknown operator {_json(written)}; expected one of "
                + ", ".join(name.replace("_", " ") for name in OPERATORS),
            )
        value = item.get("value")
        at = f"{path}.value"
        if op in ("exists", "absent"):
            if value is not None:
                self.fail(at, f"{written} takes no value")
            return Compare(left, op)
        if op in _DURATION_OPS:
            return Compare(left, op, hours=self.duration(value, at, "duration"))
        if op in ("one_of", "contains"):
            listed = list(value) if isinstance(value, list | tuple) else [value]
            if not listed:
                self.fail(at, f"{written} needs at least one value")
            literals = tuple(
                self.literal(entry, op, f"{at}[{i}]" if isinstance(value, list | tuple) else at)
                for i, entry in enumerate(listed)
            )
            return Compare(left, op, literals)
        return Compare(left, op, (self.operand(value, op, at, funnel=funnel),))

    def operand(self, value: object, op: CompareOp, path: str, *, funnel: bool) -> Value:
        """A constant, or a dynamic reference: ``{"trait": key}``, ``{"parent_property": p}``."""
        if isinstance(value, Mapping):
            self.known_keys(value, path, frozenset({"trait", "parent_property"}))
            if len(value) != 1:
                self.fail(path, "expected exactly one of trait, parent_property")
            if "trait" in value:
                return TraitRef(self.name(value["trait"], f"{path}.trait"))
            if not funnel:
                self.fail(
                    f"{path}.parent_property",
                    "a parent event's property is only allowed in a funnel step (then)",
                )
            return PropertyRef(self.name(value["parent_property"], f"{path}.parent_property"), True)
        return self.literal(value, op, path)

    def literal(self, value: object, op: CompareOp, path: str) -> Literal:
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(path, f"expected a finite number, found {value!r}")
        if _is_int(value) and not -(2**63) <= value < 2**63:
            self.fail(path, f"the number {value} does not fit in 64 bits")
        if not (value is None or isinstance(value, str | int | float | bool)):
            self.fail(
                path, f"expected a string, a number, true, false or null, found {_json(value)}"
            )
        if op in _ORDERING_OPS and (value is None or isinstance(value, bool)):
            self.fail(path, f"expected a number or a string, found {_json(value)}")
        if (op in _STRING_OPS or op == "contains") and not isinstance(value, str):
            self.fail(path, f"expected a string, found {_json(value)}")
        if op in ("before_date", "after_date") and parse_timestamp(value) is None:
            self.fail(
                path,
                f"expected an ISO-8601 timestamp such as '2023-12-07T18:50:00Z', found "
                f"{_json(value)}",
            )
        return Literal(value)

    # -- windows and durations --

    def window(self, node: object, path: str) -> Window | None:
        if node is None:
            return None
        item = self.mapping(node, path)
        written = item.get("type")
        if written == "any_time":
            self.known_keys(item, path, frozenset({"type"}))
            return None
        if written == "within":
            self.known_keys(item, path, frozenset({"type", "days", "hours"}))
            return Window(0, self.duration(_without(item, "type"), path, "window"))
        if written == "in_between":
            self.known_keys(item, path, frozenset({"type", "from", "to", "unit"}))
            unit = item.get("unit", "days")
            if unit not in ("days", "hours"):
                self.fail(f"{path}.unit", f"expected days or hours, found {_json(unit)}")
            start = self.amount(item.get("from"), f"{path}.from", unit, minimum=0)
            end = self.amount(item.get("to"), f"{path}.to", unit, minimum=1)
            if start >= end:
                self.fail(
                    path, f"from ({item.get('from')}) must be less than to ({item.get('to')})"
                )
            return Window(start, end)
        self.fail(
            f"{path}.type",
            f"unknown window type {_json(written)}; expected within, in_between or any_time",
        )

    def parent_window(self, node: object, path: str) -> Window:
        if node is None:
            self.fail(path, 'a funnel step needs within_of_parent, as in {"days": 1}')
        return Window(0, self.duration(node, path, "window"), parent=True)

    def duration(self, node: object, path: str, what: str) -> int:
        """``{"days": N}``, ``{"hours": N}`` or a bare N (days), in hours."""
        if _is_int(node):
            return self.amount(node, path, "days", minimum=1, what=what)
        item = self.mapping(node, path)
        self.known_keys(item, path, frozenset({"days", "hours"}))
        if len(item) != 1:
            self.fail(path, "expected exactly one of days, hours")
        unit = next(iter(item))
        return self.amount(item[unit], f"{path}.{unit}", unit, minimum=1, what=what)

    def amount(
        self, value: object, path: str, unit: str, *, minimum: int, what: str = "window"
    ) -> int:
        if not _is_int(value):
            self.fail(path, f"expected a whole number of {unit}, found {_json(value)}")
        if value < minimum:
            self.fail(path, f"{what} of {value} {unit}; a {what} is at least 1 hour")
        hours = value * (24 if unit == "days" else 1)
        if hours > MAX_WINDOW_HOURS:
            self.fail(path, f"{what} longer than 3 years ({MAX_WINDOW_HOURS:,} hours)")
        return int(hours)

    # -- computed traits --

    def computed(self, node: object, path: str, *, strict: bool) -> Reduce:
        item = self.mapping(node, path)
        self.known_keys(item, path, _COMPUTED_KEYS if strict else _COMPUTED_KEYS | _SETTINGS_KEYS)
        written = item.get("type")
        op = COMPUTED_TYPES.get(written) if isinstance(written, str) else None
        if written == "aggregation":
            function = item.get("aggregation")
            op = AGGREGATIONS.get(function) if isinstance(function, str) else None
            if op is None:
                self.fail(
                    f"{path}.aggregation",
                    f"unknown aggregation {_json(function)}; expected one of "
                    + ", ".join(AGGREGATIONS),
                )
        elif "aggregation" in item:
            self.fail(f"{path}.aggregation", "only allowed with type aggregation")
        if op is None:
            self.fail(
                f"{path}.type",
                f"unknown computed trait type {_json(written)}; expected one of "
                + ", ".join([*COMPUTED_TYPES, "aggregation"]),
            )
        if "event" not in item:
            self.fail(f"{path}.event", "missing; a computed trait needs the event it computes over")
        name = self.name(item["event"], f"{path}.event")
        where = tuple(
            self.where_item(entry, f"{path}.where[{i}]", funnel=False)
            for i, entry in enumerate(self.sequence(item.get("where", []), f"{path}.where"))
        )
        stream = Stream(name, where, window=self.window(item.get("window"), f"{path}.window"))
        has_value = "property" in item or "context" in item
        if op == "count":
            if has_value:
                self.fail(path, "a counter counts events; it takes no property")
            return Reduce(stream, "count")
        if "property" in item and "context" in item:
            self.fail(path, "expected one of property, context, not both")
        value: PropertyRef | ContextRef
        if "property" in item:
            value = PropertyRef(self.name(item["property"], f"{path}.property"))
        elif "context" in item:
            value = ContextRef(self.name(item["context"], f"{path}.context"))
        else:
            self.fail(f"{path}.property", f"missing; a {written} trait needs a property")
        frequency = MOST_FREQUENT_MIN if op == "mode" else None
        return Reduce(stream, op, value, min_frequency=frequency)

    # -- shapes --

    def mapping(self, node: object, path: str) -> Mapping[str, Any]:
        if not isinstance(node, Mapping):
            self.fail(path, f"expected an object, found {_json(node)}")
        return node

    def sequence(self, node: object, path: str) -> Sequence[Any]:
        if not isinstance(node, list | tuple):
            self.fail(path, f"expected a list, found {_json(node)}")
        return node

    def name(self, node: object, path: str) -> str:
        if not isinstance(node, str) or not node:
            self.fail(path, f"expected a non-empty string, found {_json(node)}")
        return node

    def known_keys(self, item: Mapping[str, Any], path: str, allowed: frozenset[str]) -> None:
        for key in item:
            if key not in allowed:
                self.fail(
                    f"{path}.{key}" if isinstance(key, str) else path,
                    f"unknown key {key!r}; expected one of {', '.join(sorted(allowed))}",
                )


def _snake(written: str) -> str:
    """``"greater than or equal"`` and ``"Greater_Than_Or_Equal"`` alike."""
    return "_".join(written.lower().replace("_", " ").split())


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _without(item: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in item.items() if k != key}


def _json(value: object) -> str:
    """A value as the error quotes it: a string as ``'x'`` (as the language writes it)."""
    if isinstance(value, str):
        text = repr(value)
        return text if len(text) <= 80 else text[:79] + "…"
    try:
        text = json.dumps(value, default=str, ensure_ascii=False)
    except (ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 80 else text[:79] + "…"


def _quoted(shape: object) -> str:
    try:
        text = json.dumps(shape, default=str, ensure_ascii=False)
    except (ValueError, RecursionError):
        return "(the builder definition)"
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 1] + "…"
