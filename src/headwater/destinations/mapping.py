"""Destination Actions field mappings: Segment's mapping kit, validated once, rendered per event.

A mapping is JSON. An object whose keys all start with ``@`` (plus an optional ``_metadata``) is
a directive; every other object or array is walked and its values rendered; anything else is a
literal. The answers follow ``@segment/actions-core``'s ``transform`` (mapping-kit, read at
3.170.0) exactly, quirks included, because saved Segment mappings must keep producing the same
payloads here; the answers are meant to be checked against actions-core run under Node.

Directives
    ``@path``  ``"$.a.b[0]"`` or ``"a.b"``: reads the payload. Only the first ``$.`` is removed;
        segments split at ``.``, ``[`` before a quote or digit and ``]`` after one, and quotes are
        dropped, so ``a["b.c"]`` still means a, b, c. Like JavaScript's ``prev && prev[key]``,
        a walk stops at a falsy value (``null``, ``false``, ``0``, ``""``), which is the result:
        ``a.b`` of ``{"a": null}`` is ``null``, not missing. Strings and arrays answer digit keys
        and ``length`` (in UTF-16 code units). Missing is *absent*: the key is left out.
    ``@template``  ``{{{ path }}}`` placeholders, then ``{{ path }}`` ones over the result (a value
        holding ``{{x}}`` is expanded again, as in actions-core). Paths are trimmed, are not
        stripped of ``$.``, and an empty one means the whole payload. Missing or null gives
        ``""``; other values become JavaScript strings (``1e+21``, ``1,2``, ``[object Object]``).
    ``@if``  ``exists`` (not null and not missing) or ``blank`` (additionally ``!= ""`` in
        JavaScript's loose sense, so ``0``, ``false``, ``[]`` and ``[""]`` are blank), then
        ``then`` / ``else``. ``exists`` wins when both are given. A falsy ``else`` (``false``,
        ``0``, ``""``, ``null``) gives absent, as does a missing branch.
    ``@literal``  its value, rendered (so directives inside still run).
    ``@arrayPath``  ``[path, shape]``: when the path finds an object or array and the shape is a
        non-empty object, each element (an object counts as one) is rendered with the shape as
        its payload; otherwise the found value itself.
    ``@case``  ``{"operator": "lower"|"upper", "value": ...}``: strings change case, anything
        else passes through; a falsy ``value`` gives absent.
    ``@replace``  ``pattern`` / ``replacement`` (then ``pattern2`` / ``replacement2``), literal
        text, at most 10 UTF-16 units each; ``global`` (default true) and ``ignorecase``
        (JavaScript's non-Unicode case folding). Numbers and booleans are replaced as their
        strings; any other rendered value (missing, null, objects) gives ``""``. ``$&``, `` $` ``,
        ``$'`` and ``$$`` in a replacement work as in ``String.prototype.replace``.
    ``@merge``  ``{"objects": [...], "direction": "left"|"right"}``: ``Object.assign`` of the
        rendered objects; ``left`` lets earlier objects win. Strings and arrays contribute their
        indices; other non-objects nothing; a missing value in a later object removes the key.
    ``@flatten``  ``{"value": ..., "separator": "."}`` (``omitArrays`` keeps arrays whole):
        nested keys joined; a non-object value becomes ``{"": value}``.
    ``@json``  ``{"mode": "encode"|"decode", "value": ...}``: ``JSON.stringify`` (JavaScript key
        order and number format) or ``JSON.parse`` (invalid JSON passes through unchanged).
    ``@transform``  ``{"apply": mapping, "mapping": mapping}``: renders ``apply`` against the
        payload and ``mapping`` against that result.
    ``@excludeWhenNull``  absent when the value renders to null; in objects, null values (at any
        depth of nested objects, not inside arrays) are dropped.

Validation mirrors actions-core's ``validate``: it checks directive shapes where actions-core
does, and, like it, does not look inside arrays or inside ``@literal`` / ``@excludeWhenNull``
objects. Other problems (an unknown directive inside an array, ``@merge`` without a
``direction``) surface as a MappingError when rendering reaches them, as in actions-core, where
a branch that is not taken never fails.

Destination-field paths (Segment's dot notation) are opt-in: ``expand_keys=True`` makes the
top-level keys of a mapping (an action's ``fields``) paths, so ``info[0].email`` (or Segment's
``info.[0].email``) builds ``{"info": [{"email": ...}]}`` and a double-quoted ``"user.email"`` is
the literal key ``user.email``. Off by default because actions-core treats every key literally
and existing mappings may hold keys with dots. Containers all of whose values are absent are
left out; array positions nobody fills are null; overlapping paths are refused when compiling.

Deliberate differences from actions-core:
    * ``@liquid`` is not supported and fails validation.
    * Properties a JavaScript value inherits (``constructor``, ``toString``, ``__proto__``, array
      methods...) are missing when read by a path, and ``__proto__`` keys are ordinary keys.
    * The root of a mapping must be an object (actions-core would spread an array or a string
      into one) and its ``__segment_internal_directive`` key has no special meaning.
    * Absent values inside arrays come out as null (what ``JSON.stringify`` makes of
      ``undefined`` there); a mapping whose root is a directive rendering to absent gives None.
    * Integers in payloads keep their exact value; they are rounded like JavaScript numbers only
      where they are turned into text.
    * Error messages and paths are ours (``fields.order.@path``), and validation stops at the
      first error where actions-core gathers all of them.

``FieldSpec``, ``check_fields`` and ``coerce_output`` follow actions-core's action schema check:
empty values (null, and ``""`` at the top level) are removed first, then values are coerced like
ajv with ``coerceTypes: "array"`` (``"12"`` to 12, ``"true"`` to true, a scalar to a one-item
array and back), unknown fields dropped, and a required field that is left with nothing or a
value of the wrong type is a MappingError, which rejects the message rather than retrying it.
The ``datetime`` format check approximates dayjs and V8 date parsing (numbers, ISO 8601,
RFC 2822 and dayjs's ``YYYY-MM-DD HH:mm:ss`` forms).
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from email.utils import parsedate_tz
from functools import lru_cache
from typing import Any, Final, Literal

__all__ = [
    "CompiledMapping",
    "FieldSpec",
    "MappingError",
    "check_fields",
    "coerce_output",
    "compile_mapping",
    "render_mapping",
    "validate_mapping",
]


class MappingError(ValueError):
    """A mapping, or what it rendered, cannot be used; ``path`` says where in the mapping."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = message
        self.path = path


_Where = tuple[str | int, ...]


def _dotted(where: _Where) -> str:
    text = ""
    for part in where:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else part
    return text


def _error(message: str, where: _Where) -> MappingError:
    return MappingError(message, _dotted(where))


# --- JavaScript values -------------------------------------------------------------------------


class _Absent(enum.Enum):
    """JavaScript's ``undefined``: it must stay distinct from null until the output is built."""

    ABSENT = enum.auto()


_ABSENT: Final = _Absent.ABSENT

_MAX_SAFE_INTEGER: Final = 2**53 - 1
# String.prototype.trim's set: WhiteSpace and LineTerminator.
_JS_SPACE: Final = (
    "\t\n\v\f\r \xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000\ufeff"
)
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_ASTRAL: Final = re.compile("[\U00010000-\U0010ffff]")


def _js_type(value: Any) -> str:
    """The type name actions-core puts in its messages (``realTypeOf``)."""
    if value is _ABSENT:
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


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _truthy(value: Any) -> bool:
    """JavaScript truthiness: actions-core tests many options with ``if (opts.x)``."""
    if value is _ABSENT or value is None or value is False:
        return False
    if isinstance(value, int | float):
        return value == value and value != 0
    if isinstance(value, str):
        return value != ""
    return True


def _js_number(number: float) -> str:
    """``String(number)``: JavaScript switches to exponents at 1e21 and 1e-7, Python does not."""
    if isinstance(number, int):
        if -_MAX_SAFE_INTEGER <= number <= _MAX_SAFE_INTEGER:
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


def _js_string(value: Any) -> str:
    """``String(value)``, which is how templates and ``@replace`` see non-strings."""
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if value is _ABSENT:
        return "undefined"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _js_number(value)
    if isinstance(value, list):
        return ",".join("" if x is None or x is _ABSENT else _js_string(x) for x in value)
    return "[object Object]"


def _loosely_empty(value: Any) -> bool:
    """``value == ''`` with JavaScript's loose equality, used by ``@if`` ``blank``."""
    if isinstance(value, str):
        return value == ""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, list):
        return _js_string(value) == ""
    return False


def _utf16_units(text: str) -> str:
    """The string as JavaScript indexes it: astral characters split into surrogate pairs."""
    if text.isascii() or not _ASTRAL.search(text):
        return text

    def split(match: re.Match[str]) -> str:
        code = ord(match.group()) - 0x10000
        return chr(0xD800 + (code >> 10)) + chr(0xDC00 + (code & 0x3FF))

    return _ASTRAL.sub(split, text)


def _from_utf16_units(units: str) -> str:
    return units.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")


def _utf16_len(text: str) -> int:
    return len(text) if text.isascii() else len(_utf16_units(text))


def _array_index(name: str) -> int:
    """The array index a property name denotes in JavaScript, or -1."""
    if name.isascii() and name.isdigit() and (name == "0" or name[0] != "0"):
        index = int(name)
        if index < 2**32 - 1:
            return index
    return -1


def _js_keys(obj: Mapping[str, Any]) -> list[str]:
    """Own keys in JavaScript order: array indices ascending, then insertion order."""
    keys = list(obj)
    indices = [key for key in keys if _array_index(key) >= 0]
    if not indices:
        return keys
    indices.sort(key=int)
    return indices + [key for key in keys if _array_index(key) < 0]


_JS_DECIMAL: Final = re.compile(
    r"[+-]?(?:Infinity|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
)
_JS_RADIX: Final = re.compile(r"0(?:[xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)")


def _js_to_number(text: str) -> float:
    """``Number(text)``: hex, octal and binary literals count, Python's ``inf`` does not."""
    text = text.strip(_JS_SPACE)
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


def _as_python_number(number: float) -> int | float:
    """A JavaScript number as Python would write it: integral values as int, like JSON shows."""
    if math.isfinite(number) and number.is_integer() and abs(number) <= _MAX_SAFE_INTEGER:
        return int(number)
    return number


def _quote(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    if _SURROGATE.search(encoded):  # JSON.stringify escapes lone surrogates
        encoded = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", encoded)
    return encoded


def _json_encode(value: Any) -> str | _Absent:
    """``JSON.stringify``: compact, JavaScript key order and numbers, undefined left out."""
    if value is _ABSENT:
        return _Absent.ABSENT
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return "null"
        return _js_number(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, list):
        items = [_json_encode(item) for item in value]
        return "[" + ",".join("null" if item is _ABSENT else item for item in items) + "]"
    if isinstance(value, dict):
        members = []
        for key in _js_keys(value):
            encoded = _json_encode(value[key])
            if encoded is not _ABSENT:
                members.append(f"{_quote(key)}:{encoded}")
        return "{" + ",".join(members) + "}"
    return "{}"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"JSON.parse does not know {name}")


def _parse_js_int(text: str) -> int | float:
    number = int(text)
    return number if abs(number) <= _MAX_SAFE_INTEGER else float(text)


def _json_decode(text: str) -> Any:
    """``JSON.parse``, giving the text back when it is not JSON."""
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_int=_parse_js_int)
    except (ValueError, RecursionError):
        return text


# --- paths into the payload --------------------------------------------------------------------

_Key = tuple[str, int]  # a property name and the array index it denotes (-1 when none)

_PATH_SPLIT: Final = re.compile(r"""\[(?=["'0-9])|\.|(?<=["'0-9])\]+""")


@lru_cache(maxsize=4096)
def _path_keys(path: str) -> tuple[_Key, ...]:
    """actions-core's ``get`` path syntax, split once and cached."""
    keys = []
    for part in _PATH_SPLIT.split(path):
        if part:
            name = part.replace('"', "").replace("'", "")
            keys.append((name, _array_index(name)))
    return tuple(keys)


def _string_property(text: str, name: str, index: int) -> Any:
    if index < 0:
        return _utf16_len(text) if name == "length" else _ABSENT
    units = _utf16_units(text)
    return units[index] if index < len(units) else _ABSENT


def _get(value: Any, keys: tuple[_Key, ...]) -> Any:
    """Walks ``keys`` like ``keys.reduce((o, k) => o && o[k], value)``."""
    for name, index in keys:
        if value is _ABSENT or value is None or value is False:
            return value
        cls = type(value)
        if cls is dict:
            value = value.get(name, _ABSENT)
        elif cls is list:
            if 0 <= index < len(value):
                value = value[index]
            else:
                value = len(value) if name == "length" else _ABSENT
        elif cls is str:
            if not value:
                return value
            value = _string_property(value, name, index)
        elif cls is int or cls is float:
            if value == 0 or value != value:
                return value
            value = _ABSENT
        elif isinstance(value, Mapping):
            value = value.get(name, _ABSENT)
        else:
            value = _ABSENT
    return value


def _path_from_directive(path: str) -> tuple[_Key, ...]:
    return _path_keys(path.replace("$.", "", 1))


# --- compiling ---------------------------------------------------------------------------------

_Eval = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Const:
    """A rendered value known when compiling, so containers of constants fold into one."""

    value: Any


_Compiled = _Eval | _Const


def _as_eval(compiled: _Compiled) -> _Eval:
    if isinstance(compiled, _Const):
        value = compiled.value
        return lambda _payload: value
    return compiled


def _failing(message: str, where: _Where) -> _Eval:
    """An evaluator for a part actions-core only rejects when it gets there."""

    def fail(_payload: Any) -> Any:
        raise _error(message, where)

    return fail


def _directive_name(node: Mapping[Any, Any]) -> str | None:
    """actions-core's ``isDirective`` and the key ``runDirective`` picks."""
    name = None
    for key in node:
        if isinstance(key, str) and key.startswith("@"):
            if name is None:
                name = key
        elif key != "_metadata":
            return None
    return name


def _compile(node: Any, where: _Where) -> _Compiled:
    if isinstance(node, dict):
        name = _directive_name(node)
        if name is not None:
            build = _DIRECTIVES.get(name)
            if build is None:
                return _failing(f"{name} is not a valid directive", where)
            return build(node[name], (*where, name))
        fields = [(key, _compile(value, (*where, key))) for key, value in node.items()]
        if all(isinstance(compiled, _Const) for _, compiled in fields):
            return _Const({k: c.value for k, c in fields if isinstance(c, _Const)})
        evaluators = [(key, _as_eval(compiled)) for key, compiled in fields]
        return lambda payload: {key: evaluate(payload) for key, evaluate in evaluators}
    if isinstance(node, list):
        items = [_compile(value, (*where, i)) for i, value in enumerate(node)]
        if all(isinstance(compiled, _Const) for compiled in items):
            return _Const([c.value for c in items if isinstance(c, _Const)])
        item_evaluators = [_as_eval(compiled) for compiled in items]
        return lambda payload: [evaluate(payload) for evaluate in item_evaluators]
    return _Const(node)


def _evaluator(node: Any, where: _Where) -> _Eval:
    return _as_eval(_compile(node, where))


def _path_reader(keys: tuple[_Key, ...]) -> _Eval:
    return lambda payload: _get(payload, keys)


def _compile_path(arg: Any, where: _Where) -> _Compiled:
    if isinstance(arg, str):
        return _path_reader(_path_from_directive(arg))
    resolve_path = _evaluator(arg, where)

    def path(payload: Any) -> Any:
        text = resolve_path(payload)
        if not isinstance(text, str):
            raise _error(f"@path: expected string, got {_js_type(text)}", where)
        return _get(payload, _path_from_directive(text))

    return path


_TRIPLE: Final = re.compile(r"\{\{\{([^}]+)\}\}\}")
_DOUBLE: Final = re.compile(r"\{\{([^}]+)\}\}")


def _placeholder(payload: Any, inner: str) -> str:
    value = _get(payload, _path_keys(inner.strip(_JS_SPACE)))
    return "" if value is None or value is _ABSENT else _js_string(value)


def _render_template(template: str, payload: Any) -> str:
    def substitute(match: re.Match[str]) -> str:
        return _placeholder(payload, match.group(1))

    return _DOUBLE.sub(substitute, _TRIPLE.sub(substitute, template))


def _compile_template(arg: Any, where: _Where) -> _Compiled:
    if isinstance(arg, str) and not _TRIPLE.search(arg):
        # Only the second pass applies, so the template splits once into text and keys.
        parts = _DOUBLE.split(arg)
        if len(parts) == 1:
            return _Const(arg)
        texts = parts[0::2]
        keys = [_path_keys(inner.strip(_JS_SPACE)) for inner in parts[1::2]]
        last = texts[-1]
        pieces = list(zip(texts, keys, strict=False))

        def template(payload: Any) -> str:
            out = []
            for text, key in pieces:
                out.append(text)
                value = _get(payload, key)
                if value is not None and value is not _ABSENT:
                    out.append(value if isinstance(value, str) else _js_string(value))
            out.append(last)
            return "".join(out)

        return template
    resolve_template = _evaluator(arg, where)

    def dynamic_template(payload: Any) -> str:
        text = resolve_template(payload)
        if not isinstance(text, str):
            raise _error(f"@template: expected string, got {_js_type(text)}", where)
        return _render_template(text, payload)

    return dynamic_template


def _compile_if(opts: Any, where: _Where) -> _Compiled:
    if not isinstance(opts, dict):
        return _failing('@if requires an object with an "exists" key', where)
    exists = opts.get("exists", _ABSENT)
    blank = opts.get("blank", _ABSENT)
    if not _truthy(exists) and not _truthy(blank):
        return _failing('@if requires an "exists" key or a "blank" key', where)
    test_blank = exists is _ABSENT
    if test_blank:
        condition = _evaluator(blank, (*where, "blank"))
    else:
        condition = _evaluator(exists, (*where, "exists"))
    then_ = opts.get("then", _ABSENT)
    when_true = None if then_ is _ABSENT else _evaluator(then_, (*where, "then"))
    else_ = opts.get("else", _ABSENT)
    when_false = _evaluator(else_, (*where, "else")) if _truthy(else_) else None

    def if_(payload: Any) -> Any:
        value = condition(payload)
        holds = value is not _ABSENT and value is not None
        if holds and test_blank:
            holds = not _loosely_empty(value)
        branch = when_true if holds else when_false
        return _ABSENT if branch is None else branch(payload)

    return if_


def _compile_case(opts: Any, where: _Where) -> _Compiled:
    if not isinstance(opts, dict):
        return _failing('@case requires an object with a "operator" key', where)
    operator = opts.get("operator", _ABSENT)
    if not _truthy(operator):
        return _failing('@case requires a "operator" key', where)
    value = opts.get("value", _ABSENT)
    if not _truthy(value):
        return _Const(_ABSENT)
    resolve_value = _evaluator(value, (*where, "value"))

    def case(payload: Any) -> Any:
        resolved = resolve_value(payload)
        if not isinstance(resolved, str):
            return resolved
        if operator == "lower":
            return resolved.lower()
        if operator == "upper":
            return resolved.upper()
        raise _error('operator key should have a value of "lower" or "upper"', where)

    return case


_MAX_PATTERN_LENGTH: Final = 10
_MAX_REPLACEMENT_LENGTH: Final = 10


@lru_cache(maxsize=65536)
def _fold_char(char: str) -> str:
    """Canonicalize of a non-Unicode, case-insensitive RegExp, one UTF-16 unit at a time."""
    if ord(char) > 0xFFFF:
        return char  # two surrogates in JavaScript, neither of which has a case
    upper = char.upper()
    if len(upper) != 1 or (ord(char) >= 128 and ord(upper) < 128):
        return char
    return upper


def _fold(text: str) -> str:
    return text.upper() if text.isascii() else "".join(map(_fold_char, text))


def _substitute(replacement: str, text: str, start: int, end: int) -> str:
    """``GetSubstitution`` for a pattern without capture groups."""
    out = []
    i = 0
    while i < len(replacement):
        char = replacement[i]
        following = replacement[i + 1 : i + 2]
        if char == "$" and following in ("$", "&", "`", "'"):
            if following == "$":
                out.append("$")
            elif following == "&":
                out.append(text[start:end])
            elif following == "`":
                out.append(text[:start])
            else:
                out.append(text[end:])
            i += 2
        else:
            out.append(char)
            i += 1
    return "".join(out)


def _replace_text(text: str, pattern: str, replacement: str, ignore_case: bool, every: bool) -> str:
    if not ignore_case and "$" not in replacement:
        return text.replace(pattern, replacement, -1 if every else 1)
    haystack, needle = (_fold(text), _fold(pattern)) if ignore_case else (text, pattern)
    out = []
    done = 0
    start = haystack.find(needle)
    while start >= 0:
        end = start + len(needle)
        out.append(text[done:start])
        out.append(_substitute(replacement, text, start, end))
        done = end
        if not every:
            break
        start = haystack.find(needle, end)
    out.append(text[done:])
    return "".join(out)


def _replace_once(text: str, pattern: str, replacement: str, ignore_case: bool, every: bool) -> str:
    if _utf16_len(pattern) > _MAX_PATTERN_LENGTH:
        raise MappingError(
            f'@replace requires a "pattern" less than {_MAX_PATTERN_LENGTH} characters'
        )
    if _utf16_len(replacement) > _MAX_REPLACEMENT_LENGTH:
        raise MappingError(
            f'@replace requires a "replacement" less than {_MAX_REPLACEMENT_LENGTH} characters'
        )
    if _SURROGATE.search(pattern):  # a lone surrogate can match half of a pair in JavaScript
        units = _replace_text(
            _utf16_units(text), _utf16_units(pattern), _utf16_units(replacement), ignore_case, every
        )
        return _from_utf16_units(units)
    return _replace_text(text, pattern, replacement, ignore_case, every)


def _compile_replace(opts: Any, where: _Where) -> _Compiled:
    if not isinstance(opts, dict):
        return _failing('@replace requires an object with a "pattern" key', where)
    pattern = opts.get("pattern", _ABSENT)
    if not _truthy(pattern):
        return _failing('@replace requires a "pattern" key', where)
    replacement = opts.get("replacement")
    replacement = "" if replacement is None else replacement
    pattern2 = opts.get("pattern2", _ABSENT)
    replacement2 = opts.get("replacement2")
    if _truthy(pattern2) and replacement2 is None:
        replacement2 = ""
    ignore_case = opts.get("ignorecase")
    ignore_case = False if ignore_case is None else ignore_case
    every = opts.get("global")
    every = True if every is None else every
    value = opts.get("value", _ABSENT)
    if not _truthy(value):
        return _Const(_ABSENT)
    resolve_value = _evaluator(value, (*where, "value"))
    usable = (
        isinstance(pattern, str)
        and isinstance(replacement, str)
        and isinstance(ignore_case, bool)
        and isinstance(every, bool)
    )
    second: tuple[str, str] | None = None
    if _truthy(pattern2) and isinstance(pattern2, str) and isinstance(replacement2, str):
        second = (pattern2, replacement2)

    def replace(payload: Any) -> Any:
        text = resolve_value(payload)
        if isinstance(text, bool):
            text = "true" if text else "false"
        elif isinstance(text, int | float):
            text = _js_number(text)
        if not (usable and isinstance(text, str)):
            return ""
        try:
            text = _replace_once(text, pattern, replacement, ignore_case, every)
            if second is not None:
                text = _replace_once(text, *second, ignore_case, every)
        except MappingError as error:
            raise _error(error.message, where) from None
        return text

    return replace


def _compile_array_path(arg: Any, where: _Where) -> _Compiled:
    if not isinstance(arg, list):
        return _failing(f"@arrayPath expected array, got {_js_type(arg)}", where)
    path = arg[0] if arg else _ABSENT
    shape = arg[1] if len(arg) > 1 else _ABSENT
    if isinstance(path, str):
        find_root = _path_reader(_path_from_directive(path))
    else:
        find_root = _evaluator(path, (*where, 0))
    if not (isinstance(shape, dict) and shape):
        return find_root
    render_item = _evaluator(shape, (*where, 1))

    def array_path(payload: Any) -> Any:
        root = find_root(payload)
        if isinstance(root, list):
            return [render_item(item) for item in root]
        if isinstance(root, dict):
            return [render_item(root)]
        return root

    return array_path


def _flatten(value: Any, separator: str, omit_arrays: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        entries: Iterable[tuple[str, Any]]
        if isinstance(node, dict):
            entries = ((key, node[key]) for key in _js_keys(node))
        elif isinstance(node, list) and not omit_arrays:
            entries = ((str(i), item) for i, item in enumerate(node))
        else:
            out[prefix] = node
            return
        for key, child in entries:
            walk(child, f"{prefix}{separator}{key}" if prefix else key)

    walk(value, "")
    return out


def _compile_flatten(opts: Any, where: _Where) -> _Compiled:
    if not isinstance(opts, dict):
        return _failing('@flatten requires an object with a "separator" key', where)
    separator = opts.get("separator", _ABSENT)
    if not _truthy(separator):
        return _failing('@flatten requires a "separator" key', where)
    resolve_separator = _evaluator(separator, (*where, "separator"))
    resolve_value = _evaluator(opts.get("value", _ABSENT), (*where, "value"))
    omit_arrays = _truthy(opts.get("omitArrays", _ABSENT))

    def flatten(payload: Any) -> Any:
        resolved_separator = resolve_separator(payload)
        if not isinstance(resolved_separator, str):
            raise _error("@flatten requires a string separator", where)
        return _flatten(resolve_value(payload), resolved_separator, omit_arrays)

    return flatten


def _compile_json(opts: Any, where: _Where) -> _Compiled:
    if not isinstance(opts, dict):
        return _failing('@json requires an object with a "value" key', where)
    mode = opts.get("mode", _ABSENT)
    if not _truthy(mode):
        return _failing('@json requires a "mode" key', where)
    value = opts.get("value", _ABSENT)
    if not _truthy(value):
        return _failing('@json requires a "value" key', where)
    resolve_value = _evaluator(value, (*where, "value"))
    if mode == "encode":
        return lambda payload: _json_encode(resolve_value(payload))
    if mode == "decode":

        def decode(payload: Any) -> Any:
            resolved = resolve_value(payload)
            return _json_decode(resolved) if isinstance(resolved, str) else resolved

        return decode

    def unknown_mode(payload: Any) -> Any:
        resolve_value(payload)
        return _ABSENT

    return unknown_mode


def _assign(target: dict[str, Any], source: Any) -> None:
    """``Object.assign`` of one source, which copies a string's characters and an array's items."""
    if isinstance(source, dict):
        target.update(source)
    elif isinstance(source, list):
        target.update((str(i), item) for i, item in enumerate(source))
    elif isinstance(source, str):
        target.update((str(i), unit) for i, unit in enumerate(_utf16_units(source)))


def _compile_merge(opts: Any, where: _Where) -> _Compiled:
    if not isinstance(opts, dict):
        return _failing(
            '@merge requires an object with an "objects" key and a "direction" key', where
        )
    direction = opts.get("direction", _ABSENT)
    if not _truthy(direction):
        return _failing('@merge requires a "direction" key', where)
    resolve_direction = _evaluator(direction, (*where, "direction"))
    objects = opts.get("objects", _ABSENT)
    if not _truthy(objects):
        message = '@merge requires a "objects" key'
    elif not isinstance(objects, list):
        kind = "object" if isinstance(objects, dict) else _js_type(objects)
        message = f"@merge: expected opts.array, got {kind}"
    else:
        resolvers = [_evaluator(obj, (*where, "objects", i)) for i, obj in enumerate(objects)]

        def merge(payload: Any) -> Any:
            left = resolve_direction(payload) == "left"
            resolved = [resolve(payload) for resolve in resolvers]
            out: dict[str, Any] = {}
            for source in reversed(resolved) if left else resolved:
                _assign(out, source)
            return out

        return merge

    def fail(payload: Any) -> Any:
        resolve_direction(payload)  # actions-core renders the direction before this check
        raise _error(message, where)

    return fail


def _remove_undefined(value: Any) -> Any:
    """actions-core's ``removeUndefined``: gone from objects, kept inside arrays."""
    if isinstance(value, dict):
        return {k: _remove_undefined(v) for k, v in value.items() if v is not _ABSENT}
    if isinstance(value, list):
        return [_remove_undefined(item) for item in value]
    return value


def _compile_transform(opts: Any, where: _Where) -> _Compiled:
    if not isinstance(opts, dict):
        return _failing(
            '@transform requires an object with an "apply" key and a "mapping" key', where
        )
    mapping = opts.get("mapping", _ABSENT)
    if not _truthy(mapping):
        return _failing('@transform requires a "mapping" key', where)
    apply = opts.get("apply", _ABSENT)
    if not _truthy(apply):
        return _failing('@transform requires a "apply" key', where)
    if not isinstance(apply, dict):
        return _failing('@transform "apply" key should be an object', where)
    invalid: MappingError | None = None
    try:
        _validate(apply, (*where, "apply"))  # the nested transform validates "apply" each time
    except MappingError as error:
        invalid = error
    render_apply = _evaluator(apply, (*where, "apply"))
    render_mapping_ = _evaluator(mapping, (*where, "mapping"))

    def transform(payload: Any) -> Any:
        if payload is _ABSENT:
            payload = {}  # the nested transform's default argument
        if not isinstance(payload, Mapping):
            raise _error(f"data must be an object, got {_js_type(payload)}", where)
        if invalid is not None:
            raise invalid
        return render_mapping_(_remove_undefined(render_apply(payload)))

    return transform


def _clean_nulls(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    return {
        key: _ABSENT if item is None else _clean_nulls(item) if isinstance(item, dict) else item
        for key, item in value.items()
    }


def _compile_exclude_when_null(arg: Any, where: _Where) -> _Compiled:
    resolve_value = _evaluator(arg, where)

    def exclude_when_null(payload: Any) -> Any:
        value = resolve_value(payload)
        return _ABSENT if value is None else _clean_nulls(value)

    return exclude_when_null


_DIRECTIVES: Final[dict[str, Callable[[Any, _Where], _Compiled]]] = {
    "@if": _compile_if,
    "@case": _compile_case,
    "@replace": _compile_replace,
    "@arrayPath": _compile_array_path,
    "@path": _compile_path,
    "@template": _compile_template,
    "@literal": _compile,
    "@flatten": _compile_flatten,
    "@json": _compile_json,
    "@merge": _compile_merge,
    "@transform": _compile_transform,
    "@excludeWhenNull": _compile_exclude_when_null,
}


def _finish(value: Any) -> Any:
    """The output as plain JSON values, sharing nothing with the payload or the mapping."""
    if isinstance(value, dict):
        return {key: _finish(item) for key, item in value.items() if item is not _ABSENT}
    if isinstance(value, list):
        return [None if item is _ABSENT else _finish(item) for item in value]
    return value


# --- validation (actions-core's validate.js) ---------------------------------------------------

_Check = Callable[[Any, _Where], None]


def _kind(value: Any) -> str:
    """``realTypeOrDirective``: any object with an @-key counts as a directive here."""
    if isinstance(value, dict) and any(isinstance(k, str) and k.startswith("@") for k in value):
        return "directive"
    return _js_type(value)


def _validate(value: Any, where: _Where) -> None:
    kind = _kind(value)
    if kind == "directive":
        _validate_directive(value, where)
    elif kind == "object":
        _validate_object(value, where)
    # actions-core does not look inside arrays, nor at scalars.


def _validate_directive(obj: dict[str, Any], where: _Where) -> None:
    keys = list(obj)
    names = [key for key in keys if isinstance(key, str) and key.startswith("@")]
    if len(names) > 1:
        raise _error(f"should only have one @-prefixed key but it has {len(names)} keys", where)
    if any(key not in names and key != "_metadata" for key in keys):
        raise _error(f"should only have one @-prefixed key but it has {len(keys)} keys", where)
    name = names[0]
    check = _CHECKS.get(name)
    if check is None:
        if name == "@liquid":
            raise _error("@liquid is not supported", where)
        raise _error(f"has an invalid directive: {name}", where)
    check(obj[name], (*where, name))


def _validate_object(value: Any, where: _Where) -> None:
    kind = _kind(value)
    if kind != "object":
        raise _error(f"should be an object but it is {_a(kind)}", where)
    for key, item in value.items():
        _validate(item, (*where, key))


def _raw(value: Any, where: _Where) -> None:
    kind = _kind(value)
    if kind == "directive":
        _validate_directive(value, where)
    elif kind not in ("object", "array", "boolean", "string", "number", "null"):
        raise _error(f"should be a mapping directive or a JSON value but it is {_a(kind)}", where)


def _directive_or_string(value: Any, where: _Where) -> None:
    kind = _kind(value)
    if kind == "directive":
        _validate_directive(value, where)
    elif kind != "string":
        raise _error(f"should be a string or a mapping directive but it is {_a(kind)}", where)


def _directive_or_object(value: Any, where: _Where) -> None:
    kind = _kind(value)
    if kind == "directive":
        _validate_directive(value, where)
    elif kind == "object":
        _validate_object(value, where)
    else:
        raise _error(f"should be a object or a mapping directive but it is {_a(kind)}", where)


def _string(value: Any, where: _Where) -> None:
    kind = _kind(value)
    if kind != "string":
        raise _error(f"should be a string but it is {_a(kind)}", where)


def _string_of_length(low: int, high: int) -> _Check:
    def check(value: Any, where: _Where) -> None:
        _string(value, where)
        if _utf16_len(value) < low:
            raise _error(f"should be a string of length {low} or greater", where)
        if _utf16_len(value) > high:
            raise _error(f"should be a string of length {high} or less", where)

    return check


def _one_of(*allowed: str) -> _Check:
    def check(value: Any, where: _Where) -> None:
        _string(value, where)
        if value.lower() not in allowed:
            expected = ", ".join(allowed)
            raise _error(f"should be one of {expected} but it is {json.dumps(value)}", where)

    return check


def _boolean(value: Any, where: _Where) -> None:
    kind = _kind(value)
    if kind != "boolean":
        raise _error(f"should be a boolean but it is {_a(kind)}", where)


def _array(value: Any, where: _Where) -> None:
    kind = _js_type(value)
    if kind != "array":
        raise _error(f"should be an array but it is {_a(kind)}", where)


def _with_fields(*fields: tuple[str, _Check, bool]) -> _Check:
    """``validateObjectWithFields``: every value is a mapping, and the named ones have a shape."""

    def check(value: Any, where: _Where) -> None:
        _validate_object(value, where)
        for name, check_field, required in fields:
            if name in value:
                check_field(value[name], (*where, name))
            elif required:
                raise _error(f'should have field "{name}" but it doesn\'t', where)

    return check


def _check_array_path(value: Any, where: _Where) -> None:
    _array(value, where)
    _directive_or_string(value[0] if value else _ABSENT, where)
    _validate(value[1] if len(value) > 1 else _ABSENT, where)


_check_merge_fields: Final = _with_fields(
    ("direction", _one_of("left", "right"), False), ("objects", _array, True)
)


def _check_merge(value: Any, where: _Where) -> None:
    _check_merge_fields(value, where)
    for i, obj in enumerate(value["objects"]):
        _directive_or_object(obj, (*where, "objects", i))


_CHECKS: Final[dict[str, _Check]] = {
    "@if": _with_fields(("exists", _raw, False), ("then", _raw, False), ("else", _raw, False)),
    "@case": _with_fields(("operator", _string, False), ("value", _directive_or_string, False)),
    "@replace": _with_fields(
        ("pattern", _string_of_length(1, _MAX_PATTERN_LENGTH), True),
        ("replacement", _string_of_length(0, _MAX_REPLACEMENT_LENGTH), False),
        ("value", _directive_or_string, True),
        ("ignorecase", _boolean, False),
        ("global", _boolean, False),
    ),
    "@arrayPath": _check_array_path,
    "@path": _directive_or_string,
    "@json": _with_fields(("value", _raw, True), ("mode", _one_of("encode", "decode"), True)),
    "@flatten": _with_fields(("separator", _string, False), ("value", _raw, True)),
    "@merge": _check_merge,
    "@template": _directive_or_string,
    "@literal": _raw,
    "@transform": _with_fields(
        ("apply", _directive_or_object, True), ("mapping", _directive_or_object, True)
    ),
    "@excludeWhenNull": _raw,
}


def validate_mapping(mapping: Any) -> None:
    """Raise MappingError where actions-core's ``validate`` would reject the mapping."""
    _validate(mapping, ())


# --- destination-field paths (expand_keys) -----------------------------------------------------

_MAX_FIELD_INDEX: Final = 1000
_FIELD_TOKEN: Final = re.compile(
    r'"(?P<quoted>[^"]*)"|\[(?P<index>0|[1-9][0-9]*)\]|(?P<bare>[^.\[\]"]+)|(?P<dot>\.)'
)


def _field_path(name: str) -> tuple[str | int, ...]:
    """``info[0].email`` / ``info.[0].email`` / ``"user.email"`` as the keys they stand for."""
    segments: list[str | int] = []
    last = "start"
    position = 0
    while position < len(name):
        token = _FIELD_TOKEN.match(name, position)
        if token is None:
            raise MappingError(f"cannot read the field name at {name[position:]!r}", name)
        if token["dot"] is not None:
            if last in ("start", "dot"):
                raise MappingError("a field name has an empty segment", name)
            last = "dot"
        elif token["index"] is not None:
            if last == "start":
                raise MappingError("a field name cannot start with an index", name)
            index = int(token["index"])
            if index >= _MAX_FIELD_INDEX:
                raise MappingError(f"array indices must be below {_MAX_FIELD_INDEX}", name)
            segments.append(index)
            last = "index"
        else:
            if last in ("name", "index"):
                raise MappingError("segments of a field name need a dot between them", name)
            segments.append(token["quoted"] if token["quoted"] is not None else token["bare"])
            last = "name"
        position = token.end()
    if last in ("start", "dot"):
        raise MappingError("a field name cannot be empty or end with a dot", name)
    return tuple(segments)


@dataclass
class _Slot:
    """A place in the output built from destination-field paths."""

    owner: str = ""
    leaf: _Eval | None = None
    children: dict[str | int, _Slot] = field(default_factory=dict)


def _place(root: _Slot, name: str, evaluate: _Eval) -> None:
    slot = root
    for segment in _field_path(name):
        if slot.leaf is not None:
            raise MappingError(f"conflicts with the field {slot.owner!r}", name)
        if slot.children:
            first_key, other = next(iter(slot.children.items()))
            if isinstance(segment, int) != isinstance(first_key, int):
                raise MappingError(f"mixes array and object keys with {other.owner!r}", name)
        slot = slot.children.setdefault(segment, _Slot(owner=name))
    if slot.leaf is not None or slot.children:
        raise MappingError(f"conflicts with the field {slot.owner!r}", name)
    slot.owner = name
    slot.leaf = evaluate


def _build(slot: _Slot, payload: Any) -> Any:
    if slot.leaf is not None:
        return _finish(slot.leaf(payload))
    values: dict[str | int, Any] = {}
    for key, child in slot.children.items():
        value = _build(child, payload)
        if value is not _ABSENT:
            values[key] = value
    if not values:
        return _ABSENT
    if isinstance(next(iter(slot.children)), int):
        items = [None] * (max(int(key) for key in values) + 1)
        for key, value in values.items():
            items[int(key)] = value
        return items
    return values


# --- the public entry points -------------------------------------------------------------------


class CompiledMapping:
    """A validated mapping; calling it renders one payload without walking the mapping again."""

    __slots__ = ("_evaluate",)

    def __init__(self, mapping: Mapping[str, Any], *, expand_keys: bool = False) -> None:
        if not isinstance(mapping, Mapping):
            raise MappingError(f"a mapping must be an object, got {_js_type(mapping)}")
        root = dict(mapping)
        _validate(root, ())
        self._evaluate: _Eval = (
            self._compile_fields(root) if expand_keys else self._compile_value(root)
        )

    @staticmethod
    def _compile_value(root: dict[str, Any]) -> _Eval:
        evaluate = _evaluator(root, ())

        def render(payload: Any) -> Any:
            value = _finish(evaluate(payload))
            return None if value is _ABSENT else value

        return render

    @staticmethod
    def _compile_fields(root: dict[str, Any]) -> _Eval:
        if _directive_name(root) is not None:
            raise MappingError("with expand_keys the mapping must be an object of fields")
        fields = _Slot()
        for name, value in root.items():
            _place(fields, name, _evaluator(value, (name,)))

        def render(payload: Any) -> Any:
            built = _build(fields, payload)
            return {} if built is _ABSENT else built

        return render

    def __call__(self, payload: Mapping[str, Any]) -> Any:
        if not isinstance(payload, Mapping):
            raise MappingError(f"data must be an object, got {_js_type(payload)}")
        return self._evaluate(payload)


def compile_mapping(mapping: Mapping[str, Any], *, expand_keys: bool = False) -> CompiledMapping:
    """Validate once so that rendering each event is only the evaluation."""
    return CompiledMapping(mapping, expand_keys=expand_keys)


def render_mapping(
    mapping: Mapping[str, Any], payload: Mapping[str, Any], *, expand_keys: bool = False
) -> Any:
    """One-off rendering; compile the mapping instead when it serves many events."""
    return CompiledMapping(mapping, expand_keys=expand_keys)(payload)


# --- the action's field schema -----------------------------------------------------------------

FieldType = Literal["string", "number", "integer", "boolean", "object", "array", "datetime"]
_FIELD_TYPES: Final = frozenset(
    ("string", "number", "integer", "boolean", "object", "array", "datetime")
)


@dataclass(frozen=True)
class FieldSpec:
    """One field an action takes, as actions-core's field definitions describe it."""

    type: FieldType
    required: bool
    multiple: bool = False
    choices: tuple[str, ...] | None = None
    description: str = ""
    # The mapping used when a mapping leaves the field out (Segment's default mapping).
    default: Any = None

    def __post_init__(self) -> None:
        if self.type not in _FIELD_TYPES:
            raise ValueError(f"unknown field type {self.type!r}")


class _WrongType(Exception):
    pass


def _json_types(spec: FieldSpec) -> tuple[str, ...]:
    return ("string", "number") if spec.type == "datetime" else (spec.type,)


def _has_type(value: Any, kind: str) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    if kind == "null":
        return value is None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return kind == "number" or isinstance(value, int) or value.is_integer()


def _coerce_to(kind: str, value: Any) -> Any:
    """One of ajv's type coercions, or _ABSENT when it does not apply to this value."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        if is_number or isinstance(value, bool):
            return _js_string(value)
        return "" if value is None else _ABSENT
    if kind in ("number", "integer"):
        if isinstance(value, bool) or value is None:
            return int(bool(value))
        if isinstance(value, str) and value:
            number = _js_to_number(value)
            if number == number and (
                kind == "number" or not math.isfinite(number) or number.is_integer()
            ):
                # An infinity passes ajv but JSON.stringify sends it as null.
                return _as_python_number(number) if math.isfinite(number) else None
        return _ABSENT
    if kind == "boolean":
        if value == "false" or value is None or (is_number and value == 0):
            return False
        if value == "true" or (is_number and value == 1):
            return True
        return _ABSENT
    if kind == "array" and (value is None or is_number or isinstance(value, str | bool)):
        return [value]
    return _ABSENT


def _coerce(value: Any, kinds: tuple[str, ...]) -> Any:
    """ajv with ``coerceTypes: "array"``: the first coercion that applies, in type order."""
    if any(_has_type(value, kind) for kind in kinds):
        return value
    coercible = [kind for kind in kinds if kind != "object"]
    if not coercible:
        raise _WrongType
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
        # ajv checks the unwrapped item against all the types at once (an AND), so with two
        # types (datetime) it never passes and the item goes through coercion instead.
        if len(kinds) == 1 and _has_type(value, kinds[0]):
            return value
    for kind in coercible:
        coerced = _coerce_to(kind, value)
        if coerced is not _ABSENT:
            return coerced
    raise _WrongType


_DAYJS_PARSE: Final = re.compile(
    rf"([0-9]{{4}})[-/]?([0-9]{{1,2}})?[-/]?([0-9]{{0,2}})[Tt{_JS_SPACE}]*([0-9]{{1,2}})?:?"
    r"([0-9]{1,2})?:?([0-9]{1,2})?[.:]?([0-9]+)?"
)


_DATE_COMMENT: Final = re.compile(r"\([^)]*\)")
_DATE_WORD: Final = re.compile("[A-Za-z]+")
_DATE_WORDS: Final = frozenset(
    {
        *("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        *("mon", "tue", "wed", "thu", "fri", "sat", "sun", "am", "pm", "t", "z"),
        *("ut", "utc", "gmt", "est", "edt", "cst", "cdt", "mst", "mdt", "pst", "pdt"),
    }
)


def _date_like(text: str) -> bool:
    """actions-core's ``date-like`` format: what dayjs accepts as a date."""
    number = _js_to_number(text)
    if _js_number(number) == text:  # seconds since the epoch
        return math.isfinite(number) and abs(number * 1000) <= 8.64e15
    if not text.endswith(("Z", "z")) and _DAYJS_PARSE.fullmatch(text):
        return True
    try:
        datetime.fromisoformat(text)
        return True
    except ValueError:
        pass
    if parsedate_tz(text) is not None:
        return True
    # V8's own parser takes numbers among date words ("March 7", "Sat Mar 09 2024 10:00 GMT+1").
    words = _DATE_WORD.findall(_DATE_COMMENT.sub(" ", text))
    return bool(re.search("[0-9]", text)) and all(w.lower()[:3] in _DATE_WORDS for w in words)


def _describe(spec: FieldSpec) -> str:
    return "a string or a number" if spec.type == "datetime" else _a(spec.type)


def _coerce_item(value: Any, spec: FieldSpec, where: str) -> Any:
    try:
        coerced = _coerce(value, _json_types(spec))
    except _WrongType:
        got = _a(_js_type(value))
        raise MappingError(f"should be {_describe(spec)}, got {got}", where) from None
    if spec.choices is not None and not (isinstance(coerced, str) and coerced in spec.choices):
        raise MappingError(f"should be one of {', '.join(spec.choices)}", where)
    return coerced


def _coerce_field(value: Any, spec: FieldSpec, name: str) -> Any:
    if spec.multiple or spec.type == "array":
        items = value if isinstance(value, list) else [value]
        if not spec.multiple:
            return items
        return [_coerce_item(item, spec, f"{name}[{i}]") for i, item in enumerate(items)]
    coerced = _coerce_item(value, spec, name)
    if spec.type == "datetime" and isinstance(coerced, str) and not _date_like(coerced):
        raise MappingError("should be a date", name)
    return coerced


def _drop_empty(value: Any, spec: FieldSpec) -> Any:
    """actions-core's ``removeEmptyValues`` for one top-level field."""
    if value is None or value is _ABSENT or value == "":
        return _ABSENT
    if spec.multiple and isinstance(value, list):
        keep_blank = spec.type in ("string", "datetime")
        return [x for x in value if x is not None and (keep_blank or x != "")]
    return value


def coerce_output(values: Mapping[str, Any], schema: Mapping[str, FieldSpec]) -> dict[str, Any]:
    """The rendered fields as the action will get them, or MappingError to reject the message."""
    out: dict[str, Any] = {}
    for name, spec in schema.items():
        value = _drop_empty(values.get(name, _ABSENT), spec)
        if value is _ABSENT:
            if spec.required:
                raise MappingError("is required but the mapping gave nothing", name)
            continue
        out[name] = _coerce_field(value, spec, name)
    return out


def _is_literal(value: Any) -> bool:
    return isinstance(_compile(value, ()), _Const)


def _shape_fits(value: Any, spec: FieldSpec) -> bool:
    """Whether a container holding directives can render to something this field takes."""
    if isinstance(value, dict) and _directive_name(value) is None:
        return spec.type == "object" or (spec.type == "array" and not spec.multiple)
    if isinstance(value, list):
        return spec.multiple or spec.type == "array" or (len(value) == 1 and spec.type != "object")
    return True


def check_fields(fields: Mapping[str, Any], schema: Mapping[str, FieldSpec]) -> None:
    """The save-time check of an action's mapping: known fields, required ones, literal types."""
    for name in fields:
        if name not in schema:
            raise MappingError("is not a field of this action", name)
    for name, spec in schema.items():
        if spec.required and name not in fields:
            raise MappingError("is required but not mapped", name)
    for name, value in fields.items():
        _validate(value, (name,))
        spec = schema[name]
        if _is_literal(value):
            coerce_output({name: value}, {name: spec})
        elif not _shape_fits(value, spec):
            raise MappingError(f"the mapping cannot render {_describe(spec)}", name)
