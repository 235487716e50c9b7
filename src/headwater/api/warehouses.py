"""``/api/v1/warehouses``: warehouses, "sync now" and sync history.

A sync requested here is taken up by the process running the worker role within seconds;
``GET …/syncs/{id}`` follows it (``requested`` → ``running`` → ``success`` / ``partial`` /
``failure``). Settings come back with secrets as ``[redacted]``.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from headwater.api.auth import ReadableWarehouses
from headwater.api.changes import NoNulls
from headwater.api.sources import iso as _iso
from headwater.errors import NotFoundError
from headwater.store.workspace import UNSET, WorkspaceStore
from headwater.warehouse.store import WarehouseInfo, WarehouseStore
from headwater.warehouse.sync import history, request_sync, run_of

router = APIRouter(tags=["warehouses"])


def warehouses_of(request: Request) -> WarehouseStore:
    store: WorkspaceStore = request.app.state.workspace_store
    return WarehouseStore(store)


Store = Annotated[WarehouseStore, Depends(warehouses_of)]
IdOrName = Annotated[str, Path(alias="idOrName", description="The warehouse's id or name.")]
MAX_ID = 2**63 - 1  # ids are 64-bit integer columns


class CreateWarehouseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    type: StrictStr
    enabled: StrictBool = True
    settings: dict[str, Any] = {}
    options: dict[str, Any] = {}


class UpdateWarehouseBody(NoNulls):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr | None = None
    enabled: StrictBool | None = None
    settings: dict[str, Any] | None = None
    options: dict[str, Any] | None = None


def warehouse_json(warehouse: WarehouseInfo) -> dict[str, Any]:
    return {
        "id": warehouse.id,
        "name": warehouse.name,
        "type": warehouse.type,
        "enabled": warehouse.enabled,
        "settings": warehouse.shown_settings(),
        "options": warehouse.options.model_dump(exclude_defaults=True),
        "createdAt": _iso(warehouse.created_at),
        "updatedAt": _iso(warehouse.updated_at),
    }


def _sync_json(run: dict[str, Any]) -> dict[str, Any]:
    return {
        **run,
        "startedAt": _iso(run["startedAt"]),
        "finishedAt": _iso(run["finishedAt"]) if run["finishedAt"] else None,
    }


@router.get("/warehouses", response_model=None)
def list_warehouses(store: Store, only: ReadableWarehouses) -> dict[str, Any]:
    found = [w for w in store.list() if only is None or w.id in only]
    return {"data": {"warehouses": [warehouse_json(w) for w in found]}}


@router.post("/warehouses", status_code=201, response_model=None)
def create_warehouse(body: CreateWarehouseBody, store: Store) -> dict[str, Any]:
    created = store.create(
        body.name, body.type, enabled=body.enabled, settings=body.settings, options=body.options
    )
    return {"data": {"warehouse": warehouse_json(created)}}


@router.get("/warehouses/{idOrName}", response_model=None)
def get_warehouse(id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    return {"data": {"warehouse": warehouse_json(store.require(id_or_name))}}


@router.patch("/warehouses/{idOrName}", response_model=None)
def update_warehouse(
    body: UpdateWarehouseBody, id_or_name: IdOrName, store: Store
) -> dict[str, Any]:
    given = body.model_dump(exclude_unset=True)
    changed = store.update(
        id_or_name,
        name=given.get("name", UNSET),
        enabled=given.get("enabled", UNSET),
        settings=given.get("settings", UNSET),
        options=given.get("options", UNSET),
    )
    return {"data": {"warehouse": warehouse_json(changed)}}


@router.delete("/warehouses/{idOrName}", response_model=None)
def delete_warehouse(id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    store.delete(id_or_name)
    return {"data": {"status": "SUCCESS"}}


@router.post("/warehouses/{idOrName}/syncs", status_code=202, response_model=None)
def sync_now(id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    """Ask for a sync now; follow it at ``GET …/syncs/{id}``."""
    warehouse = store.require(id_or_name)
    engine = store.workspace.engine
    run = run_of(engine, warehouse.id, request_sync(engine, warehouse.id, time.time()))
    assert run is not None
    return {"data": {"sync": _sync_json(run)}}


@router.get("/warehouses/{idOrName}/syncs", response_model=None)
def sync_history(id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    """The latest 100 runs, newest first: status, rows per table, notices."""
    warehouse = store.require(id_or_name)
    return {
        "data": {"syncs": [_sync_json(r) for r in history(store.workspace.engine, warehouse.id)]}
    }


@router.get("/warehouses/{idOrName}/syncs/{syncId}", response_model=None)
def get_sync(
    id_or_name: IdOrName,
    store: Store,
    sync_id: Annotated[int, Path(alias="syncId", ge=1, le=MAX_ID)],
) -> dict[str, Any]:
    warehouse = store.require(id_or_name)
    run = run_of(store.workspace.engine, warehouse.id, sync_id)
    if run is None:
        raise NotFoundError(f"warehouse {warehouse.name!r} has no sync {sync_id}")
    return {"data": {"sync": _sync_json(run)}}
