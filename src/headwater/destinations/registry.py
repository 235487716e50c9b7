"""The destination catalog: every ``DEFINITION`` under ``destinations/catalog/``, by type."""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from headwater.destinations import catalog
from headwater.destinations.definition import DestinationDefinition
from headwater.errors import UnknownDestinationType


@cache
def definitions() -> dict[str, DestinationDefinition]:
    """Every destination definition, by type; imported once."""
    found: dict[str, DestinationDefinition] = {}
    names: dict[str, str] = {}
    for module_info in sorted(pkgutil.iter_modules(catalog.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{catalog.__name__}.{module_info.name}")
        definition = getattr(module, "DEFINITION", None)
        if not isinstance(definition, DestinationDefinition):
            continue
        if definition.type in found:
            raise RuntimeError(f"two destinations have the type {definition.type!r}")
        for name in definition.integration_names:
            if name in names:
                raise RuntimeError(
                    f"{definition.type!r} and {names[name]!r} both answer to {name!r}"
                )
            names[name] = definition.type
        found[definition.type] = definition
    return found


def get(destination_type: str) -> DestinationDefinition:
    try:
        return definitions()[destination_type]
    except KeyError:
        known = ", ".join(sorted(definitions()))
        raise UnknownDestinationType(
            f"unknown destination type {destination_type!r}; known types: {known}"
        ) from None


def integration_names() -> frozenset[str]:
    """Every name the integrations object may use for a destination of the catalog."""
    return frozenset(n for d in definitions().values() for n in d.integration_names)
