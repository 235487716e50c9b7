"""``/segment/v1/destinations/{destinationId}/subscriptions``: Segment's destination
subscriptions, which are Headwater's Actions mappings (``/api/v1/…/mappings``) in Segment's
``DestinationSubscription`` shape.

An action's ``actionId`` is its key here, as in the catalog's metadata (``catalog.py``), and
``actionSlug`` is the same key. ``settings`` are the mapping's fields: header values come back
as ``[redacted]``, and ``[redacted]`` sent back keeps the stored value. Reverse ETL
subscriptions (``modelId``) are refused: Headwater has no Reverse ETL.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from headwater.api.destinations import destinations_of
from headwater.api.segment.destinations import DestinationId, Pagination, require_destination
from headwater.api.segment.envelope import data, paged
from headwater.destinations.actions import ActionMapping, shown_mapping
from headwater.destinations.presets import import_subscriptions
from headwater.destinations.store import DestinationInfo, DestinationStore
from headwater.errors import InvalidError, NotFoundError

router = APIRouter(prefix="/destinations/{destinationId}/subscriptions", tags=["segment"])

Destinations = Annotated[DestinationStore, Depends(destinations_of)]
SubscriptionId = Annotated[str, Path(alias="id", description="The subscription's id.")]


class CreateBody(BaseModel):
    """Segment's ``CreateDestinationSubscriptionAlphaInput``."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    actionId: StrictStr
    trigger: StrictStr
    enabled: StrictBool
    settings: dict[str, Any] = {}
    modelId: StrictStr | None = None


class Change(BaseModel):
    """Segment's ``DestinationSubscriptionUpdateInput``."""

    model_config = ConfigDict(extra="forbid")

    name: StrictStr | None = None
    trigger: StrictStr | None = None
    enabled: StrictBool | None = None
    settings: dict[str, Any] | None = None
    reverseETLModelId: StrictStr | None = None


class UpdateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Change


def subscription_json(destination: DestinationInfo, mapping: ActionMapping) -> dict[str, Any]:
    """Segment's ``DestinationSubscription``."""
    shown = shown_mapping(destination.definition.actions, mapping)
    return {
        "id": mapping.id,
        "name": mapping.name,
        "actionId": mapping.action,
        "actionSlug": mapping.action,
        "destinationId": destination.id,
        "enabled": mapping.enabled,
        "trigger": mapping.trigger,
        "settings": shown["fields"],
    }


def _one(destination: DestinationInfo, subscription_id: str) -> ActionMapping:
    for found in destination.mappings:
        if found.id == subscription_id:
            return found
    raise NotFoundError(f"destination {destination.id!r} has no subscription {subscription_id!r}")


@router.get("", response_model=None)
def list_subscriptions_from_destination(
    destination_id: DestinationId, page: Pagination, store: Destinations
) -> dict[str, Any]:
    destination = require_destination(store, destination_id)
    found, out = paged(destination.mappings, page)
    return data(subscriptions=[subscription_json(destination, m) for m in found], pagination=out)


@router.post("", response_model=None)
def create_destination_subscription(
    body: CreateBody, destination_id: DestinationId, store: Destinations
) -> dict[str, Any]:
    destination = require_destination(store, destination_id)
    subscription = {
        "name": body.name,
        "actionSlug": body.actionId,
        "trigger": body.trigger,
        "enabled": body.enabled,
        "settings": body.settings,
    }
    if body.modelId is not None:
        subscription["modelId"] = body.modelId
    [mapping] = import_subscriptions(destination.definition, subscription)
    before = {m.id for m in destination.mappings}
    changed = store.edit_mappings(destination.id, lambda mappings: [*mappings, mapping])
    [created] = [m for m in changed.mappings if m.id not in before]
    return data(destinationSubscription=subscription_json(changed, created))


@router.get("/{id}", response_model=None)
def get_subscription_from_destination(
    destination_id: DestinationId, subscription_id: SubscriptionId, store: Destinations
) -> dict[str, Any]:
    destination = require_destination(store, destination_id)
    return data(subscription=subscription_json(destination, _one(destination, subscription_id)))


@router.patch("/{id}", response_model=None)
def update_subscription_for_destination(
    body: UpdateBody,
    destination_id: DestinationId,
    subscription_id: SubscriptionId,
    store: Destinations,
) -> dict[str, Any]:
    destination = require_destination(store, destination_id)
    _one(destination, subscription_id)
    given = body.input.model_dump(exclude_none=True)
    if "reverseETLModelId" in given:
        raise InvalidError("Headwater has no Reverse ETL", "input.reverseETLModelId")
    change = {k: v for k, v in given.items() if k in ("name", "trigger", "enabled")}
    if "settings" in given:
        change["fields"] = given["settings"]
    changed = store.edit_mappings(
        destination.id,
        lambda mappings: [{**m, **change} if m["id"] == subscription_id else m for m in mappings],
    )
    return data(subscription=subscription_json(changed, _one(changed, subscription_id)))


@router.delete("/{id}", response_model=None)
def remove_subscription_from_destination(
    destination_id: DestinationId, subscription_id: SubscriptionId, store: Destinations
) -> dict[str, Any]:
    destination = require_destination(store, destination_id)
    _one(destination, subscription_id)
    store.edit_mappings(
        destination.id, lambda mappings: [m for m in mappings if m["id"] != subscription_id]
    )
    return data(status="SUCCESS")
