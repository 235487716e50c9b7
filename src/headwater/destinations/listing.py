"""The catalog as people and clients read it: search, and one definition as JSON.

The REST API's ``/catalog/destinations`` and ``headwater catalog`` show the same thing, so both
build it here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from headwater.destinations.actions import ActionDefinition
from headwater.destinations.definition import DestinationDefinition

NATIVE = "native"
ACTIONS = "actions"

_schemas: dict[type, dict[str, Any]] = {}


def kind(definition: DestinationDefinition) -> str:
    """``actions`` for a destination of Segment's package (run by the actions runtime)."""
    return ACTIONS if definition.package_directory is not None else NATIVE


def matches(definition: DestinationDefinition, search: str) -> bool:
    """Every word of ``search`` is in the type, a name or the description (any case)."""
    text = " ".join(
        (definition.type, *definition.integration_names, definition.description)
    ).casefold()
    return all(word in text for word in search.casefold().split())


def search(definitions: Iterable[DestinationDefinition], words: str) -> list[DestinationDefinition]:
    found = [d for d in definitions if matches(d, words)]
    return sorted(found, key=lambda d: (d.name.casefold(), d.type))


def settings_schema(definition: DestinationDefinition) -> dict[str, Any]:
    """The settings' JSON Schema; each secret is ``writeOnly`` (never shown once saved)."""
    schema = _schemas.get(definition.settings)
    if schema is None:
        schema = definition.settings.model_json_schema(by_alias=True)
        _schemas[definition.settings] = schema
    properties = schema.get("properties", {})
    hidden = {
        name: {**spec, "writeOnly": True}
        for name, spec in properties.items()
        if name in definition.secrets
    }
    return {**schema, "properties": {**properties, **hidden}} if hidden else schema


def action_json(action: ActionDefinition) -> dict[str, Any]:
    return {
        "name": action.name,
        "title": action.title,
        "description": action.description,
        "defaultTrigger": action.default_trigger,
        "batches": action.batches,
        "fields": {
            n: {
                "type": f.type,
                "required": f.required,
                "multiple": f.multiple,
                "choices": list(f.choices) if f.choices else None,
                "description": f.description,
                "secret": n in action.secret_fields,
                "default": f.default,
            }
            for n, f in action.fields.items()
        },
    }


def brief_json(d: DestinationDefinition) -> dict[str, Any]:
    """A catalog entry as a list shows it."""
    return {"type": d.type, "name": d.name, "kind": kind(d), "description": d.description}


def definition_json(d: DestinationDefinition) -> dict[str, Any]:
    return {
        "type": d.type,
        "name": d.name,
        "kind": kind(d),
        "packageDirectory": d.package_directory,
        "aliases": list(d.aliases),
        "description": d.description,
        "methods": sorted(d.methods),
        "secrets": sorted(d.secrets),
        "defaultInIntegrations": d.default_enabled,
        "batching": None
        if d.batching is None
        else {"maxEvents": d.batching.max_events, "maxBytes": d.batching.max_bytes},
        "settings": settings_schema(d),
        "actions": [action_json(a) for a in d.actions.values()],
        "presets": [
            {
                "name": p.name,
                "action": p.action,
                "trigger": p.trigger,
                "fields": dict(p.fields),
                "automatic": p.automatic,
            }
            for p in d.presets
        ],
        "hooks": sorted(d.hooks),
    }
