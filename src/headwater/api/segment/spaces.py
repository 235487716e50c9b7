"""``/segment/v1/spaces``: Segment's Spaces operations (read only, as in Segment: a space is
made in the app or ``/api/v1/spaces``), on the same space store."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path

from headwater.api.auth import ReadableSpaces
from headwater.api.segment.envelope import Page, data, paged, pagination
from headwater.api.spaces import Spaces
from headwater.unify.spaces import SpaceInfo

router = APIRouter(prefix="/spaces", tags=["segment spaces"])

SpaceId = Annotated[str, Path(alias="spaceId", description="The space's id or name.")]
Pagination = Annotated[Page, Depends(pagination)]


def space_json(space: SpaceInfo) -> dict[str, Any]:
    """Segment's ``Space``."""
    return {"id": space.id, "slug": space.slug, "name": space.name}


@router.get("", response_model=None)
def list_spaces(page: Pagination, spaces: Spaces, only: ReadableSpaces) -> dict[str, Any]:
    found, out = paged([s for s in spaces.list() if only is None or s.id in only], page)
    return data(spaces=[space_json(s) for s in found], pagination=out)


@router.get("/{spaceId}", response_model=None)
def get_space(space_id: SpaceId, spaces: Spaces) -> dict[str, Any]:
    return data(space=space_json(spaces.require(space_id)))
