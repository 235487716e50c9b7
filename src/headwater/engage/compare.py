"""What Segment Query Language's comparators and extractors mean for one value: shared by the
real-time engine (over events and profile state) and the tests that check the batch SQL
against it.

Numbers compare as numbers (a numeric string counts as its number, a bool never does), other
values as strings; a missing value (None) satisfies only ``absent`` and ``omits``, as Segment's
reference says of ``differs`` ("only returns true if the value exists"). An array value
satisfies a condition when one of its elements does (Segment's ``$`` operator for array
properties). Dates are ISO-8601 timestamps; ``within_last`` and friends count whole hours from
the moment of evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from headwater.engage.definition import CompareOp
from headwater.timestamps import parse_timestamp


def read_path(value: Any, path: str) -> Any:
    """``a.b.c`` of nested objects, or None."""
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def number(value: Any) -> float | None:
    """A value as a number, if it is one (numbers and numeric strings; never a bool)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def text(value: Any) -> str:
    """A scalar as Segment's string comparisons see it (``true``, ``3``, ``3.5``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, bool) or isinstance(right, bool):
        return (
            left is right
            if isinstance(left, bool) and isinstance(right, bool)
            else (text(left) == text(right))
        )
    a, b = number(left), number(right)
    if a is not None and b is not None:
        return a == b
    return text(left) == text(right)


def _order(left: Any, right: Any) -> int | None:
    """-1, 0 or 1 when the two compare as numbers, else None."""
    a, b = number(left), number(right)
    if a is None or b is None:
        return None
    return (a > b) - (a < b)


def _instant(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    parsed = parse_timestamp(value)
    return parsed.timestamp() if parsed is not None else None


def holds(
    op: CompareOp,
    left: Any,
    args: Sequence[Any] = (),
    *,
    hours: int | None = None,
    now: float = 0.0,
) -> bool:
    """Whether ``left.op(args…)`` holds."""
    if op == "absent":
        return left is None
    if op == "exists":
        return left is not None
    if op == "omits":
        return not holds("contains", left, args)
    if left is None:
        return False
    if isinstance(left, list):
        return any(holds(op, item, args, hours=hours, now=now) for item in left)
    if op == "equals":
        return _equal(left, args[0])
    if op == "differs":
        return not _equal(left, args[0])
    if op == "one_of":
        return any(_equal(left, arg) for arg in args)
    if op in ("greater_than", "at_least", "less_than", "at_most"):
        order = _order(left, args[0])
        if order is None:
            return False
        return {
            "greater_than": order > 0,
            "at_least": order >= 0,
            "less_than": order < 0,
            "at_most": order <= 0,
        }[op]
    if op == "contains":
        string = text(left)
        return any(text(arg) in string for arg in args if arg is not None)
    if op == "starts_with":
        return args[0] is not None and text(left).startswith(text(args[0]))
    if op == "ends_with":
        return args[0] is not None and text(left).endswith(text(args[0]))
    at = _instant(left)
    if at is None:
        return False
    if op in ("before_date", "after_date"):
        other = _instant(args[0])
        if other is None:
            return False
        return at < other if op == "before_date" else at > other
    span = (hours or 0) * 3600.0
    if op == "within_last":
        return now - span <= at <= now
    if op == "within_next":
        return now <= at <= now + span
    if op == "before_last":
        return at <= now - span
    if op == "after_next":
        return at >= now + span
    raise ValueError(f"unknown comparator {op!r}")  # the parser admits none other
