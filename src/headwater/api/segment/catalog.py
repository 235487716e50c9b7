"""``/segment/v1/catalog/{destinations,sources,warehouses}``: what Headwater can connect, as
Segment's catalog metadata.

A destination's ``id`` is Segment's catalog id (its ``metadataId``) where the definition
carries one, so a Terraform configuration or SDK script written against Segment names the same
destination here; a definition without one (a destination function) uses its type. Two
definitions may share an id (Headwater's own ``Actions Amplitude`` and the package's): the
first, Headwater's own, answers for it. Sources are all one kind in Headwater (every library
writes to the same Tracking API), so the source catalog holds the two entries Segment's
clients name most, with Segment's ids; warehouses are Headwater's kinds, by kind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from headwater.api.errors import ApiError
from headwater.api.segment.envelope import Page, data, paged, pagination
from headwater.destinations.actions import ActionDefinition
from headwater.destinations.definition import DestinationDefinition
from headwater.destinations.listing import settings_schema
from headwater.destinations.registry import definitions, function_definitions
from headwater.store.workspace import slugify
from headwater.warehouse.settings import KINDS, SECRETS

router = APIRouter(prefix="/catalog", tags=["segment catalog"])

Pagination = Annotated[Page, Depends(pagination)]

_NO_LOGOS = {"default": "", "mark": None, "alt": None}

# Segment's catalog entries for the sources Headwater's Tracking API stands in for.
SOURCES: tuple[dict[str, Any], ...] = (
    {
        "id": "iUM16Md8P2",
        "name": "HTTP API",
        "slug": "http-api",
        "description": "Send calls to the Tracking API from any language or service.",
        "categories": ["Server"],
    },
    {
        "id": "IqDTy1TpoU",
        "name": "Javascript",
        "slug": "javascript",
        "description": "Analytics.js on a website: page views and every call it makes.",
        "categories": ["Website"],
    },
)
DEFAULT_SOURCE = SOURCES[0]["id"]

_WAREHOUSE_NAMES = {"duckdb": "DuckDB", "postgres": "Postgres", "data-lake": "Data Lakes"}


# --- destinations ----------------------------------------------------------------------------


def metadata_id(definition: DestinationDefinition) -> str:
    return definition.metadata_id or definition.type


def destination_catalog() -> list[DestinationDefinition]:
    """Every destination definition once per catalog id (Headwater's own first), by name."""
    found: dict[str, DestinationDefinition] = {}
    for definition in [*definitions().values(), *function_definitions()]:
        found.setdefault(metadata_id(definition), definition)
    return sorted(found.values(), key=lambda d: (d.name.casefold(), metadata_id(d)))


def find_destination(id_: str) -> DestinationDefinition | None:
    """The definition a ``metadataId`` names (None: not in this server's catalog)."""
    return next((d for d in destination_catalog() if metadata_id(d) == id_), None)


def _options(schema: Mapping[str, Any], secrets: frozenset[str]) -> list[dict[str, Any]]:
    required = set(schema.get("required", []))
    options = []
    for name, spec in schema.get("properties", {}).items():
        kind = spec.get("type")
        if kind is None:  # an optional field: anyOf [<type>, null]
            kind = next(
                (s.get("type") for s in spec.get("anyOf", []) if s.get("type") != "null"),
                "string",
            )
        if name in secrets:
            kind = "password"
        elif kind == "object":
            kind = "map"
        option: dict[str, Any] = {
            "name": name,
            "type": str(kind),
            "required": name in required,
            "description": str(spec.get("description", "")),
            "label": str(spec.get("title", name)),
        }
        if "default" in spec:
            option["defaultValue"] = spec["default"]
        options.append(option)
    return options


_FIELD_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "object": "OBJECT",
    "array": "OBJECT",
    "datetime": "DATETIME",
}


def _action(action: ActionDefinition) -> dict[str, Any]:
    return {
        "id": action.name,
        "slug": action.name,
        "name": action.title,
        "description": action.description,
        "platform": "CLOUD",
        "hidden": False,
        "defaultTrigger": action.default_trigger or None,
        "fields": [
            {
                "id": key,
                "sortOrder": position,
                "fieldKey": key,
                "label": key,
                "type": "PASSWORD" if key in action.secret_fields else _FIELD_TYPES[spec.type],
                "description": spec.description,
                "defaultValue": spec.default,
                "required": spec.required,
                "multiple": spec.multiple or spec.type == "array",
                "choices": list(spec.choices) if spec.choices else None,
                "dynamic": False,
                "allowNull": False,
            }
            for position, (key, spec) in enumerate(action.fields.items())
        ],
    }


def destination_metadata(definition: DestinationDefinition) -> dict[str, Any]:
    """Segment's ``DestinationMetadataV1`` for a definition (no logos, categories or website:
    Headwater's catalog has none)."""
    methods = definition.methods
    return {
        "id": metadata_id(definition),
        "name": definition.name,
        "description": definition.description,
        "slug": definition.slug or slugify(definition.name, "destination").replace("_", "-"),
        "logos": _NO_LOGOS,
        "options": _options(settings_schema(definition), definition.secrets),
        "status": "PUBLIC",
        "previousNames": list(definition.aliases),
        "categories": [],
        "website": "",
        "components": [],
        "supportedFeatures": {
            "cloudModeInstances": "MULTIPLE",
            "deviceModeInstances": "NONE",
            "replay": True,
            "browserUnbundling": False,
            "browserUnbundlingPublic": False,
        },
        "supportedMethods": {
            "pageview": "page" in methods,
            "identify": "identify" in methods,
            "alias": "alias" in methods,
            "track": "track" in methods,
            "group": "group" in methods,
        },
        "supportedPlatforms": {
            "browser": False,
            "server": True,
            "mobile": False,
            "warehouse": False,
            "cloudAppObject": False,
            "linkedAudiences": False,
        },
        "actions": [_action(a) for a in definition.actions.values()],
        "presets": [
            {"actionId": p.action, "name": p.name, "fields": dict(p.fields), "trigger": p.trigger}
            for p in definition.presets
            if p.automatic
        ],
        "partnerOwned": False,
    }


# --- sources and warehouses ------------------------------------------------------------------


def source_metadata(id_: str) -> dict[str, Any] | None:
    """Segment's ``SourceMetadataV1`` of a source catalog id (None: not in the catalog)."""
    entry = next((s for s in SOURCES if s["id"] == id_), None)
    if entry is None:
        return None
    return {
        **entry,
        "logos": _NO_LOGOS,
        "options": [],
        "isCloudEventSource": False,
        "status": "PUBLIC",
        "partnerOwned": False,
    }


def warehouse_metadata(kind: str) -> dict[str, Any] | None:
    """``WarehouseMetadataV1`` of a warehouse kind; its settings are the kind's model."""
    model = KINDS.get(kind)
    if model is None:
        return None
    return {
        "id": kind,
        "name": _WAREHOUSE_NAMES.get(kind, kind),
        "slug": kind,
        "description": f"Headwater loads each source's events into {_WAREHOUSE_NAMES[kind]}.",
        "logos": _NO_LOGOS,
        "options": _options(model.model_json_schema(), SECRETS.get(kind, frozenset())),
    }


# --- routes ----------------------------------------------------------------------------------


def _not_found(kind: str, id_: str) -> ApiError:
    return ApiError(404, "not_found", f"the {kind} catalog has no entry with the id {id_!r}")


@router.get("/destinations", response_model=None)
def list_destination_metadata(page: Pagination) -> dict[str, Any]:
    found, out = paged(destination_catalog(), page)
    return data(destinationsCatalog=[destination_metadata(d) for d in found], pagination=out)


@router.get("/destinations/{destinationMetadataId}", response_model=None)
def get_destination_metadata(
    id_: Annotated[str, Path(alias="destinationMetadataId")],
) -> dict[str, Any]:
    definition = find_destination(id_)
    if definition is None:
        raise _not_found("destination", id_)
    return data(destinationMetadata=destination_metadata(definition))


@router.get("/sources", response_model=None)
def list_source_metadata(page: Pagination) -> dict[str, Any]:
    found, out = paged([s["id"] for s in SOURCES], page)
    return data(sourcesCatalog=[source_metadata(s) for s in found], pagination=out)


@router.get("/sources/{sourceMetadataId}", response_model=None)
def get_source_metadata(id_: Annotated[str, Path(alias="sourceMetadataId")]) -> dict[str, Any]:
    found = source_metadata(id_)
    if found is None:
        raise _not_found("source", id_)
    return data(sourceMetadata=found)


@router.get("/warehouses", response_model=None)
def list_warehouse_metadata(page: Pagination) -> dict[str, Any]:
    found, out = paged(sorted(KINDS), page)
    return data(warehousesCatalog=[warehouse_metadata(k) for k in found], pagination=out)


@router.get("/warehouses/{warehouseMetadataId}", response_model=None)
def get_warehouse_metadata(
    id_: Annotated[str, Path(alias="warehouseMetadataId")],
) -> dict[str, Any]:
    found = warehouse_metadata(id_)
    if found is None:
        raise _not_found("warehouse", id_)
    return data(warehouseMetadata=found)
