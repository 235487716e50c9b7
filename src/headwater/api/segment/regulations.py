"""``/segment/v1/regulations`` and ``/suppressions``: Segment's Deletion and Suppression
operations.

``/api/v1`` already answers them in Segment's shapes (rate-limit headers included), so its
route functions are mounted here as they are; the lists only take Segment's pagination.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from headwater.api import regulations as v1
from headwater.api.segment.envelope import Page, cursor_checked, pagination

router = APIRouter(tags=["segment deletion and suppression"])

Pagination = Annotated[Page, Depends(pagination)]


@router.get("/regulations", response_model=None)
def list_workspace_regulations(
    request: Request, regulations: v1.Store, page: Pagination
) -> dict[str, Any]:
    """The workspace's regulations, newest first; filters ``status`` and ``regulationTypes``."""
    with cursor_checked():
        return v1.list_regulations(request, regulations, (page.cursor, page.count))


@router.get("/regulations/sources/{sourceId}", response_model=None)
def list_regulations_from_source(
    source_id: v1.SourceId, request: Request, regulations: v1.Store, page: Pagination
) -> dict[str, Any]:
    with cursor_checked():
        return v1.list_source_regulations(
            source_id, request, regulations, (page.cursor, page.count)
        )


@router.get("/suppressions", response_model=None)
def list_suppressions(request: Request, regulations: v1.Store, page: Pagination) -> dict[str, Any]:
    """Users suppressed and in effect; ``sourceId`` lists one source's."""
    with cursor_checked():
        return v1.list_suppressions(request, regulations, (page.cursor, page.count))


for _path, _endpoint in (
    ("/regulations", v1.create_workspace_regulation),
    ("/regulations/sources/{sourceId}", v1.create_source_regulation),
    ("/regulations/cloudsources/{sourceId}", v1.create_cloud_source_regulation),
):
    router.add_api_route(_path, _endpoint, methods=["POST"], response_model=None)
router.add_api_route(
    "/regulations/{regulateId}", v1.get_regulation, methods=["GET"], response_model=None
)
