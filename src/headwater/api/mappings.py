"""Actions mappings in the REST API: ``/api/v1/destinations/{idOrName}/mappings``.

List, create (disabled unless ``enabled`` is given, as in Segment), read, change, delete,
duplicate (a disabled copy named "<name> (Copy)"), and import Segment's exported subscriptions.
The catalog lists each Actions destination's actions and their fields. Header values are
secrets: shown as ``[redacted]``, and ``[redacted]`` sent back keeps the stored value.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from headwater.api.changes import NoNulls
from headwater.api.destinations import IdOrName, Store
from headwater.destinations.actions import ActionMapping, duplicate, shown_mapping
from headwater.destinations.presets import import_subscriptions
from headwater.destinations.store import DestinationInfo
from headwater.errors import NotFoundError

router = APIRouter(tags=["actions mappings"])
MappingId = Annotated[str, Path(alias="mappingId", description="The mapping's id.")]


class MappingBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    trigger: StrictStr
    action: StrictStr
    fields: dict[str, Any] = {}
    enabled: StrictBool = False


class MappingChange(NoNulls):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr | None = None
    trigger: StrictStr | None = None
    action: StrictStr | None = None
    fields: dict[str, Any] | None = None
    enabled: StrictBool | None = None


def _one(destination: DestinationInfo, mapping_id: str) -> ActionMapping:
    for found in destination.mappings:
        if found.id == mapping_id:
            return found
    raise NotFoundError(f"destination {destination.name!r} has no mapping {mapping_id!r}")


def _shown(destination: DestinationInfo, mapping: ActionMapping) -> dict[str, Any]:
    """Header values (the action's secret fields) come back as ``[redacted]``; sending that
    back keeps them."""
    return shown_mapping(destination.definition.actions, mapping)


def _created(store: Store, id_or_name: str, body: dict[str, Any]) -> dict[str, Any]:
    before = {m.id for m in store.require(id_or_name).mappings}
    destination = store.edit_mappings(id_or_name, lambda mappings: [*mappings, body])
    [created] = [m for m in destination.mappings if m.id not in before]
    return {"data": {"mapping": _shown(destination, created)}}


@router.get("/destinations/{idOrName}/mappings", response_model=None)
def list_mappings(id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    return {"data": {"mappings": store.require(id_or_name).shown_mappings()}}


@router.post("/destinations/{idOrName}/mappings", status_code=201, response_model=None)
def create_mapping(body: MappingBody, id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    return _created(store, id_or_name, body.model_dump())


@router.post("/destinations/{idOrName}/mappings/import", status_code=201, response_model=None)
def import_segment_subscriptions(
    document: Annotated[Any, Body()],
    id_or_name: IdOrName,
    store: Store,
    replace: Annotated[
        bool, Query(description="Replace the destination's mappings instead of adding to them.")
    ] = False,
) -> dict[str, Any]:
    """Segment's exported subscriptions (the answer of its Public API's ``GET
    /destinations/{destinationId}/subscriptions``, its ``subscriptions`` list, or one) as
    mappings, enabled as they were in Segment; all are added or none."""
    destination = store.require(id_or_name)
    mappings = import_subscriptions(destination.definition, document)
    before = set() if replace else {m.id for m in destination.mappings}
    changed = store.edit_mappings(
        destination.id, lambda current: mappings if replace else [*current, *mappings]
    )
    added = [m for m in changed.mappings if m.id not in before]
    return {"data": {"mappings": [_shown(changed, m) for m in added]}}


@router.get("/destinations/{idOrName}/mappings/{mappingId}", response_model=None)
def get_mapping(id_or_name: IdOrName, mapping_id: MappingId, store: Store) -> dict[str, Any]:
    destination = store.require(id_or_name)
    return {"data": {"mapping": _shown(destination, _one(destination, mapping_id))}}


@router.patch("/destinations/{idOrName}/mappings/{mappingId}", response_model=None)
def update_mapping(
    body: MappingChange, id_or_name: IdOrName, mapping_id: MappingId, store: Store
) -> dict[str, Any]:
    _one(store.require(id_or_name), mapping_id)
    change = body.model_dump(exclude_unset=True)
    destination = store.edit_mappings(
        id_or_name,
        lambda mappings: [{**m, **change} if m["id"] == mapping_id else m for m in mappings],
    )
    return {"data": {"mapping": _shown(destination, _one(destination, mapping_id))}}


@router.delete("/destinations/{idOrName}/mappings/{mappingId}", response_model=None)
def delete_mapping(id_or_name: IdOrName, mapping_id: MappingId, store: Store) -> dict[str, Any]:
    _one(store.require(id_or_name), mapping_id)
    store.edit_mappings(id_or_name, lambda mappings: [m for m in mappings if m["id"] != mapping_id])
    return {"data": {"status": "SUCCESS"}}


@router.post(
    "/destinations/{idOrName}/mappings/{mappingId}/duplicate", status_code=201, response_model=None
)
def duplicate_mapping(id_or_name: IdOrName, mapping_id: MappingId, store: Store) -> dict[str, Any]:
    return _created(store, id_or_name, duplicate(_one(store.require(id_or_name), mapping_id)))
