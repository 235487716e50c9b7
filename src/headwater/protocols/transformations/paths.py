"""The property path syntax of Transformations (Segment's ``protocols/transform``).

A path is dot-separated from the event's root (``properties.order.id``); ``\\.`` is a literal
dot inside one key (``properties.ingredients\\.salad`` is the key ``ingredients.salad``), and
``\\\\`` a literal backslash. Segment selects nested objects up to four levels below
``properties``/``traits``/``context`` and does not support the array notation ``.$.``.
"""

from __future__ import annotations

from typing import Any

from headwater.errors import InvalidError

MAX_LEVELS = 4
ROOTS = ("properties", "traits", "context")
MISSING = object()


def split(path: object, field: str) -> tuple[str, ...]:
    """The keys of a path, checked: a non-empty string, no ``$`` step, at most four levels
    under its root object."""
    if not isinstance(path, str) or not path:
        raise InvalidError(f"{field} must be a non-empty string", field)
    keys: list[str] = []
    key: list[str] = []
    escaped = False
    for char in path:
        if escaped:
            key.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ".":
            keys.append("".join(key))
            key = []
        else:
            key.append(char)
    if escaped:
        raise InvalidError(f"{field}: {path!r} ends with an escape character", field)
    keys.append("".join(key))
    if any(k == "" for k in keys):
        raise InvalidError(f"{field}: {path!r} has an empty key", field)
    if "$" in keys[1:]:
        raise InvalidError(
            f"{field}: {path!r} selects array elements (.$.), which transformations do not support",
            field,
        )
    if keys[0] in ROOTS:
        if len(keys) - 1 > MAX_LEVELS:
            raise InvalidError(
                f"{field}: {path!r} is {len(keys) - 1} levels deep under {keys[0]};"
                f" at most {MAX_LEVELS} are supported",
                field,
            )
    elif len(keys) > 1:
        raise InvalidError(
            f"{field}: {path!r} must start with one of {', '.join(ROOTS)} or name a top-level"
            " field",
            field,
        )
    return tuple(keys)


def join(keys: tuple[str, ...]) -> str:
    return ".".join(k.replace("\\", "\\\\").replace(".", "\\.") for k in keys)


def get(event: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """The value at the path, or ``MISSING``."""
    here: Any = event
    for key in keys:
        if not isinstance(here, dict) or key not in here:
            return MISSING
        here = here[key]
    return here


def pop(event: dict[str, Any], keys: tuple[str, ...]) -> Any:
    """Remove and return the value at the path (``MISSING`` if absent); parents stay."""
    parent = get(event, keys[:-1])
    if not isinstance(parent, dict) or keys[-1] not in parent:
        return MISSING
    return parent.pop(keys[-1])


def put(event: dict[str, Any], keys: tuple[str, ...], value: Any) -> None:
    """Set the value at the path, making the objects on the way (a non-object in the way is
    replaced by one, as moving a property into an object does)."""
    here = event
    for key in keys[:-1]:
        child = here.get(key)
        if not isinstance(child, dict):
            child = {}
            here[key] = child
        here = child
    here[keys[-1]] = value
