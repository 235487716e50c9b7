"""``/segment/v1/warehouses``: Segment's Warehouses operations on the warehouse store.

The same warehouses as ``/api/v1/warehouses`` (same store, same checks of settings and
secrets), in Segment's shapes: ``WarehouseV1`` with the warehouse's name in ``settings.name``,
created by ``metadataId`` (a warehouse catalog id: ``duckdb``, ``postgres``, ``data-lake``).
A warehouse's connected sources are its ``options.sources``: none named means every source,
new ones too, which is also what Segment does on create unless ``disconnectAllSources``.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr
from pydantic.alias_generators import to_camel

from headwater.api.auth import ReadableWarehouses
from headwater.api.errors import ApiError
from headwater.api.segment.catalog import warehouse_metadata
from headwater.api.segment.envelope import Page, data, paged, pagination
from headwater.api.segment.sources import SourceId, require_source, source_json, warehouse_json
from headwater.api.segment.workspace import Store
from headwater.api.warehouses import Store as Warehouses
from headwater.store.workspace import UNSET, SourceInfo, WorkspaceStore
from headwater.warehouse.store import WarehouseInfo, WarehouseStore

router = APIRouter(prefix="/warehouses", tags=["segment warehouses"])

WarehouseId = Annotated[str, Path(alias="warehouseId", description="The warehouse's id or name.")]
Pagination = Annotated[Page, Depends(pagination)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=False)


class CreateWarehouseBody(_Body):
    """Segment's ``CreateWarehouseV1Input``; the name may also come as ``settings.name``."""

    metadata_id: StrictStr
    name: StrictStr | None = None
    enabled: StrictBool = True
    settings: dict[str, Any]
    disconnect_all_sources: StrictBool = False


class UpdateWarehouseBody(_Body):
    """Segment's ``UpdateWarehouseV1Input``: ``settings`` changes the keys it names and keeps
    the others; a null ``name`` keeps the name."""

    name: StrictStr | None = None
    enabled: StrictBool | None = None
    settings: dict[str, Any] | None = None


def _name_in(settings: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """Segment keeps the name among the settings; Headwater's store keeps it beside them."""
    rest = dict(settings)
    name = rest.pop("name", None)
    if name is not None and not isinstance(name, str):
        raise ApiError(422, "validation", "settings.name: must be a string", "settings.name")
    return name, rest


def _free_name(store: WarehouseStore, name: str) -> str:
    taken = {w.name for w in store.list()}
    candidates = itertools.chain([name], (f"{name} ({n})" for n in itertools.count(2)))
    return next(c for c in candidates if c not in taken)


def _connected(workspace: WorkspaceStore, warehouse: WarehouseInfo) -> list[SourceInfo]:
    chosen = warehouse.options.sources
    everything = workspace.all_sources()
    return everything if chosen is None else [s for s in everything if s.id in chosen]


def _set_sources(store: WarehouseStore, warehouse: WarehouseInfo, ids: list[str]) -> None:
    options = warehouse.options.model_dump()
    store.update(warehouse.id, options={**options, "sources": ids})


# --- routes ----------------------------------------------------------------------------------


@router.get("", response_model=None)
def list_warehouses(
    page: Pagination, store: Warehouses, only: ReadableWarehouses
) -> dict[str, Any]:
    found, out = paged([w for w in store.list() if only is None or w.id in only], page)
    return data(warehouses=[warehouse_json(w) for w in found], pagination=out)


@router.post("", status_code=201, response_model=None)
def create_warehouse(body: CreateWarehouseBody, store: Warehouses) -> dict[str, Any]:
    metadata = warehouse_metadata(body.metadata_id)
    if metadata is None:
        raise ApiError(
            404,
            "not_found",
            f"metadataId: the warehouse catalog has no entry {body.metadata_id!r} "
            "(GET /segment/v1/catalog/warehouses lists them)",
            "metadataId",
        )
    named, settings = _name_in(body.settings)
    name = next((n for n in (body.name, named) if n is not None), None)
    if name is None:
        name = _free_name(store, metadata["name"])
    created = store.create(
        name,
        body.metadata_id,
        enabled=body.enabled,
        settings=settings,
        options={"sources": []} if body.disconnect_all_sources else None,
    )
    return data(warehouse=warehouse_json(created))


@router.get("/{warehouseId}", response_model=None)
def get_warehouse(warehouse_id: WarehouseId, store: Warehouses) -> dict[str, Any]:
    return data(warehouse=warehouse_json(store.require(warehouse_id)))


@router.patch("/{warehouseId}", response_model=None)
def update_warehouse(
    body: UpdateWarehouseBody, warehouse_id: WarehouseId, store: Warehouses
) -> dict[str, Any]:
    current = store.require(warehouse_id)
    name: str | None = body.name
    settings: dict[str, Any] | None = None
    if body.settings is not None:
        named, given = _name_in(body.settings)
        name = name if name is not None else named
        # Secrets are shown as [redacted], which the store reads as "keep the stored value".
        settings = {**current.shown_settings(), **given}
    changed = store.update(
        current.id,
        name=name if name is not None else UNSET,
        enabled=body.enabled if body.enabled is not None else UNSET,
        settings=settings if settings is not None else UNSET,
    )
    return data(warehouse=warehouse_json(changed))


@router.delete("/{warehouseId}", response_model=None)
def delete_warehouse(warehouse_id: WarehouseId, store: Warehouses) -> dict[str, Any]:
    store.delete(store.require(warehouse_id).id)
    return data(status="SUCCESS")


@router.get("/{warehouseId}/connected-sources", response_model=None)
def list_connected_sources(
    warehouse_id: WarehouseId, page: Pagination, store: Warehouses, workspace: Store
) -> dict[str, Any]:
    found, out = paged(_connected(workspace, store.require(warehouse_id)), page)
    return data(sources=[source_json(workspace, s) for s in found], pagination=out)


@router.post("/{warehouseId}/connected-sources/{sourceId}", status_code=201, response_model=None)
def add_connection(
    warehouse_id: WarehouseId, source_id: SourceId, store: Warehouses, workspace: Store
) -> dict[str, Any]:
    """Connecting a source a warehouse already takes (every source, when it names none)
    changes nothing."""
    warehouse = store.require(warehouse_id)
    source = require_source(workspace, source_id)
    chosen = warehouse.options.sources
    if chosen is not None and source.id not in chosen:
        _set_sources(store, warehouse, [*chosen, source.id])
    return data(status="SUCCESS")


@router.delete("/{warehouseId}/connected-sources/{sourceId}", response_model=None)
def remove_connection(
    warehouse_id: WarehouseId, source_id: SourceId, store: Warehouses, workspace: Store
) -> dict[str, Any]:
    """A warehouse that took every source then names every other source there is (so a
    source created later is not connected)."""
    warehouse = store.require(warehouse_id)
    source = require_source(workspace, source_id)
    connected = [s.id for s in _connected(workspace, warehouse)]
    if source.id in connected:
        _set_sources(store, warehouse, [s for s in connected if s != source.id])
    return data(status="SUCCESS")
