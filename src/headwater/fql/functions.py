"""FQL's functions and value rules, as Segment's FQL reference states them.

Types are strict: ``typeof`` knows string, number, bool, list, object and null; a function
given a type it has no answer for either answers null (the case functions, as for null) or,
where Segment says it "can't infer your intent" (``length`` of an object, ``number('abc')``),
raises ``FQLEvaluationError`` so the caller fails closed.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any

import msgspec

from headwater.errors import FQLEvaluationError
from headwater.fql import glob
from headwater.timestamps import parse_timestamp


def typeof(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def equal(left: Any, right: Any) -> bool:
    """Same type and equal; lists and objects as their JSON text, so key order counts."""
    kind = typeof(left)
    if kind != typeof(right):
        return False
    if kind in ("list", "object"):
        return _json(left) == _json(right)
    return bool(left == right)


def ordered(operator: str, left: Any, right: Any) -> bool:
    """Numbers compare; so do two ISO-8601 timestamps (Segment's own cut-over filter example
    compares ``received_at >= '2023-04-21T19:55:00.933Z'``); anything else is false."""
    if is_number(left) and is_number(right):
        a, b = left, right
    else:
        a, b = _instant(left), _instant(right)
        if a is None or b is None:
            return False
    if operator == "<":
        return bool(a < b)
    if operator == "<=":
        return bool(a <= b)
    if operator == ">":
        return bool(a > b)
    return bool(a >= b)


def member(item: Any, items: Any) -> bool:
    if not isinstance(items, list) or typeof(item) in ("list", "object"):
        return False
    return any(equal(item, candidate) for candidate in items)


def contains(text: Any, part: Any) -> bool:
    return isinstance(text, str) and isinstance(part, str) and part in text


def match(text: Any, pattern: Any) -> bool:
    return isinstance(text, str) and isinstance(pattern, str) and glob.matches(text, pattern)


def length(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.encode())  # bytes, as the reference says: length('ア') = 3
    if isinstance(value, list):
        return len(value)
    raise FQLEvaluationError(f"length() takes a string or a list, not {typeof(value)}")


def lowercase(value: Any) -> str | None:
    return value.lower() if isinstance(value, str) else None


def uppercase(value: Any) -> str | None:
    return value.upper() if isinstance(value, str) else None


_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def snakecase(value: Any) -> str | None:
    return "_".join(w.lower() for w in _WORDS.findall(value)) if isinstance(value, str) else None


def kebabcase(value: Any) -> str | None:
    return "-".join(w.lower() for w in _WORDS.findall(value)) if isinstance(value, str) else None


def titlecase(value: Any) -> str | None:
    """First letter of each space-separated word upper-cased, the rest left alone."""
    if not isinstance(value, str):
        return None
    return " ".join(w[:1].upper() + w[1:] for w in value.split(" "))


def to_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if is_number(value):
        return bool(value != 0)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise FQLEvaluationError(f"bool() cannot read {_json(value).decode()[:50]}")


def to_string(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 1.0 reads as 1, as in JSON from a browser
    if is_number(value):
        return str(value)
    return _json(value).decode()


def to_number(value: Any) -> int | float | None:
    if value is None or is_number(value):
        return value  # type: ignore[no-any-return]
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return int(number) if number.is_integer() and "." not in value else number
    raise FQLEvaluationError(f"number() cannot read {_json(value).decode()[:50]}")


def semver(left: Any, operator: Any, right: Any) -> bool:
    """Segment's browser matcher has it: ``semver(context.library.version, '>=', '2.1')``."""
    a, b = _version(left), _version(right)
    compare = _VERSION_OPERATORS.get(operator) if isinstance(operator, str) else None
    return a is not None and b is not None and compare is not None and compare(a, b)


_VERSION_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "contains": contains,
    "match": match,
    "length": length,
    "lowercase": lowercase,
    "uppercase": uppercase,
    "snakecase": snakecase,
    "kebabcase": kebabcase,
    "titlecase": titlecase,
    "typeof": typeof,
    "bool": to_bool,
    "string": to_string,
    "number": to_number,
    "semver": semver,
}


def _version(value: Any) -> tuple[int, int, int] | None:
    if not isinstance(value, str):
        return None
    parts = value.split(".")
    if len(parts) > 3:
        return None
    try:
        numbers = [int(p.strip()) for p in parts]
    except ValueError:
        return None
    numbers += [0] * (3 - len(numbers))
    return numbers[0], numbers[1], numbers[2]


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str) or len(value) < 10 or not value[:4].isdigit():
        return None
    return parse_timestamp(value)


def _json(value: Any) -> bytes:
    return msgspec.json.encode(_integral(value))


def _integral(value: Any) -> Any:
    """1.0 and 1 are one number in JSON from a browser; make them one text too."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral(v) for v in value]
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    return value
