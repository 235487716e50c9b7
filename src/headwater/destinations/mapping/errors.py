"""Mapping errors, and the place in the mapping they name."""

from __future__ import annotations

from headwater.errors import MappingError

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


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"
