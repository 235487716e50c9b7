"""The ``integrations`` object: which destinations a message may go to (Spec §2.4).

Keys are case sensitive and are a destination's catalog name or one of its aliases; ``All``
applies when the destination is not named; with neither, the destination's default decides
(on for every destination but Salesforce). A ``true`` value or an object (options for the
destination) means send; anything else means don't.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

# Keys with a meaning of their own, never "unknown integrations".
RESERVED = frozenset({"All", "Segment.io", "Warehouses"})


def is_enabled(names: Iterable[str], default: bool, integrations: Mapping[str, Any] | None) -> bool:
    """Whether a destination known by ``names`` (catalog name first) receives the message."""
    if not integrations:
        return default
    for name in names:
        if name in integrations:
            value = integrations[name]
            return value is True or isinstance(value, dict)
    if "All" in integrations:
        return integrations["All"] is True
    return default


def names_destination(names: Iterable[str], integrations: Mapping[str, Any] | None) -> bool:
    """Whether the integrations object has a value of its own for this destination (``All``
    does not count): a schema integration filter never overrides one (A-SC-7)."""
    return integrations is not None and any(name in integrations for name in names)


def warehouse_enabled(warehouse_id: str, integrations: Mapping[str, Any] | None) -> bool:
    """Whether a message is loaded into a warehouse: only the ``Warehouses`` key decides.

    ``All: false`` does not stop warehouses; ``{"Warehouses": {"all": false}}`` does, and
    ``{"Warehouses": {"warehouseIds": [...]}}`` names the only ones that load it.
    """
    value = (integrations or {}).get("Warehouses")
    if isinstance(value, dict):
        if "warehouseIds" in value:
            ids = value["warehouseIds"]
            return isinstance(ids, list) and warehouse_id in ids
        if "all" in value:
            return value["all"] is True
    return True


def options(names: Iterable[str], integrations: Mapping[str, Any] | None) -> dict[str, Any]:
    """The destination's options object from the integrations object, if one was given."""
    for name in names:
        value = (integrations or {}).get(name)
        if isinstance(value, dict):
            return value
    return {}


def unknown(integrations: Mapping[str, Any] | None, known: frozenset[str]) -> list[str]:
    """Keys that name no destination of the catalog (``UNKNOWN_INTEGRATION``)."""
    return sorted(k for k in (integrations or {}) if k not in known and k not in RESERVED)
