"""``/segment/v1/spaces/{spaceId}/audiences``: Segment's Audiences operations on the
computation store ``/api/v1/spaces/{space}/audiences`` uses.

Segment's ``AudienceSummary``: ``definition.query`` is Segment Query Language, ``audienceType``
``USERS`` or ``ACCOUNTS`` (also read from ``definition.type``, the older spelling). Headwater's
audiences are always computing, so ``enabled`` is true and ``false`` is refused; ``createdBy``
and ``updatedBy`` are the API (Headwater keeps no author); ``targetEntity`` and the options
Headwater lacks (``filterByExternalIds``, ``backfillEventDataDays``) are refused rather than
dropped.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from headwater.api.engage import Computations
from headwater.api.errors import ApiError
from headwater.api.segment.envelope import Page, data, paged, pagination
from headwater.api.segment.spaces import SpaceId
from headwater.api.sources import iso
from headwater.engage.computations import ComputationInfo

router = APIRouter(prefix="/spaces/{spaceId}/audiences", tags=["segment audiences"])

AudienceId = Annotated[str, Path(alias="id", description="The audience's id or key.")]
Pagination = Annotated[Page, Depends(pagination)]
AudienceType = Literal["USERS", "ACCOUNTS"]
AUTHOR = "api"


def audience_json(info: ComputationInfo) -> dict[str, Any]:
    """Segment's ``AudienceSummary``."""
    audience_type = info.level.upper()
    return {
        "id": info.id,
        "spaceId": info.space_id,
        "name": info.name,
        "description": info.description,
        "key": info.key,
        "enabled": True,
        "definition": {"query": info.definition, "type": audience_type},
        "status": info.status,
        "createdBy": AUTHOR,
        "updatedBy": AUTHOR,
        "createdAt": iso(info.created_at),
        "updatedAt": iso(info.updated_at),
        "audienceType": audience_type,
        "options": {"includeHistoricalData": info.include_historical},
    }


# --- bodies ----------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DefinitionBody(_Body):
    """Segment's ``AudienceDefinition``."""

    query: StrictStr
    type: AudienceType | None = None


class OptionsBody(_Body):
    includeHistoricalData: StrictBool | None = None


class CreateAudienceBody(_Body):
    """Segment's ``CreateAudienceAlphaInput``."""

    name: StrictStr
    enabled: StrictBool = True
    description: StrictStr = ""
    definition: DefinitionBody
    audienceType: AudienceType | None = None
    options: OptionsBody | None = None


class UpdateAudienceBody(_Body):
    """Segment's ``UpdateAudienceForSpaceAlphaInput``: what is left out is kept."""

    enabled: StrictBool | None = None
    name: StrictStr | None = None
    description: StrictStr | None = None
    definition: DefinitionBody | None = None


def _always_enabled(enabled: bool | None) -> None:
    if enabled is False:
        raise ApiError(
            422,
            "validation",
            "enabled: Headwater's audiences always compute; delete the audience to stop it",
            "enabled",
        )


def _level(body: CreateAudienceBody) -> AudienceType:
    given = {t for t in (body.audienceType, body.definition.type) if t is not None}
    if len(given) > 1:
        raise ApiError(
            422, "validation", "audienceType: differs from definition.type", "audienceType"
        )
    return given.pop() if given else "USERS"


# --- routes ----------------------------------------------------------------------------------


@router.get("", response_model=None)
def list_audiences(space_id: SpaceId, page: Pagination, store: Computations) -> dict[str, Any]:
    found, out = paged(store.list(space_id, "audience"), page)
    return data(audiences=[audience_json(a) for a in found], pagination=out)


@router.post("", response_model=None)
def create_audience(
    space_id: SpaceId, body: CreateAudienceBody, store: Computations
) -> dict[str, Any]:
    _always_enabled(body.enabled)
    historical = body.options.includeHistoricalData if body.options else None
    info = store.create(
        space_id,
        "audience",
        body.name,
        body.definition.query,
        level="accounts" if _level(body) == "ACCOUNTS" else "users",
        include_historical=historical is not False,
        description=body.description,
    )
    return data(audience=audience_json(info))


@router.get("/{id}", response_model=None)
def get_audience(space_id: SpaceId, audience_id: AudienceId, store: Computations) -> dict[str, Any]:
    return data(audience=audience_json(store.get(space_id, audience_id, "audience")))


@router.patch("/{id}", response_model=None)
def update_audience(
    space_id: SpaceId, audience_id: AudienceId, body: UpdateAudienceBody, store: Computations
) -> dict[str, Any]:
    _always_enabled(body.enabled)
    current = store.get(space_id, audience_id, "audience")
    wanted = body.definition.type if body.definition else None
    if wanted is not None and wanted.lower() != current.level:
        raise ApiError(
            422, "validation", "definition.type: cannot change (create a new audience)", "type"
        )
    info = store.update(
        space_id,
        current.id,
        name=body.name,
        definition=body.definition.query if body.definition else None,
        description=body.description,
    )
    return data(audience=audience_json(info))


@router.delete("/{id}", response_model=None)
def remove_audience(
    space_id: SpaceId, audience_id: AudienceId, store: Computations
) -> dict[str, Any]:
    store.delete(space_id, store.get(space_id, audience_id, "audience").id)
    return data(status="SUCCESS")
