"""``/api/v1/destinations``: destination instances, Event Delivery and Replay; the catalog.

Same conventions as the sources API: camelCase bodies, ``{"data": …}``, instances addressed by
id or name. Settings come back with every secret replaced by ``[redacted]``; sending
``[redacted]`` (or leaving a secret out) in an update keeps the stored secret.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr
from pydantic.alias_generators import to_camel

from headwater.api.auth import ReadableSources
from headwater.api.changes import NoNulls
from headwater.api.data_retention import retention_of
from headwater.api.errors import ApiError
from headwater.api.privacy import masked_delivery, masker_for
from headwater.api.sources import iso as _iso
from headwater.delivery.queue import DeliveryQueue
from headwater.delivery.replay import ReplayResult, replay
from headwater.delivery.report import event_delivery
from headwater.destinations import listing
from headwater.destinations.registry import definitions, function_definitions
from headwater.destinations.routing import schema_integration_filter
from headwater.destinations.store import DestinationInfo, DestinationStore
from headwater.errors import RegulationRefused
from headwater.privacy.consent import ConsentCategories, compile_map
from headwater.privacy.encryption import load_active
from headwater.privacy.regulations import Regulations
from headwater.protocols.schema_controls import IntegrationFilterCache
from headwater.protocols.transformations import Transformations
from headwater.protocols.transformations.store import TransformationStore
from headwater.store.archive import Archive
from headwater.store.workspace import UNSET, WorkspaceStore

router = APIRouter(tags=["destinations"])


def destinations_of(request: Request) -> DestinationStore:
    store: WorkspaceStore = request.app.state.workspace_store
    return DestinationStore(store)


Store = Annotated[DestinationStore, Depends(destinations_of)]
IdOrName = Annotated[str, Path(alias="idOrName", description="The destination's id or name.")]


def destination_json(destination: DestinationInfo) -> dict[str, Any]:
    return {
        "id": destination.id,
        "name": destination.name,
        "type": destination.type,
        "catalogName": destination.definition.name,
        "sourceId": destination.source_id,
        "enabled": destination.enabled,
        "settings": destination.shown_settings(),
        "delivery": destination.delivery.model_dump(exclude_defaults=True),
        "createdAt": _iso(destination.created_at),
        "updatedAt": _iso(destination.updated_at),
    }


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=False)


class CreateDestinationBody(_Body):
    name: StrictStr
    type: StrictStr
    source: StrictStr  # the source's id or name
    enabled: StrictBool = True
    settings: dict[str, Any] | None = None
    delivery: dict[str, Any] | None = None
    filters: list[dict[str, Any]] = []
    mappings: list[dict[str, Any]] = []
    # The definition's automatic presets as enabled mappings (Segment's default subscriptions).
    presets: StrictBool = False


class UpdateDestinationBody(_Body, NoNulls):
    name: StrictStr | None = None
    source: StrictStr | None = None
    enabled: StrictBool | None = None
    settings: dict[str, Any] | None = None
    delivery: dict[str, Any] | None = None
    # true: the mappings become the definition's automatic presets (the list is replaced).
    presets: StrictBool | None = None


class ReplayBody(_Body):
    start: datetime
    end: datetime
    types: list[StrictStr] = []
    events: list[StrictStr] = []


@router.get("/destinations", response_model=None)
def list_destinations(
    store: Store,
    only: ReadableSources,
    source: Annotated[str | None, Query(description="Only this source's (id or name).")] = None,
) -> dict[str, Any]:
    found = [d for d in store.list(source) if only is None or d.source_id in only]
    return {
        "data": {
            "destinations": [destination_json(d) for d in found],
            "pagination": {"current": "", "totalEntries": len(found)},
        }
    }


@router.post("/destinations", status_code=201, response_model=None)
def create_destination(body: CreateDestinationBody, store: Store) -> dict[str, Any]:
    destination = store.create(
        body.name,
        body.type,
        body.source,
        enabled=body.enabled,
        settings=body.settings,
        delivery=body.delivery,
        filters=body.filters,
        mappings=body.mappings,
        presets=body.presets,
    )
    return {"data": {"destination": destination_json(destination)}}


@router.get("/destinations/{idOrName}", response_model=None)
def get_destination(id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    return {"data": {"destination": destination_json(store.require(id_or_name))}}


@router.patch("/destinations/{idOrName}", response_model=None)
def update_destination(
    body: UpdateDestinationBody, id_or_name: IdOrName, store: Store
) -> dict[str, Any]:
    given = body.model_dump(exclude_unset=True)
    destination = store.update(
        id_or_name,
        name=given.get("name", UNSET),
        source=given.get("source", UNSET),
        enabled=given.get("enabled", UNSET),
        settings=given.get("settings", UNSET),
        delivery=given.get("delivery", UNSET),
        presets=given.get("presets", False),
    )
    return {"data": {"destination": destination_json(destination)}}


@router.delete("/destinations/{idOrName}", response_model=None)
def delete_destination(id_or_name: IdOrName, store: Store) -> dict[str, Any]:
    store.delete(id_or_name)
    return {"data": {"status": "SUCCESS"}}


@router.get("/destinations/{idOrName}/delivery", response_model=None)
def get_event_delivery(
    id_or_name: IdOrName,
    store: Store,
    request: Request,
    minutes: Annotated[int, Query(ge=1, le=14 * 24 * 60, description="Time range.")] = 60,
) -> dict[str, Any]:
    """Event Delivery: delivered, not delivered, retrying, P95 latency, errors with samples."""
    destination = store.require(id_or_name)
    found = event_delivery(
        request.app.state.engine, destination, minutes=minutes, now=request.app.state.clock()
    )
    masker = masker_for(request)
    return {"data": masked_delivery(found, masker) if masker is not None else found}


@router.post("/destinations/{idOrName}/replay", response_model=None)
def replay_destination(
    body: ReplayBody, id_or_name: IdOrName, store: Store, request: Request
) -> dict[str, Any]:
    """Queue the archived events of [start, end) for this destination, enabled or not."""
    destination = store.require(id_or_name)
    archive = Archive(request.app.state.archive_dir)
    # No replay while a deletion waits or runs, nor a deletion while a replay runs (§10.3).
    regulations = Regulations(request.app.state.engine, clock=request.app.state.clock)
    try:
        running = regulations.begin_replay(destination.id)
    except RegulationRefused as exc:
        raise ApiError(409, "conflict", exc.message) from None
    try:
        result = _replay(
            destination, body, archive, request, lambda _: regulations.beat_replay(running)
        )
    finally:
        regulations.end_replay(running)
    return {"data": {"read": result.read, "queued": result.queued, "filtered": result.filtered}}


def _replay(
    destination: DestinationInfo,
    body: ReplayBody,
    archive: Archive,
    request: Request,
    progress: Callable[[ReplayResult], None],
) -> ReplayResult:
    return replay(
        archive,
        DeliveryQueue(request.app.state.engine),
        destination,
        body.start,
        body.end,
        types=body.types,
        events=body.events,
        transformations=Transformations(
            TransformationStore(request.app.state.workspace_store).list()
        ),
        schema_filter=schema_integration_filter(
            IntegrationFilterCache(request.app.state.engine).turned_off
        ),
        oldest=retention_of(request).oldest(request.app.state.clock()),
        consent=compile_map(ConsentCategories(request.app.state.workspace_store).list()),
        encryption=load_active(request.app.state.engine),
        progress=progress,
    )


@router.get("/catalog/destinations", response_model=None)
def destination_catalog(
    search: Annotated[
        str | None, Query(description="Only those whose type, name or description has every word.")
    ] = None,
    brief: Annotated[
        bool,
        Query(description="Only each type, name, kind and description (no settings, actions)."),
    ] = False,
) -> dict[str, Any]:
    """Every destination type this server can deliver to, with its settings schema: Headwater's
    own and, when the Actions package is installed, Segment's (``actions:<directory>``), and
    the workspace's destination functions (``function:<name>``). ``brief``: a list to browse,
    a hundredth of the size."""
    found = [*definitions().values(), *function_definitions()]
    chosen = listing.search(found, search) if search else list(found)
    shown = listing.brief_json if brief else listing.definition_json
    return {"data": {"destinations": [shown(d) for d in chosen]}}
