"""Mapping validation, as actions-core's ``validate`` checks directive shapes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from headwater.destinations.javascript import UNDEFINED, type_of, utf16_len
from headwater.destinations.mapping.errors import (
    _a,
    _check_depth,
    _check_tree_depth,
    _error,
    _Where,
)

_MAX_PATTERN_LENGTH: Final = 10
_MAX_REPLACEMENT_LENGTH: Final = 10


_Check = Callable[[Any, _Where], None]


def _kind(value: Any) -> str:
    """``realTypeOrDirective``: any object with an @-key counts as a directive here."""
    if isinstance(value, dict) and any(isinstance(k, str) and k.startswith("@") for k in value):
        return "directive"
    return type_of(value)


def _validate(value: Any, where: _Where) -> None:
    kind = _kind(value)
    if kind == "directive":
        _validate_directive(value, where)
    elif kind == "object":
        _validate_object(value, where)
    # actions-core does not look inside arrays, nor at scalars.


def _validate_directive(obj: dict[str, Any], where: _Where) -> None:
    _check_depth(where)
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
    _check_depth(where)
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
        if utf16_len(value) < low:
            raise _error(f"should be a string of length {low} or greater", where)
        if utf16_len(value) > high:
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
    kind = type_of(value)
    if kind != "array":
        raise _error(f"should be an array but it is {_a(kind)}", where)


def _with_fields(*fields: tuple[str, _Check, bool]) -> _Check:
    """``validateObjectWithFields``: every value is a mapping, and the named ones have a shape.

    The first pass has validated every directive and object among the values, so the named
    fields' checks skip what they would validate again: running both would walk a nested
    directive twice per level (2^n for n nested ``@if``), with the same outcome.
    """

    def check(value: Any, where: _Where) -> None:
        _validate_object(value, where)
        for name, check_field, required in fields:
            if name in value:
                item = value[name]
                kind = _kind(item)
                if (kind == "directive" and check_field in _TAKING_DIRECTIVES) or (
                    kind == "object" and check_field is _directive_or_object
                ):
                    continue
                check_field(item, (*where, name))
            elif required:
                raise _error(f'should have field "{name}" but it doesn\'t', where)

    return check


# Checks that validate a directive value exactly as ``_validate`` does (and nothing more).
_TAKING_DIRECTIVES: Final[frozenset[_Check]] = frozenset(
    {_raw, _directive_or_string, _directive_or_object}
)


def _check_array_path(value: Any, where: _Where) -> None:
    _array(value, where)
    _directive_or_string(value[0] if value else UNDEFINED, where)
    _validate(value[1] if len(value) > 1 else UNDEFINED, where)


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
    """Raise MappingError where actions-core's ``validate`` would reject the mapping, or where
    it nests deeper than MAX_DEPTH (which ``_validate`` alone does not see inside arrays)."""
    _check_tree_depth(mapping)
    _validate(mapping, ())
