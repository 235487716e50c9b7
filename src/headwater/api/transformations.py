"""Protocols Transformations in the REST API, in the Public API's shapes.

``/api/v1/transformations`` lists and creates, ``/api/v1/transformations/{id}`` reads, changes
(name, enabled, the resulting names and values; never the source, destination or event) and
deletes; ``/api/v1/transformations/preview`` shows what one does to an event without saving.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Query, Request

from headwater.api.errors import ApiError
from headwater.destinations.registry import get as destination_type
from headwater.errors import InvalidError, UnknownDestinationType
from headwater.protocols.transformations import Transformations, from_api
from headwater.protocols.transformations.model import IMMUTABLE
from headwater.protocols.transformations.store import TransformationStore
from headwater.store.workspace import WorkspaceStore

router = APIRouter(tags=["transformations"])
TransformationId = Annotated[
    str, Path(alias="transformationId", description="The transformation's id.")
]


def transformations_of(request: Request) -> TransformationStore:
    workspace: WorkspaceStore = request.app.state.workspace_store
    return TransformationStore(workspace)


Store = Annotated[TransformationStore, Depends(transformations_of)]


def _check_destination(body: object) -> None:
    if not isinstance(body, dict):
        return
    metadata_id = body.get("destinationMetadataId")
    if isinstance(metadata_id, str):
        try:
            destination_type(metadata_id)
        except UnknownDestinationType as exc:
            raise InvalidError(str(exc), "destinationMetadataId") from None


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(str(offset).encode()).decode()


def _offset(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        return max(0, int(base64.urlsafe_b64decode(cursor.encode()).decode()))
    except ValueError:
        raise InvalidError("not a cursor from this API", "pagination.cursor") from None


@router.get("/transformations", response_model=None)
def list_transformations(
    store: Store,
    count: Annotated[int, Query(alias="pagination.count", ge=1, le=1000)] = 200,
    cursor: Annotated[str | None, Query(alias="pagination.cursor")] = None,
) -> dict[str, Any]:
    found = store.list()
    start = _offset(cursor)
    page = found[start : start + count]
    pagination: dict[str, Any] = {"current": _cursor(start), "totalEntries": len(found)}
    if start + count < len(found):
        pagination["next"] = _cursor(start + count)
    if start > 0:
        pagination["previous"] = _cursor(max(0, start - count))
    return {"data": {"transformations": [t.to_api() for t in page], "pagination": pagination}}


@router.post("/transformations", status_code=201, response_model=None)
def create_transformation(store: Store, body: Annotated[Any, Body()]) -> dict[str, Any]:
    _check_destination(body)
    return {"data": {"transformation": store.create(body).to_api()}}


@router.get("/transformations/{transformationId}", response_model=None)
def get_transformation(transformation_id: TransformationId, store: Store) -> dict[str, Any]:
    return {"data": {"transformation": store.get(transformation_id).to_api()}}


@router.patch("/transformations/{transformationId}", response_model=None)
def update_transformation(
    transformation_id: TransformationId, store: Store, body: Annotated[Any, Body()]
) -> dict[str, Any]:
    current = store.get(transformation_id).to_api()
    if isinstance(body, dict):
        for name in IMMUTABLE:
            if name in body and body[name] != current.get(name):
                raise ApiError(
                    400,
                    "validation",
                    f"{name}: cannot be changed; create a new transformation instead",
                    name,
                )
    return {"data": {"transformation": store.update(transformation_id, body).to_api()}}


@router.delete("/transformations/{transformationId}", response_model=None)
def delete_transformation(transformation_id: TransformationId, store: Store) -> dict[str, Any]:
    store.delete(transformation_id)
    return {"data": {"status": "SUCCESS"}}


@router.post("/transformations/preview", response_model=None)
def preview_transformation(store: Store, body: Annotated[Any, Body()]) -> dict[str, Any]:
    """``{transformation or id, event}`` → ``{event}``: the event as the transformation leaves
    it (whether its ``if`` matches or not), or null when it drops it. Nothing is saved."""
    if not isinstance(body, dict):
        raise InvalidError("the body must be an object", None)
    unknown = sorted(set(body) - {"transformation", "id", "event"})
    if unknown:
        raise InvalidError(f"unknown field {unknown[0]!r}", unknown[0])
    event = body.get("event")
    if not isinstance(event, dict):
        raise InvalidError("event must be an object", "event")
    if "id" in body:
        if not isinstance(body["id"], str):
            raise InvalidError("id must be a string", "id")
        transformation = store.get(body["id"])
    elif "transformation" in body:
        raw = body["transformation"]
        if isinstance(raw, dict):
            raw = {"name": "preview", "sourceId": "preview", "enabled": True, **raw}
        transformation = from_api(raw, "transformation.")
    else:
        raise InvalidError("give a transformation or the id of one", "transformation")
    compiled = Transformations([replace(transformation, enabled=True)])  # even a disabled one
    scope = (
        compiled.for_source(transformation.source_id)
        if transformation.destination_metadata_id is None
        else compiled.for_destination(
            transformation.source_id, transformation.destination_metadata_id
        )
    )
    result = event if scope is None else scope.apply(event)
    return {"data": {"event": result}}
