"""Reading ``@path`` paths from a payload, as actions-core walks them."""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, Final

from headwater.destinations.javascript import (
    UNDEFINED,
    array_index,
    utf16_len,
    utf16_units,
)

_Key = tuple[str, int]  # a property name and the array index it denotes (-1 when none)

_PATH_SPLIT: Final = re.compile(r"""\[(?=["'0-9])|\.|(?<=["'0-9])\]+""")


@lru_cache(maxsize=4096)
def _path_keys(path: str) -> tuple[_Key, ...]:
    """actions-core's ``get`` path syntax, split once and cached."""
    keys = []
    for part in _PATH_SPLIT.split(path):
        if part:
            name = part.replace('"', "").replace("'", "")
            keys.append((name, array_index(name)))
    return tuple(keys)


def _string_property(text: str, name: str, index: int) -> Any:
    if index < 0:
        return utf16_len(text) if name == "length" else UNDEFINED
    units = utf16_units(text)
    return units[index] if index < len(units) else UNDEFINED


def _get(value: Any, keys: tuple[_Key, ...]) -> Any:
    """Walks ``keys`` like ``keys.reduce((o, k) => o && o[k], value)``."""
    for name, index in keys:
        if value is UNDEFINED or value is None or value is False:
            return value
        cls = type(value)
        if cls is dict:
            value = value.get(name, UNDEFINED)
        elif cls is list:
            if 0 <= index < len(value):
                value = value[index]
            else:
                value = len(value) if name == "length" else UNDEFINED
        elif cls is str:
            if not value:
                return value
            value = _string_property(value, name, index)
        elif cls is int or cls is float:
            if value == 0 or value != value:
                return value
            value = UNDEFINED
        elif isinstance(value, Mapping):
            value = value.get(name, UNDEFINED)
        else:
            value = UNDEFINED
    return value


def _path_from_directive(path: str) -> tuple[_Key, ...]:
    return _path_keys(path.replace("$.", "", 1))
