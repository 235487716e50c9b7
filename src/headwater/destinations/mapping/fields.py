"""An action's field schema: the save-time check and the coercion of rendered values."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_tz
from typing import Any, Final, Literal

from headwater.destinations.javascript import (
    UNDEFINED,
    WHITESPACE,
    as_python_number,
    number_to_string,
    to_number,
    to_string,
    type_of,
)
from headwater.destinations.mapping.directives import _compile, _Const, _directive_name
from headwater.destinations.mapping.errors import _a
from headwater.destinations.mapping.validation import _validate
from headwater.errors import MappingError

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
    """One of ajv's type coercions, or UNDEFINED when it does not apply to this value."""
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        if is_number or isinstance(value, bool):
            return to_string(value)
        return "" if value is None else UNDEFINED
    if kind in ("number", "integer"):
        if isinstance(value, bool) or value is None:
            return int(bool(value))
        if isinstance(value, str) and value:
            number = to_number(value)
            if number == number and (
                kind == "number" or not math.isfinite(number) or number.is_integer()
            ):
                # An infinity passes ajv but JSON.stringify sends it as null.
                return as_python_number(number) if math.isfinite(number) else None
        return UNDEFINED
    if kind == "boolean":
        if value == "false" or value is None or (is_number and value == 0):
            return False
        if value == "true" or (is_number and value == 1):
            return True
        return UNDEFINED
    if kind == "array" and (value is None or is_number or isinstance(value, str | bool)):
        return [value]
    return UNDEFINED


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
        if coerced is not UNDEFINED:
            return coerced
    raise _WrongType


_DAYJS_PARSE: Final = re.compile(
    rf"([0-9]{{4}})[-/]?([0-9]{{1,2}})?[-/]?([0-9]{{0,2}})[Tt{WHITESPACE}]*([0-9]{{1,2}})?:?"
    r"([0-9]{1,2})?:?([0-9]{1,2})?[.:]?([0-9]+)?"
)


_DATE_WORD: Final = re.compile("[A-Za-z]+")
_DATE_WORDS: Final = frozenset(
    {
        *("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"),
        *("mon", "tue", "wed", "thu", "fri", "sat", "sun", "am", "pm", "t", "z"),
        *("ut", "utc", "gmt", "est", "edt", "cst", "cdt", "mst", "mdt", "pst", "pdt"),
    }
)


def _without_comments(text: str) -> str:
    """``re.sub(r"\\([^)]*\\)", " ", text)`` in one pass (the expression rescans from every
    ``(`` that is never closed, quadratic on a value of many ``(``)."""
    out: list[str] = []
    done = 0
    while (start := text.find("(", done)) >= 0 and (end := text.find(")", start + 1)) >= 0:
        out += (text[done:start], " ")
        done = end + 1
    out.append(text[done:])
    return "".join(out)


def _date_like(text: str) -> bool:
    """actions-core's ``date-like`` format: what dayjs accepts as a date."""
    number = to_number(text)
    if number_to_string(number) == text:  # seconds since the epoch
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
    words = _DATE_WORD.findall(_without_comments(text))
    return bool(re.search("[0-9]", text)) and all(w.lower()[:3] in _DATE_WORDS for w in words)


def _describe(spec: FieldSpec) -> str:
    return "a string or a number" if spec.type == "datetime" else _a(spec.type)


def _coerce_item(value: Any, spec: FieldSpec, where: str) -> Any:
    try:
        coerced = _coerce(value, _json_types(spec))
    except _WrongType:
        got = _a(type_of(value))
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
    if value is None or value is UNDEFINED or value == "":
        return UNDEFINED
    if spec.multiple and isinstance(value, list):
        keep_blank = spec.type in ("string", "datetime")
        return [x for x in value if x is not None and (keep_blank or x != "")]
    return value


def coerce_output(values: Mapping[str, Any], schema: Mapping[str, FieldSpec]) -> dict[str, Any]:
    """The rendered fields as the action will get them, or MappingError to reject the message."""
    out: dict[str, Any] = {}
    for name, spec in schema.items():
        value = _drop_empty(values.get(name, UNDEFINED), spec)
        if value is UNDEFINED:
            if spec.required:
                raise MappingError("is required but the mapping gave nothing", name)
            continue
        out[name] = _coerce_field(value, spec, name)
    return out


def _literal(value: Any, where: tuple[str, ...]) -> Any:
    """What the mapping renders when that is known on save (a constant, or a directive of
    constants such as ``{"@template": "page_viewed"}``), else UNDEFINED."""
    compiled = _compile(value, where)
    return compiled.value if isinstance(compiled, _Const) else UNDEFINED


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
        literal = _literal(value, (name,))
        if literal is not UNDEFINED:
            coerce_output({name: literal}, {name: spec})
        elif not _shape_fits(value, spec):
            raise MappingError(f"the mapping cannot render {_describe(spec)}", name)
