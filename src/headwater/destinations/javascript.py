"""JavaScript's value rules, for code that must answer as Segment's JavaScript does.

Triggers (destination-subscriptions), mappings (actions-core) and the Actions destinations
test and convert values the JavaScript way: truthiness, ``String(x)``, ``Number(x)``, UTF-16
lengths, ``JSON.stringify``. One set of rules here keeps them from drifting apart.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final


class Undefined(enum.Enum):
    """JavaScript's ``undefined``: it must stay distinct from null until the output is built."""

    UNDEFINED = enum.auto()


UNDEFINED: Final = Undefined.UNDEFINED

MAX_SAFE_INTEGER: Final = 2**53 - 1
# String.prototype.trim's set: WhiteSpace and LineTerminator.
WHITESPACE: Final = (
    "\t\n\v\f\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_ASTRAL: Final = re.compile("[\U00010000-\U0010ffff]")


def type_of(value: Any) -> str:
    """The type name actions-core puts in its messages (``realTypeOf``)."""
    if value is UNDEFINED:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def truthy(value: Any) -> bool:
    """JavaScript truthiness: actions-core tests many options with ``if (opts.x)``."""
    if value is UNDEFINED or value is None or value is False:
        return False
    if isinstance(value, int | float):
        return value == value and value != 0
    if isinstance(value, str):
        return value != ""
    return True


def number_to_string(number: float) -> str:
    """``String(number)``: JavaScript switches to exponents at 1e21 and 1e-7, Python does not."""
    if isinstance(number, int):
        if -MAX_SAFE_INTEGER <= number <= MAX_SAFE_INTEGER:
            return str(number)
        try:
            number = float(number)
        except OverflowError:
            return "Infinity" if number > 0 else "-Infinity"
    if number != number:
        return "NaN"
    if math.isinf(number):
        return "Infinity" if number > 0 else "-Infinity"
    if number == 0:
        return "0"
    sign = "-" if number < 0 else ""
    exact = Decimal(repr(abs(number))).normalize()  # repr holds the shortest round-trip digits
    _, digit_tuple, exponent = exact.as_tuple()
    assert isinstance(exponent, int)
    digits = "".join(map(str, digit_tuple))
    k = len(digits)
    n = exponent + k  # the value is 0.digits * 10**n
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return f"{sign}{digits[:n]}.{digits[n:]}"
    if -6 < n <= 0:
        return f"{sign}0.{'0' * -n}{digits}"
    e = n - 1
    mantissa = digits if k == 1 else f"{digits[0]}.{digits[1:]}"
    return f"{sign}{mantissa}e{'+' if e > 0 else '-'}{abs(e)}"


def to_string(value: Any) -> str:
    """``String(value)``, which is how templates and ``@replace`` see non-strings."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if value is UNDEFINED:
        return "undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_to_string(value)
    if isinstance(value, list):
        return ",".join("" if x is None or x is UNDEFINED else to_string(x) for x in value)
    return "[object Object]"


def loosely_empty(value: Any) -> bool:
    """``value == ''`` with JavaScript's loose equality, used by ``@if`` ``blank``."""
    if isinstance(value, str):
        return value == ""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, list):
        return to_string(value) == ""
    return False


def utf16_units(text: str) -> str:
    """The string as JavaScript indexes it: astral characters split into surrogate pairs."""
    if text.isascii() or not _ASTRAL.search(text):
        return text

    def split(match: re.Match[str]) -> str:
        code = ord(match.group()) - 0x10000
        return chr(0xD800 + (code >> 10)) + chr(0xDC00 + (code & 0x3FF))

    return _ASTRAL.sub(split, text)


def from_utf16_units(units: str) -> str:
    if units.isascii():
        return units
    return units.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def utf16_len(text: str) -> int:
    return len(text) if text.isascii() else len(utf16_units(text))


def array_index(name: str) -> int:
    """The array index a property name denotes in JavaScript, or -1."""
    if name.isascii() and name.isdigit() and (name == "0" or name[0] != "0"):
        index = int(name)
        if index < 2**32 - 1:
            return index
    return -1


def own_keys(obj: Mapping[str, Any]) -> list[str]:
    """Own keys in JavaScript order: array indices ascending, then insertion order."""
    keys = list(obj)
    indices = [key for key in keys if array_index(key) >= 0]
    if not indices:
        return keys
    indices.sort(key=int)
    return indices + [key for key in keys if array_index(key) < 0]


# Unambiguous, so a long run of digits that fails to match costs one pass, not its square.
_JS_DECIMAL: Final = re.compile(
    r"[+-]?(?:Infinity|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
)
_JS_RADIX: Final = re.compile(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")


def to_number(value: Any) -> float:
    """``Number(value)``: hex, octal and binary literals count, Python's ``inf`` does not."""
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return to_double(value)
    if value is None:
        return 0.0
    if isinstance(value, list):
        return to_number(to_string(value))
    if not isinstance(value, str):
        return math.nan  # undefined, objects
    text = value.strip(WHITESPACE)
    if not text:
        return 0.0
    if _JS_DECIMAL.fullmatch(text):
        return float(text)
    if _JS_RADIX.fullmatch(text):
        try:
            return float(int(text, 0))
        except OverflowError:
            return math.inf
    return math.nan


def to_double(number: int | float) -> float:
    """An int as the double JSON.parse would have made of it (JavaScript has no big ints)."""
    if type(number) is float:
        return number
    try:
        return float(number)
    except OverflowError:
        return math.inf if number > 0 else -math.inf


def as_python_number(number: float) -> int | float:
    """A JavaScript number as Python would write it: integral values as int, like JSON shows."""
    if math.isfinite(number) and number.is_integer() and abs(number) <= MAX_SAFE_INTEGER:
        return int(number)
    return number


def _quote(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    if _SURROGATE.search(encoded):  # JSON.stringify escapes lone surrogates
        encoded = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", encoded)
    return encoded


def json_stringify(value: Any) -> str | Undefined:
    """``JSON.stringify``: compact, JavaScript key order and numbers, undefined left out."""
    if value is UNDEFINED:
        return Undefined.UNDEFINED
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return "null"
        return number_to_string(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, list):
        items = [json_stringify(item) for item in value]
        return "[" + ",".join("null" if item is UNDEFINED else item for item in items) + "]"
    if isinstance(value, dict):
        members = []
        for key in own_keys(value):
            encoded = json_stringify(value[key])
            if encoded is not UNDEFINED:
                members.append(f"{_quote(key)}:{encoded}")
        return "{" + ",".join(members) + "}"
    return "{}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"JSON.parse does not know {name}")


def _parse_js_int(text: str) -> int | float:
    number = int(text)
    return number if abs(number) <= MAX_SAFE_INTEGER else float(text)


def json_parse(text: str) -> Any:
    """``JSON.parse``, giving the text back when it is not JSON."""
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_parse_js_int)
    except (ValueError, RecursionError):
        return text
