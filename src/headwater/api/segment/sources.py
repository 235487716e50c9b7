"""``/segment/v1/sources``: Segment's Sources operations on the workspace store's sources.

The same sources as ``/api/v1/sources`` (same store, same checks), in Segment's shapes:
``SourceV1`` with its catalog ``metadata`` and ``labels``, create by ``slug`` and
``metadataId``. Headwater's sources are all one kind, so the catalog entry a source was created
with is only remembered to be shown again (a client such as Terraform compares it with what it
sent); sources made elsewhere show the HTTP API entry.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr
from pydantic.alias_generators import to_camel

from headwater.api import sources as v1
from headwater.api.auth import ReadableSources
from headwater.api.changes import NoNulls
from headwater.api.errors import ApiError
from headwater.api.segment.catalog import DEFAULT_SOURCE, source_metadata, warehouse_metadata
from headwater.api.segment.destinations import Destinations, destination_json
from headwater.api.segment.envelope import Page, bad_cursor, data, paged, pagination
from headwater.api.segment.workspace import Store
from headwater.errors import InvalidError
from headwater.protocols.plans import PlanStore
from headwater.store.workspace import FIRST_PAGE, UNSET, SourceInfo, WorkspaceStore
from headwater.warehouse.store import WarehouseInfo, WarehouseStore

router = APIRouter(prefix="/sources", tags=["segment sources"])

SourceId = Annotated[str, Path(alias="sourceId", description="The source's id (or name).")]
Pagination = Annotated[Page, Depends(pagination)]

_METADATA_KEY = "segment.source_metadata."


def _metadata_of(store: WorkspaceStore, source_id: str) -> dict[str, Any]:
    chosen = store.get_meta(_METADATA_KEY + source_id) or DEFAULT_SOURCE
    found = source_metadata(chosen) or source_metadata(DEFAULT_SOURCE)
    assert found is not None
    return found


def source_json(store: WorkspaceStore, source: SourceInfo) -> dict[str, Any]:
    """Segment's ``SourceV1``."""
    return {
        "id": source.id,
        "slug": source.slug,
        "name": source.name,
        "workspaceId": source.workspace_id,
        "enabled": source.enabled,
        "writeKeys": list(source.write_keys),
        "metadata": _metadata_of(store, source.id),
        "settings": dict(source.settings),
        "labels": [],
    }


def require_source(store: WorkspaceStore, source_id: str) -> SourceInfo:
    source = store.get_source(source_id)
    if source is None:
        raise ApiError(404, "not_found", f"no source has the id {source_id!r}")
    return source


# --- bodies ----------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=False)


class CreateSourceBody(_Body):
    """Segment's ``CreateSourceV1Input``; ``name`` (Headwater's) defaults to the slug."""

    slug: StrictStr
    enabled: StrictBool
    metadata_id: StrictStr
    settings: dict[str, Any] | None = None
    disconnect_all_warehouses: StrictBool = False
    name: StrictStr | None = None


class UpdateSourceBody(_Body, NoNulls):
    """Segment's ``UpdateSourceV1Input``: what is left out is kept."""

    name: StrictStr | None = None
    enabled: StrictBool | None = None
    slug: StrictStr | None = None
    settings: dict[str, Any] | None = None


# --- routes ----------------------------------------------------------------------------------


@router.get("", response_model=None)
def list_sources(page: Pagination, store: Store, only: ReadableSources) -> dict[str, Any]:
    try:
        found, next_cursor, total = store.list_sources(
            cursor=page.cursor, count=page.count, only=only
        )
        previous = store.previous_cursor(page.cursor, page.count, only)
    except InvalidError:
        raise bad_cursor() from None
    out: dict[str, Any] = {"current": page.cursor or FIRST_PAGE}
    if next_cursor is not None:
        out["next"] = next_cursor
    if previous is not None:
        out["previous"] = previous
    out["totalEntries"] = total
    return data(sources=[source_json(store, s) for s in found], pagination=out)


@router.post("", status_code=201, response_model=None)
def create_source(body: CreateSourceBody, store: Store) -> dict[str, Any]:
    if source_metadata(body.metadata_id) is None:
        raise ApiError(
            404,
            "not_found",
            f"metadataId: the source catalog has no entry {body.metadata_id!r} "
            "(GET /segment/v1/catalog/sources lists them)",
            "metadataId",
        )
    if body.disconnect_all_warehouses:
        raise ApiError(
            422,
            "validation",
            "disconnectAllWarehouses: not supported; a warehouse takes the sources its "
            "options.sources names (every source when it names none)",
            "disconnectAllWarehouses",
        )
    with store.atomic():
        source = store.create_source(
            body.name if body.name is not None else body.slug,
            slug=body.slug,
            enabled=body.enabled,
            settings=body.settings,
        )
        if body.metadata_id != DEFAULT_SOURCE:
            store.set_meta(_METADATA_KEY + source.id, body.metadata_id)
    return data(source=source_json(store, source))


@router.get("/{sourceId}", response_model=None)
def get_source(source_id: SourceId, store: Store) -> dict[str, Any]:
    source = require_source(store, source_id)
    plan = PlanStore(store).plan_of_source(source.id)
    return data(source=source_json(store, source), trackingPlanId=plan.id if plan else None)


@router.patch("/{sourceId}", response_model=None)
def update_source(body: UpdateSourceBody, source_id: SourceId, store: Store) -> dict[str, Any]:
    source = store.update_source(
        require_source(store, source_id).id,
        name=body.name if body.name is not None else UNSET,
        slug=body.slug if body.slug is not None else UNSET,
        enabled=body.enabled if body.enabled is not None else UNSET,
        settings=body.settings if body.settings is not None else UNSET,
    )
    return data(source=source_json(store, source))


@router.delete("/{sourceId}", response_model=None)
def delete_source(source_id: SourceId, store: Store) -> dict[str, Any]:
    source = require_source(store, source_id)
    with store.atomic():
        store.delete_source(source.id)
        store.delete_meta(_METADATA_KEY + source.id)
    return data(status="SUCCESS")


@router.post("/{sourceId}/writekey", response_model=None)
def create_write_key(source_id: SourceId, store: Store) -> dict[str, Any]:
    """A new write key beside the source's others (Segment's ``createWriteKeyForSource``)."""
    _, source = store.add_write_key(require_source(store, source_id).id)
    return data(source=source_json(store, source))


@router.delete("/{sourceId}/writekey/{writeKey}", response_model=None)
def remove_write_key(
    source_id: SourceId,
    write_key: Annotated[str, Path(alias="writeKey")],
    store: Store,
) -> dict[str, Any]:
    """Stop a write key now; the source's last key stays (409): create another first."""
    store.revoke_write_key(require_source(store, source_id).id, write_key)
    return data(status="SUCCESS")


@router.get("/{sourceId}/connected-destinations", response_model=None)
def list_connected_destinations(
    source_id: SourceId, page: Pagination, destinations: Destinations, store: Store
) -> dict[str, Any]:
    found, out = paged(destinations.list(require_source(store, source_id).id), page)
    return data(destinations=[destination_json(d) for d in found], pagination=out)


@router.get("/{sourceId}/settings", response_model=None)
def list_schema_settings(source_id: SourceId, store: Store) -> dict[str, Any]:
    """Segment's ``listSchemaSettingsInSource``: ``/api/v1``'s, which already has its shape."""
    return v1.get_schema_settings(source_id, store)


@router.patch("/{sourceId}/settings", response_model=None)
def update_schema_settings(
    source_id: SourceId, store: Store, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    """Segment's ``updateSchemaSettingsInSource``: ``track``, ``identify`` and ``group`` change
    field by field; a forwarding field left out turns that forwarding off."""
    return v1.update_schema_settings(source_id, store, body)


def warehouse_json(warehouse: WarehouseInfo) -> dict[str, Any]:
    """Segment's ``WarehouseV1``; as in Segment, the warehouse's name is in its settings."""
    return {
        "id": warehouse.id,
        "metadata": warehouse_metadata(warehouse.type),
        "workspaceId": warehouse.workspace_id,
        "enabled": warehouse.enabled,
        "settings": {"name": warehouse.name, **warehouse.shown_settings()},
    }


@router.get("/{sourceId}/connected-warehouses", response_model=None)
def list_connected_warehouses(
    source_id: SourceId, page: Pagination, store: Store
) -> dict[str, Any]:
    source = require_source(store, source_id)
    connected = [
        w
        for w in WarehouseStore(store).list()
        if w.options.sources is None or source.id in w.options.sources
    ]
    found, out = paged(connected, page)
    return data(warehouses=[warehouse_json(w) for w in found], pagination=out)
