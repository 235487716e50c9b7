"""``/segment/v1/transformations``: Segment's Transformations operations.

``/api/v1/transformations`` already takes and answers Segment's ``TransformationV1``, so its
route functions are mounted here as they are; ``createTransformation`` answers 200 as
Segment's does, and the list takes Segment's pagination.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from headwater.api import transformations as v1
from headwater.api.segment.envelope import Page, data, paged, pagination

router = APIRouter(prefix="/transformations", tags=["segment transformations"])

Pagination = Annotated[Page, Depends(pagination)]


@router.get("", response_model=None)
def list_transformations(store: v1.Store, page: Pagination) -> dict[str, Any]:
    found, out = paged(store.list(), page)
    return data(transformations=[t.to_api() for t in found], pagination=out)


router.add_api_route("", v1.create_transformation, methods=["POST"], response_model=None)
for _method, _endpoint in (
    ("GET", v1.get_transformation),
    ("PATCH", v1.update_transformation),
    ("DELETE", v1.delete_transformation),
):
    router.add_api_route("/{transformationId}", _endpoint, methods=[_method], response_model=None)
