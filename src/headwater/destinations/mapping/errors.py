"""Mapping errors, and the place in the mapping they name."""

from __future__ import annotations

from headwater.errors import MappingError

_Where = tuple[str | int, ...]

# Objects, arrays and directives nest at most this deep in a mapping (and a destination-field
# path has at most this many segments). Validating, compiling and rendering recurse a few
# Python frames per level, so a deeper mapping would pass Python's recursion limit.
MAX_DEPTH = 64


def _check_depth(where: _Where) -> None:
    """Refuse a place ``where`` that is deeper than MAX_DEPTH (each level adds one part)."""
    if len(where) > MAX_DEPTH:
        shown = _dotted(where[:6])
        raise MappingError(
            f"the mapping nests deeper than {MAX_DEPTH} levels of objects, arrays and directives",
            f"{shown}…",
        )


def _check_tree_depth(value: object, where: _Where = ()) -> None:
    """``_check_depth`` for every object and array in ``value``, without recursing."""
    pending: list[tuple[object, _Where]] = [(value, where)]
    while pending:
        node, at = pending.pop()
        if isinstance(node, dict):
            _check_depth(at)
            pending.extend(((child, (*at, key)) for key, child in node.items()))
        elif isinstance(node, list):
            _check_depth(at)
            pending.extend(((child, (*at, i)) for i, child in enumerate(node)))


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


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"
