"""Destination functions as destinations of the catalog (§11.3).

A destination function's instances are destinations whose type is ``function:<name>``; the
definition is made from the function itself: its name, the settings it declares (a settings
model built from the declaration, secret ones redacted like any destination's secrets), and
Segment's display name ``"<function name> (<workspace>)"``, which the ``integrations`` object
may use as it uses a catalog name. Every method is accepted: a type without a handler answers
``EventNotSupported`` from the sandbox, which Event Delivery shows as
``UNSUPPORTED_EVENT_TYPE`` (Segment's behaviour, AC-100), rather than being filtered unseen.

Functions live in their own store (``headwater.functions``, beside this package), so the
catalog is told where to find them (``registry.use_functions``) by the process that has both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from pydantic import Field, create_model

from headwater.destinations.definition import (
    ALL_METHODS,
    Batching,
    DestinationDefinition,
    DestinationSettings,
)
from headwater.functions.contract import BATCH_HANDLER, python_name

TYPE_PREFIX: Final = "function:"

# §11.3: Segment's default batch of an onBatch handler, and the most support can raise it to.
BATCH_EVENTS: Final = 20
BATCH_WAIT_SECONDS: Final = 10.0
MAX_BATCH_EVENTS: Final = 400
BATCH_BYTES: Final = 64 * 1024 * 1024  # not a limit of Segment's: events are capped at 32 KB
# The sandbox's deadline is 5 s; a claim of a function's destination waits for no HTTP client.
TIMEOUT_SECONDS: Final = 10.0

# Segment's setting types → the Python type a saved value must have.
_TYPES: Final[Mapping[str, Any]] = {
    "string": str,
    "text": str,
    "boolean": bool,
    "number": float,
    "array": list[Any],
    "map": dict[str, Any],
    "object": dict[str, Any],
}


def is_function_type(destination_type: str) -> bool:
    return destination_type.startswith(TYPE_PREFIX)


def function_type(function_name: str) -> str:
    return TYPE_PREFIX + function_name


def function_name(destination_type: str) -> str:
    return destination_type.removeprefix(TYPE_PREFIX)


def display_name(function: str, workspace: str) -> str:
    """How Segment names a destination function in the integrations object (§11.3)."""
    return f"{function} ({workspace})"


@dataclass(frozen=True)
class FunctionDestination:
    """What the catalog needs of a destination function: its name, the workspace's name, its
    settings declaration (``{name, type, required, secret, …}``) and its deployed code."""

    name: str
    workspace: str
    settings: Sequence[Mapping[str, Any]]
    language: str
    code: str


def has_handler(language: str, code: str, handler: str) -> bool:
    """Whether the code defines ``handler`` (Segment's name), read from the source: a function
    declaration or an assignment in JavaScript, a ``def`` in Python. Only ``onBatch`` is
    decided this way (whether to batch); a missing event handler is the sandbox's answer."""
    if language == "python":
        pattern = rf"^\s*(?:async\s+)?def\s+{python_name(handler)}\s*\("
    else:
        pattern = (
            rf"(?:\bfunction\s*\*?\s*{handler}\s*\(|\b(?:const|let|var)\s+{handler}\s*="
            rf"|\b(?:exports|module\.exports|globalThis)\.{handler}\s*=)"
        )
    return re.search(pattern, code, re.MULTILINE) is not None


def definition(function: FunctionDestination) -> DestinationDefinition:
    """The catalog entry of a destination function's instances."""
    batches = has_handler(function.language, function.code, BATCH_HANDLER)
    return DestinationDefinition(
        type=function_type(function.name),
        name=display_name(function.name, function.workspace),
        settings=settings_model(function.name, function.settings),
        methods=ALL_METHODS,
        secrets=frozenset(
            str(s["name"]) for s in function.settings if s.get("secret") and s.get("name")
        ),
        batching=Batching(BATCH_EVENTS, BATCH_BYTES, BATCH_WAIT_SECONDS) if batches else None,
        timeout_seconds=TIMEOUT_SECONDS,
        description=f"Destination function {function.name}",
        function=function.name,
        hooks=frozenset({"onDelete"})
        if has_handler(function.language, function.code, "onDelete")
        else frozenset(),
    )


def settings_model(
    function: str, declaration: Sequence[Mapping[str, Any]]
) -> type[DestinationSettings]:
    """A settings model from the function's declaration: declared names only, required ones
    required, values of the declared type."""
    fields: dict[str, Any] = {}
    for setting in declaration:
        name = setting.get("name")
        if not isinstance(name, str) or not name.isidentifier():
            continue
        kind = _TYPES.get(str(setting.get("type", "string")), Any)
        if setting.get("required"):
            fields[name] = (kind, Field(...))
        else:
            fields[name] = (kind | None, Field(default=None))
    model_name = "FunctionSettings_" + re.sub(r"\W", "_", function)
    model: type[DestinationSettings] = create_model(
        model_name, __base__=DestinationSettings, **fields
    )
    return model
