"""Destination-field paths: ``info[0].email`` keys that build nesting (opt-in)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Final

from headwater.destinations.javascript import UNDEFINED
from headwater.destinations.mapping.directives import _Eval, _finish
from headwater.destinations.mapping.errors import MAX_DEPTH
from headwater.errors import MappingError

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
    if len(segments) > MAX_DEPTH:
        raise MappingError(f"a field name has more than {MAX_DEPTH} segments", name[:100] + "…")
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
        if value is not UNDEFINED:
            values[key] = value
    if not values:
        return UNDEFINED
    if isinstance(next(iter(slot.children)), int):
        items = [None] * (max(int(key) for key in values) + 1)
        for key, value in values.items():
            items[int(key)] = value
        return items
    return values
