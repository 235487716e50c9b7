"""``/segment/v1/destination/{destinationId}/filters``: Segment's Destination Filters operations.

The same filters as ``/api/v1/destinations/{idOrName}/filters`` (same store, same checks of
FQL and actions), in Segment's shapes: ``DestinationFilterV1``, created with the ``sourceId``
Segment requires (it must be the destination's source), listed with ``pagination``. The
preview is ``/api/v1/filters/preview`` itself.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from headwater.api import filters
from headwater.api.errors import ApiError
from headwater.api.segment.destinations import DestinationId, Destinations, require_destination
from headwater.api.segment.envelope import Page, data, paged, pagination
from headwater.api.segment.workspace import Store
from headwater.store.workspace import is_unicode

router = APIRouter(tags=["segment destination filters"])

Pagination = Annotated[Page, Depends(pagination)]
FilterId = filters.FilterId


def _alias(name: str) -> str:
    return "sourceId" if name == "source_id" else name.rstrip("_")  # ``if`` is a keyword


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=_alias)


class CreateFilterBody(_Body):
    """Segment's ``CreateFilterForDestinationV1Input``."""

    source_id: StrictStr
    if_: StrictStr
    actions: list[dict[str, Any]]
    title: StrictStr
    description: StrictStr = ""
    enabled: StrictBool


class UpdateFilterBody(_Body):
    """Segment's ``UpdateFilterForDestinationV1Input``: what is left out is kept; a null
    ``description`` clears it."""

    if_: StrictStr | None = None
    actions: list[dict[str, Any]] | None = None
    title: StrictStr | None = None
    description: StrictStr | None = None
    enabled: StrictBool | None = None


def _check_source(workspace: Store, source_id: str, destination_source: str) -> None:
    usable = "\x00" not in source_id and is_unicode(source_id)
    source = workspace.get_source(source_id) if usable else None
    if source is None or source.id != destination_source:
        raise ApiError(
            422,
            "validation",
            f"sourceId: the destination's source is {destination_source!r}",
            "sourceId",
        )


@router.get("/destination/{destinationId}/filters", response_model=None)
def list_filters(
    destination_id: DestinationId, page: Pagination, store: Destinations
) -> dict[str, Any]:
    destination = require_destination(store, destination_id)
    found, out = paged(destination.filters, page)
    shown = [filters.filter_json(destination, f.shown()) for f in found]
    return data(filters=shown, pagination=out)


@router.post("/destination/{destinationId}/filters", response_model=None)
def create_filter(
    body: CreateFilterBody, destination_id: DestinationId, store: Destinations, workspace: Store
) -> dict[str, Any]:
    destination = require_destination(store, destination_id)
    _check_source(workspace, body.source_id, destination.source_id)
    made = filters.FilterBody.model_validate(body.model_dump(by_alias=True, exclude={"source_id"}))
    return filters.create_filter(made, destination.id, store)


@router.get("/destination/{destinationId}/filters/{filterId}", response_model=None)
def get_filter(
    destination_id: DestinationId, filter_id: FilterId, store: Destinations
) -> dict[str, Any]:
    return filters.get_filter(require_destination(store, destination_id).id, filter_id, store)


@router.patch("/destination/{destinationId}/filters/{filterId}", response_model=None)
def update_filter(
    body: UpdateFilterBody, destination_id: DestinationId, filter_id: FilterId, store: Destinations
) -> dict[str, Any]:
    change = body.model_dump(by_alias=True, exclude_unset=True)
    if change.get("description", "") is None:
        change["description"] = ""
    for name, value in change.items():
        if value is None:
            raise ApiError(
                422, "validation", f"{name}: must not be null (leave it out to keep it)", name
            )
    made = filters.FilterChange.model_validate(change)
    return filters.update_filter(
        made, require_destination(store, destination_id).id, filter_id, store
    )


@router.delete("/destination/{destinationId}/filters/{filterId}", response_model=None)
def delete_filter(
    destination_id: DestinationId, filter_id: FilterId, store: Destinations
) -> dict[str, Any]:
    return filters.delete_filter(require_destination(store, destination_id).id, filter_id, store)


router.add_api_route(
    "/destination/filters/preview",
    filters.preview_filter,
    methods=["POST"],
    response_model=None,
    summary="Preview Destination Filter",
)
