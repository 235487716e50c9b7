"""``/segment/v1/tracking-plans``: Segment's Tracking Plans operations.

``/api/v1/tracking-plans`` already speaks Segment's shapes, so its route functions are mounted
here as they are; only what differs is adapted: Segment's pagination errors, a 200 for
``createTrackingPlan``, and a plan's sources as ``SourceV1``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from headwater.api import tracking_plans as v1
from headwater.api.segment.envelope import Page, cursor_checked, data, paged, pagination
from headwater.api.segment.sources import source_json
from headwater.protocols.plans import PLAN_TYPES

router = APIRouter(prefix="/tracking-plans", tags=["segment tracking plans"])

Pagination = Annotated[Page, Depends(pagination)]
PlanId = v1.PlanId
Plans = v1.Plans


def _mount(path: str, endpoint: Callable[..., Any], method: str, status: int = 200) -> None:
    router.add_api_route(path, endpoint, methods=[method], status_code=status, response_model=None)


@router.get("", response_model=None)
def list_tracking_plans(
    page: Pagination,
    plans: Plans,
    type_: Annotated[
        str | None, Query(alias="type", description=f"One of {', '.join(PLAN_TYPES)}.")
    ] = None,
) -> dict[str, Any]:
    with cursor_checked():
        return v1.list_tracking_plans((page.cursor, page.count), plans, type_)


@router.get("/{trackingPlanId}/rules", response_model=None)
def list_rules(plan_id: PlanId, page: Pagination, plans: Plans) -> dict[str, Any]:
    with cursor_checked():
        return v1.list_rules(plan_id, (page.cursor, page.count), plans)


@router.get("/{trackingPlanId}/sources", response_model=None)
def list_sources(plan_id: PlanId, page: Pagination, plans: Plans) -> dict[str, Any]:
    """Segment's ``listSourcesFromTrackingPlan``: the plan's sources as ``SourceV1``."""
    found, out = paged(plans.sources(plan_id), page)
    return data(sources=[source_json(plans.workspace, s) for s in found], pagination=out)


_mount("", v1.create_tracking_plan, "POST")
_mount("/{trackingPlanId}", v1.get_tracking_plan, "GET")
_mount("/{trackingPlanId}", v1.update_tracking_plan, "PATCH")
_mount("/{trackingPlanId}", v1.delete_tracking_plan, "DELETE")
_mount("/{trackingPlanId}/rules", v1.update_rules, "PATCH")
_mount("/{trackingPlanId}/rules", v1.replace_rules, "PUT")
_mount("/{trackingPlanId}/rules", v1.remove_rules, "DELETE")
_mount("/{trackingPlanId}/sources", v1.add_source, "POST")
_mount("/{trackingPlanId}/sources", v1.remove_source, "DELETE")
