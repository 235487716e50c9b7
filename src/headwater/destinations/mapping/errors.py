"""Mapping errors, and the place in the mapping they name."""

from __future__ import annotations


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


