"""Destination filters in the REST API, shaped like Segment's Public API filter object.

``/api/v1/destinations/{idOrName}/filters`` lists, creates, reads, changes and deletes one
instance's filters; ``/api/v1/filters/preview`` shows what a filter does to a sample event
without saving anything.
"""

from __future__ import annotations

import random
from typing import Annotated, Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr, field_validator

from headwater.api.changes import NoNulls
from headwater.api.destinations import IdOrName, Store
from headwater.destinations.filters import check_filters, compile_filters
from headwater.destinations.store import DestinationInfo
from headwater.errors import InvalidError, ListError, NotFoundError
from headwater.store.workspace import non_unicode_path

router = APIRouter(tags=["destination filters"])
FilterId = Annotated[str, Path(alias="filterId", description="The filter's id.")]


class FilterBody(BaseModel):
    """A filter as the Public API takes it (``if`` is a Python keyword, hence ``if_``)."""

    model_config = ConfigDict(extra="forbid", alias_generator=lambda n: n.rstrip("_"))

    title: StrictStr = ""
    description: StrictStr = ""
    if_: StrictStr
    actions: list[dict[str, Any]]
    enabled: StrictBool = True


class FilterChange(NoNulls):
    model_config = ConfigDict(extra="forbid", alias_generator=lambda n: n.rstrip("_"))

    title: StrictStr | None = None
    description: StrictStr | None = None
    if_: StrictStr | None = None
    actions: list[dict[str, Any]] | None = None
    enabled: StrictBool | None = None


class PreviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filter: dict[str, Any]
    payload: dict[str, Any]

    @field_validator("payload")
    @classmethod
    def _unicode(cls, payload: dict[str, Any]) -> dict[str, Any]:
        # The payload is echoed back, and a lone surrogate cannot be written as UTF-8.
        where = non_unicode_path(payload)
        if where is not None:
            raise ValueError(f"must be valid Unicode text (a lone UTF-16 surrogate is at {where})")
        return payload


def filter_json(destination: DestinationInfo, shown: dict[str, Any]) -> dict[str, Any]:
    return {**shown, "sourceId": destination.source_id, "destinationId": destination.id}


def _one(destination: DestinationInfo, filter_id: str) -> dict[str, Any]:
    for found in destination.filters:
        if found.id == filter_id:
            return filter_json(destination, found.shown())
    raise NotFoundError(f"destination {destination.name!r} has no filter {filter_id!r}")


@router.get("/destinations/{idOrName}/filters", response_model=None)
def list_filters(id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    destination = store.require(id_or_name)
    return {"data": {"filters": [filter_json(destination, f.shown()) for f in destination.filters]}}


@router.post("/destinations/{idOrName}/filters", status_code=201, response_model=None)
def create_filter(body: FilterBody, id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    before = {f.id for f in store.require(id_or_name).filters}
    destination = store.edit_filters(
        id_or_name, lambda filters: [*filters, body.model_dump(by_alias=True)]
    )
    [created] = [f for f in destination.filters if f.id not in before]
    return {"data": {"filter": filter_json(destination, created.shown())}}


@router.get("/destinations/{idOrName}/filters/{filterId}", response_model=None)
def get_filter(id_or_name: IdOrName, filter_id: FilterId, store: Store) -> dict[str, Any]:
    return {"data": {"filter": _one(store.require(id_or_name), filter_id)}}


@router.patch("/destinations/{idOrName}/filters/{filterId}", response_model=None)
def update_filter(
    body: FilterChange, id_or_name: IdOrName, filter_id: FilterId, store: Store
) -> dict[str, Any]:
    _one(store.require(id_or_name), filter_id)
    change = body.model_dump(by_alias=True, exclude_unset=True)
    destination = store.edit_filters(
        id_or_name,
        lambda filters: [{**f, **change} if f["id"] == filter_id else f for f in filters],
    )
    return {"data": {"filter": _one(destination, filter_id)}}


@router.delete("/destinations/{idOrName}/filters/{filterId}", response_model=None)
def delete_filter(id_or_name: IdOrName, filter_id: FilterId, store: Store) -> dict[str, Any]:
    _one(store.require(id_or_name), filter_id)
    store.edit_filters(id_or_name, lambda filters: [f for f in filters if f["id"] != filter_id])
    return {"data": {"status": "SUCCESS"}}


@router.post("/filters/preview", response_model=None)
def preview_filter(body: PreviewBody) -> dict[str, Any]:
    """What the filter does to the payload: the payload as it would be sent, or null."""
    try:
        [checked] = check_filters([{**body.filter, "enabled": True}])
    except ListError as exc:
        raise InvalidError(str(exc), exc.field.replace("filters.0", "filter", 1)) from None
    apply = compile_filters([checked], rng=random.Random())
    assert apply is not None
    result = apply(body.payload)
    dropped = isinstance(result, str)
    return {
        "data": {
            "inputPayload": body.payload,
            "result": None if dropped else result,
            "dropped": dropped,
            "reason": result.split(":", 1)[0] if isinstance(result, str) else None,
        }
    }
