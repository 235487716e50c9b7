"""``/segment/v1/destinations``: Segment's Destinations operations on the destination store.

The same instances as ``/api/v1/destinations`` (same store, so the same checks of names,
settings and secrets), in Segment's shapes: ``DestinationV1`` with its catalog ``metadata``;
create by ``sourceId`` and ``metadataId`` (Segment's catalog id, see ``catalog.py``). Settings
come back with secrets as ``[redacted]``; an update's ``settings`` changes the keys it names
and keeps the others, secrets included (a null clears an optional setting).
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr
from pydantic.alias_generators import to_camel

from headwater.api.auth import ReadableSources
from headwater.api.destinations import destinations_of
from headwater.api.errors import ApiError
from headwater.api.segment.catalog import destination_metadata, find_destination
from headwater.api.segment.envelope import Page, data, paged, pagination
from headwater.api.segment.workspace import Store
from headwater.destinations.store import DestinationInfo, DestinationStore
from headwater.errors import UnknownDestinationType
from headwater.store.workspace import UNSET, is_unicode

router = APIRouter(prefix="/destinations", tags=["segment destinations"])

Destinations = Annotated[DestinationStore, Depends(destinations_of)]
DestinationId = Annotated[str, Path(alias="destinationId", description="The destination's id.")]
Pagination = Annotated[Page, Depends(pagination)]


def _metadata(destination: DestinationInfo) -> dict[str, Any] | None:
    try:
        return destination_metadata(destination.definition)
    except UnknownDestinationType:  # a destination function deleted since
        return None


def destination_json(destination: DestinationInfo) -> dict[str, Any]:
    """Segment's ``DestinationV1``."""
    return {
        "id": destination.id,
        "name": destination.name,
        "enabled": destination.enabled,
        "workspaceId": destination.workspace_id,
        "sourceId": destination.source_id,
        "settings": destination.shown_settings(),
        "metadata": _metadata(destination),
    }


def require_destination(store: DestinationStore, destination_id: str) -> DestinationInfo:
    found = store.get(destination_id)
    if found is None:
        raise ApiError(404, "not_found", f"no destination has the id {destination_id!r}")
    return found


def _free_name(store: DestinationStore, name: str) -> str:
    """``name``, or ``name (2)``, ``(3)``… when another instance has it (Segment does not
    require names; Headwater addresses instances by them, so they stay unique)."""
    taken = {d.name for d in store.list()}
    candidates = itertools.chain([name], (f"{name} ({n})" for n in itertools.count(2)))
    return next(c for c in candidates if c not in taken)


# --- bodies ----------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=False)


class CreateDestinationBody(_Body):
    """Segment's ``CreateDestinationV1Input``."""

    source_id: StrictStr
    metadata_id: StrictStr
    enabled: StrictBool = False
    name: StrictStr | None = None
    settings: dict[str, Any]


class UpdateDestinationBody(_Body):
    """Segment's ``UpdateDestinationV1Input``; a null ``name`` keeps the name."""

    name: StrictStr | None = None
    enabled: StrictBool | None = None
    settings: dict[str, Any] | None = None


# --- routes ----------------------------------------------------------------------------------


@router.get("", response_model=None)
def list_destinations(
    page: Pagination, store: Destinations, only: ReadableSources
) -> dict[str, Any]:
    listed = [d for d in store.list() if only is None or d.source_id in only]
    found, out = paged(listed, page)
    return data(destinations=[destination_json(d) for d in found], pagination=out)


@router.post("", response_model=None)
def create_destination(
    body: CreateDestinationBody, store: Destinations, workspace: Store
) -> dict[str, Any]:
    # An id with a NUL or a lone surrogate names nothing (and PostgreSQL cannot look it up).
    usable = "\x00" not in body.source_id and is_unicode(body.source_id)
    if not usable or workspace.get_source(body.source_id) is None:
        raise ApiError(
            404, "not_found", f"sourceId: no source has the id {body.source_id!r}", "sourceId"
        )
    definition = find_destination(body.metadata_id)
    if definition is None:
        raise ApiError(
            404,
            "not_found",
            f"metadataId: the destination catalog has no entry {body.metadata_id!r} "
            "(GET /segment/v1/catalog/destinations lists them)",
            "metadataId",
        )
    destination = store.create(
        body.name if body.name is not None else _free_name(store, definition.name),
        definition.type,
        body.source_id,
        enabled=body.enabled,
        settings=body.settings,
    )
    return data(destination=destination_json(destination))


@router.get("/{destinationId}", response_model=None)
def get_destination(destination_id: DestinationId, store: Destinations) -> dict[str, Any]:
    return data(destination=destination_json(require_destination(store, destination_id)))


@router.patch("/{destinationId}", response_model=None)
def update_destination(
    body: UpdateDestinationBody, destination_id: DestinationId, store: Destinations
) -> dict[str, Any]:
    current = require_destination(store, destination_id)
    # Secrets are shown as [redacted], which the store reads as "keep the stored value".
    settings = None if body.settings is None else {**current.shown_settings(), **body.settings}
    destination = store.update(
        current.id,
        name=body.name if body.name is not None else UNSET,
        enabled=body.enabled if body.enabled is not None else UNSET,
        settings=settings if settings is not None else UNSET,
    )
    return data(destination=destination_json(destination))


@router.delete("/{destinationId}", response_model=None)
def delete_destination(destination_id: DestinationId, store: Destinations) -> dict[str, Any]:
    store.delete(require_destination(store, destination_id).id)
    return data(status="SUCCESS")
