"""``/api/v1/spaces/{space}/audiences`` and ``…/computed-traits``: Engage's computations.

The shape follows Segment's Public API for audiences: ``definition`` is ``{"query": <Segment
Query Language>, "type": "USERS" | "ACCOUNTS"}`` (or ``{"builder": {…}}``, the builder's JSON
shape, instead of ``query``), ``options`` holds ``includeAnonymousUsers`` and
``includeHistoricalData``. ``destinations`` connects destination instances on the space's
Engage source; ``…/download`` gives a CSV of the current values (one every 5 minutes). The
rules (keys, cycles, what cannot be edited) live in ``headwater.engage.computations``, shared
with ``headwater apply``; a definition Headwater refuses is a 422 naming the part and its
position.
"""

import itertools
from collections.abc import Callable
from typing import Annotated, Any, Literal

import anyio.from_thread
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from headwater.api.errors import ApiError
from headwater.api.sources import iso, store_of
from headwater.engage.batch_runs import BatchRuns
from headwater.engage.computations import (
    ComputationInfo,
    ComputationStore,
    ExternalAudience,
    Purpose,
    definition_of,
)
from headwater.engage.definition import Kind
from headwater.engage.download import Downloads, csv_rows
from headwater.engage.lists import RETRY_SECONDS, ListAudiences
from headwater.store.workspace import WorkspaceStore

router = APIRouter(prefix="/spaces/{idOrName}", tags=["engage"])

SpaceId = Annotated[str, Path(alias="idOrName", description="The space's id or name.")]


def downloads_of(request: Request) -> Downloads:
    """The application's record of recent downloads (one per computation every 5 minutes)."""
    found = getattr(request.app.state, "engage_downloads", None)
    if found is None:
        workspace: WorkspaceStore = store_of(request)
        found = request.app.state.engage_downloads = Downloads(clock=workspace.now)
    return found


def use_batch_runs(app: FastAPI, runs: BatchRuns) -> None:
    """Give the preview routes the server's batch engine."""
    app.state.engage_batch = runs


def batch_runs_of(request: Request) -> BatchRuns:
    found: BatchRuns | None = getattr(request.app.state, "engage_batch", None)
    if found is None:
        raise ApiError(503, "unavailable", "previews need the server's batch engine", None)
    return found


def computations_of(request: Request) -> ComputationStore:
    workspace: WorkspaceStore = store_of(request)
    return ComputationStore(workspace)


Computations = Annotated[ComputationStore, Depends(computations_of)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class DefinitionBody(_Body):
    query: StrictStr | None = Field(default=None, description="Segment Query Language.")
    builder: dict[str, Any] | None = Field(default=None, description="The builder's shape.")
    type: Literal["USERS", "ACCOUNTS"] = "USERS"


class OptionsBody(_Body):
    includeAnonymousUsers: StrictBool | None = None
    includeHistoricalData: StrictBool | None = None


class DestinationBody(_Body):
    name: StrictStr = Field(description="The destination instance's id or name.")
    sendIdentify: StrictBool | None = None
    sendTrack: StrictBool | None = None
    enteredEvent: StrictStr | None = None
    exitedEvent: StrictStr | None = None
    traitEvent: StrictStr | None = None
    idSync: list[dict[str, Any]] | None = Field(
        default=None, description="[{identifier, field, strategy: last_added|first_added|all}]"
    )
    traitEnrichment: list[dict[str, Any]] | None = Field(
        default=None, description="[{trait, field}]"
    )
    audienceSettings: dict[str, Any] | None = Field(
        default=None, description="A list destination's audience settings (its audienceFields)."
    )


class CreateBody(_Body):
    name: StrictStr
    definition: DefinitionBody
    description: StrictStr = ""
    options: OptionsBody = Field(default_factory=OptionsBody)
    destinations: list[DestinationBody] = Field(default_factory=list)


class PreviewBody(_Body):
    definition: DefinitionBody
    options: OptionsBody = Field(default_factory=OptionsBody)


class UpdateBody(_Body):
    name: StrictStr | None = None
    definition: DefinitionBody | None = None
    description: StrictStr | None = None
    options: OptionsBody | None = None
    destinations: list[DestinationBody] | None = None


_DESTINATION_FIELDS = {
    "sendIdentify": "send_identify",
    "sendTrack": "send_track",
    "enteredEvent": "entered_event",
    "exitedEvent": "exited_event",
    "traitEvent": "trait_event",
    "idSync": "id_sync",
    "traitEnrichment": "trait_enrichment",
    "audienceSettings": "audience_settings",
}


def _destinations(items: list[DestinationBody]) -> list[dict[str, Any]]:
    out = []
    for item in items:
        entry: dict[str, Any] = {"name": item.name}
        for given, stored in _DESTINATION_FIELDS.items():
            value = getattr(item, given)
            if value is not None:
                entry[stored] = value
        out.append(entry)
    return out


def _written(body: DefinitionBody) -> str | dict[str, Any]:
    if (body.query is None) == (body.builder is None):
        raise ApiError(422, "validation", "definition: give either query or builder", "definition")
    return body.query if body.query is not None else dict(body.builder or {})


def _list_audience(audience: ExternalAudience | None) -> dict[str, Any]:
    """A list destination's external audience: created (with its id), pending or failed."""
    if audience is None:
        return {}
    status = "created" if audience.external_id else "failed" if audience.error else "pending"
    return {
        "externalAudienceId": audience.external_id,
        "audienceStatus": status,
        "audienceError": audience.error,
    }


def computation_json(info: ComputationInfo) -> dict[str, Any]:
    lists = {a.destination_id: a for a in info.external_audiences}
    return {
        "id": info.id,
        "spaceId": info.space_id,
        "key": info.key,
        "name": info.name,
        "description": info.description,
        "definition": {"query": info.definition, "type": info.level.upper()},
        "mode": info.mode,
        "status": info.status,
        "statusDetail": info.status_detail,
        "options": {
            "includeAnonymousUsers": info.include_anonymous,
            "includeHistoricalData": info.include_historical,
        },
        "destinations": [
            {
                "id": d.destination_id,
                "name": d.destination,
                "sendIdentify": d.send_identify,
                "sendTrack": d.send_track,
                "enteredEvent": d.entered_event,
                "exitedEvent": d.exited_event,
                "traitEvent": d.trait_event,
                "idSync": list(d.id_sync),
                "traitEnrichment": list(d.trait_enrichment),
                **(
                    {"audienceSettings": dict(d.audience_settings or {})}
                    if d.destination_id in lists
                    else {}
                ),
                **_list_audience(lists.get(d.destination_id)),
            }
            for d in info.destinations
        ],
        "createdAt": iso(info.created_at),
        "updatedAt": iso(info.updated_at),
    }


def _with_lists(
    request: Request, store: ComputationStore, info: ComputationInfo
) -> ComputationInfo:
    """Create the audience at each newly connected list destination now, so a failing hook is
    the answer (a 502 naming the destination and what it said; the connection is kept and the
    worker tries again). Without the server's delivery engine the worker creates them."""
    if info.external_audiences and any(a.external_id is None for a in info.external_audiences):
        delivery = getattr(request.app.state, "delivery", None)
        if delivery is not None:
            lists = ListAudiences(store_of(request))
            failures = anyio.from_thread.run(lists.create, delivery.audience_hook, info.id)
            if failures:
                raise ApiError(
                    502,
                    "destination_error",
                    "; ".join(f.message for f in failures)
                    + f" (the {info.kind} is saved with the connection; Headwater tries again "
                    f"every {RETRY_SECONDS} seconds, and GET shows the connection's audienceError)",
                    "destinations",
                )
            info = store.get(info.space_id, info.id)
    return info


def _routes(path: str, kind: Purpose, one: str, many: str, param: str) -> None:
    """The five routes of one kind of computation (annotations evaluated here, at definition:
    this module does without ``from __future__ import annotations`` for that)."""
    ComputationId = Annotated[str, Path(alias=param, description="Its id or key.")]

    def wrap(info: ComputationInfo) -> dict[str, Any]:
        return {"data": {one: computation_json(info)}}

    def list_(space: SpaceId, store: Computations) -> dict[str, Any]:
        return {"data": {many: [computation_json(c) for c in store.list(space, kind)]}}

    def create(
        request: Request, space: SpaceId, body: CreateBody, store: Computations
    ) -> dict[str, Any]:
        options = body.options
        info = store.create(
            space,
            kind,
            body.name,
            _written(body.definition),
            level="accounts" if body.definition.type == "ACCOUNTS" else "users",
            include_anonymous=bool(options.includeAnonymousUsers),
            include_historical=options.includeHistoricalData is not False,
            description=body.description,
            destinations=_destinations(body.destinations),
        )
        return wrap(_with_lists(request, store, info))

    def get(space: SpaceId, id_: ComputationId, store: Computations) -> dict[str, Any]:
        return wrap(store.get(space, id_, kind))

    def update(
        request: Request, space: SpaceId, id_: ComputationId, body: UpdateBody, store: Computations
    ) -> dict[str, Any]:
        current = store.get(space, id_, kind)
        if body.definition is not None and body.definition.type.lower() != current.level:
            raise ApiError(
                422, "validation", "definition.type: cannot change (create a new one)", "type"
            )
        options = body.options or OptionsBody()
        info = store.update(
            space,
            current.id,
            name=body.name,
            definition=_written(body.definition) if body.definition is not None else None,
            include_anonymous=options.includeAnonymousUsers,
            include_historical=options.includeHistoricalData,
            description=body.description,
            destinations=(
                _destinations(body.destinations) if body.destinations is not None else None
            ),
        )
        return wrap(_with_lists(request, store, info))

    def delete(space: SpaceId, id_: ComputationId, store: Computations) -> dict[str, Any]:
        store.delete(space, store.get(space, id_, kind).id)
        return {"data": {"status": "SUCCESS"}}

    def preview(
        space: SpaceId, body: PreviewBody, runs: Annotated[BatchRuns, Depends(batch_runs_of)]
    ) -> dict[str, Any]:
        level: Kind = "accounts" if body.definition.type == "ACCOUNTS" else "users"
        tree = definition_of(_written(body.definition), kind=level, purpose=kind)
        found = runs.preview(
            space, tree, include_anonymous=bool(body.options.includeAnonymousUsers)
        )
        return {
            "data": {
                "size": found.size,
                "sample": [{"id": i, "value": v} for i, v in found.sample],
                "asOf": iso(found.loaded_at) if found.loaded_at is not None else None,
            }
        }

    def download(
        request: Request,
        space: SpaceId,
        id_: ComputationId,
        store: Computations,
        format: Annotated[str, Query(description="unformatted, indexed, rows, formatted")] = (
            "unformatted"
        ),
        traits: Annotated[str, Query(description="Traits to add, comma-separated.")] = "",
    ) -> StreamingResponse:
        info = store.get(space, id_, kind)
        chosen = [t.strip() for t in traits.split(",") if t.strip()]
        chunks = csv_rows(store_of(request).engine, info, format, chosen)  # checks the format
        first = next(chunks)  # the query runs here: its errors are answers, not broken streams
        downloads_of(request).claim(info.id)
        return StreamingResponse(
            itertools.chain([first], chunks),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{info.key}.csv"'},
        )

    handlers: list[tuple[str, str, Callable[..., dict[str, Any]], int]] = [
        ("GET", path, list_, 200),
        ("POST", path, create, 201),
        ("POST", f"{path}/preview", preview, 200),
        ("GET", f"{path}/{{{param}}}", get, 200),
        ("PATCH", f"{path}/{{{param}}}", update, 200),
        ("DELETE", f"{path}/{{{param}}}", delete, 200),
    ]
    router.add_api_route(
        f"{path}/{{{param}}}/download",
        download,
        methods=["GET"],
        response_class=StreamingResponse,
        name=f"download_{many}",
    )
    for method, route, handler, status in handlers:
        router.add_api_route(
            route,
            handler,
            methods=[method],
            status_code=status,
            response_model=None,
            name=f"{method.lower()}_{many}{'_one' if param in route else ''}",
        )


_routes("/audiences", "audience", "audience", "audiences", "audienceId")
_routes("/computed-traits", "trait", "computedTrait", "computedTraits", "computedTraitId")
