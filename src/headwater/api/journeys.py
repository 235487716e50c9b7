"""``/api/v1/spaces/{idOrName}/journeys``: a space's journeys, their versions, lifecycle and
analytics.

A journey is addressed by its id (``jou_…``) or key. ``definition`` is the journey's shape as
``headwater.yaml`` writes it (``type``, ``entry``, ``exit``, ``reentry``, ``steps``; see
``headwater.engage.journeys.model``); a definition Headwater refuses is a 422 naming the part
(``definition.steps[0].hold_until.timeout.minutes``). ``PATCH`` changes the name and
description in place and the steps in the draft (or a new draft version); ``POST …/publish``
publishes the draft, ``…/pause``, ``…/resume`` and ``…/archive`` change the live version, and
``GET …/analytics`` counts entries and steps over a period of at most 180 days.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from headwater.api.errors import ApiError
from headwater.api.sources import iso, store_of
from headwater.engage.journeys.analytics import Analytics
from headwater.engage.journeys.store import JourneyInfo, JourneyStore
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import parse_timestamp

router = APIRouter(prefix="/spaces/{idOrName}/journeys", tags=["engage"])

SpaceId = Annotated[str, Path(alias="idOrName", description="The space's id or name.")]
JourneyId = Annotated[str, Path(alias="journeyId", description="Its id or key.")]
WEEK = 7 * 86_400


def journeys_of(request: Request) -> JourneyStore:
    workspace: WorkspaceStore = store_of(request)
    return JourneyStore(workspace)


Journeys = Annotated[JourneyStore, Depends(journeys_of)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CreateBody(_Body):
    name: StrictStr
    description: StrictStr = ""
    definition: dict[str, Any]
    publish: StrictBool = Field(default=False, description="Publish version 1 at once.")


class UpdateBody(_Body):
    name: StrictStr | None = None
    description: StrictStr | None = None
    definition: dict[str, Any] | None = None


class PublishBody(_Body):
    version: StrictInt | None = Field(default=None, description="Default: the latest draft.")
    previous: Literal["archive", "pause"] = "archive"


def journey_json(info: JourneyInfo) -> dict[str, Any]:
    shown = info.live or info.latest
    return {
        "id": info.id,
        "spaceId": info.space_id,
        "key": info.key,
        "name": info.name,
        "description": info.description,
        "status": info.status,
        "version": shown.version,
        "definition": info.latest.definition,
        "versions": [
            {
                "version": v.version,
                "status": v.status,
                "createdAt": iso(v.created_at),
                "publishedAt": iso(v.published_at) if v.published_at is not None else None,
            }
            for v in info.versions
        ],
        "createdAt": iso(info.created_at),
        "updatedAt": iso(info.updated_at),
    }


def analytics_json(found: Analytics) -> dict[str, Any]:
    return {
        "entered": found.entered,
        "inProgress": found.in_progress,
        "completed": found.completed,
        "exits": found.exits,
        "steps": [
            {
                "id": s.step,
                "name": s.name,
                "parent": s.parent,
                "users": s.users,
                "percent": s.percent,
            }
            for s in found.steps
        ],
    }


def _wrap(info: JourneyInfo) -> dict[str, Any]:
    return {"data": {"journey": journey_json(info)}}


@router.get("")
def list_journeys(space: SpaceId, store: Journeys) -> dict[str, Any]:
    return {"data": {"journeys": [journey_json(j) for j in store.list(space)]}}


@router.post("", status_code=201)
def create_journey(space: SpaceId, body: CreateBody, store: Journeys) -> dict[str, Any]:
    return _wrap(
        store.create(
            space,
            body.name,
            body.definition,
            description=body.description,
            publish=body.publish,
        )
    )


@router.get("/{journeyId}")
def get_journey(space: SpaceId, journey: JourneyId, store: Journeys) -> dict[str, Any]:
    return _wrap(store.get(space, journey))


@router.patch("/{journeyId}")
def update_journey(
    space: SpaceId, journey: JourneyId, body: UpdateBody, store: Journeys
) -> dict[str, Any]:
    return _wrap(
        store.update(
            space,
            journey,
            name=body.name,
            description=body.description,
            definition=body.definition,
        )
    )


@router.delete("/{journeyId}")
def delete_journey(space: SpaceId, journey: JourneyId, store: Journeys) -> dict[str, Any]:
    store.delete(space, journey)
    return {"data": {"status": "SUCCESS"}}


@router.post("/{journeyId}/publish")
def publish_journey(
    space: SpaceId, journey: JourneyId, store: Journeys, body: PublishBody | None = None
) -> dict[str, Any]:
    body = body or PublishBody()
    return _wrap(store.publish(space, journey, version=body.version, previous=body.previous))


@router.post("/{journeyId}/pause")
def pause_journey(space: SpaceId, journey: JourneyId, store: Journeys) -> dict[str, Any]:
    return _wrap(store.set_status(space, journey, "paused"))


@router.post("/{journeyId}/resume")
def resume_journey(space: SpaceId, journey: JourneyId, store: Journeys) -> dict[str, Any]:
    return _wrap(store.set_status(space, journey, "published"))


@router.post("/{journeyId}/archive")
def archive_journey(space: SpaceId, journey: JourneyId, store: Journeys) -> dict[str, Any]:
    return _wrap(store.set_status(space, journey, "archived"))


@router.get("/{journeyId}/analytics")
def journey_analytics(
    request: Request,
    space: SpaceId,
    journey: JourneyId,
    store: Journeys,
    since: Annotated[str | None, Query(description="ISO-8601; default: 7 days ago")] = None,
    until: Annotated[str | None, Query(description="ISO-8601; default: now")] = None,
    mode: Annotated[Literal["previous", "entry"], Query()] = "previous",
    count: Annotated[Literal["unique", "total"], Query()] = "unique",
    version: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    workspace: WorkspaceStore = store_of(request)
    now = workspace.now()
    end = _instant(until, "until") if until is not None else now + 1
    start = _instant(since, "since") if since is not None else end - WEEK
    found = store.analytics(
        space, journey, since=start, until=end, version=version, mode=mode, count=count
    )
    return {"data": {"analytics": analytics_json(found)}}


def _instant(value: str, field: str) -> int:
    found: datetime | None = parse_timestamp(value)
    if found is None:
        raise ApiError(422, "validation", f"{field}: must be an ISO-8601 time", field)
    return int(found.timestamp())
