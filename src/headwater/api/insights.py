"""``GET /api/v1/spaces/{idOrName}/insights``: a space's Profiles Insights (§2.7).

Segment's filters as query parameters: ``kind`` (``errors``, ``violations``, ``merges``,
``mappings``; every kind when left out), ``idType``, ``violation`` (Segment's name),
``externalId`` (``type:value``), ``start`` and ``end`` (ISO 8601; the last 30 days at most).
Newest first, with the Public API's pagination; each record carries the event's payload.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from headwater.api.errors import ApiError
from headwater.api.spaces import Pagination, SpaceId, Spaces
from headwater.api.tracking_plans import _page_body
from headwater.protocols.plans import page_of
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import parse_timestamp
from headwater.unify import insights
from headwater.unify.insights import Insights, parse_external_id, record_json

router = APIRouter(prefix="/spaces", tags=["spaces"])

TABS = {"errors": "error", "violations": "violation", "merges": "merge", "mappings": "mapping"}


def insights_of(request: Request) -> Insights:
    """FastAPI dependency: Insights read on the application's clock."""
    store: WorkspaceStore = request.app.state.workspace_store
    return Insights(clock=store.now)


def _time(name: str, value: str | None) -> int | None:
    if value is None or value == "":
        return None
    parsed = parse_timestamp(value)
    if parsed is None:
        raise ApiError(
            422, "validation", f"{name}: an ISO 8601 time, such as 2025-01-31T12:00:00Z", name
        )
    return int(parsed.timestamp() * 1000)


@router.get("/{idOrName}/insights", response_model=None)
def list_insights(
    request: Request,
    space_id: SpaceId,
    page: Pagination,
    spaces: Spaces,
    found: Annotated[Insights, Depends(insights_of)],
    kind: Annotated[
        str | None, Query(description="errors, violations, merges or mappings (default: all)")
    ] = None,
    id_type: Annotated[str | None, Query(alias="idType", description="An ID type.")] = None,
    violation: Annotated[str | None, Query(description="A violation's name.")] = None,
    external_id: Annotated[
        str | None, Query(alias="externalId", description="type:value, e.g. email:a@b.com")
    ] = None,
    start: Annotated[str | None, Query(description="ISO 8601, inclusive.")] = None,
    end: Annotated[str | None, Query(description="ISO 8601, exclusive.")] = None,
) -> dict[str, Any]:
    """The space's errors, violations, merges and mappings, newest first (up to 500 records,
    the last 30 days)."""
    space = spaces.require(space_id)
    if kind is not None and kind not in TABS:
        raise ApiError(422, "validation", f"kind: one of {', '.join(TABS)}", "kind")
    if violation is not None and violation not in insights.VIOLATIONS:
        names = ", ".join(sorted(insights.VIOLATIONS))
        raise ApiError(422, "validation", f"violation: one of {names}", "violation")
    pair = None
    if external_id is not None:
        try:
            pair = parse_external_id(external_id)
        except ValueError as exc:
            raise ApiError(422, "validation", f"externalId: {exc}", "externalId") from None
    kinds: tuple[str, ...] = (TABS[kind],) if kind is not None else insights.KINDS
    if violation is not None:
        kinds = tuple(k for k in kinds if k == "violation")
    query = insights.Query(
        kinds=kinds,
        id_type=id_type or None,
        violation=violation,
        external_id=pair,
        start=_time("start", start),
        end=_time("end", end),
    )
    cursor, count = page
    engine = request.app.state.engine
    with engine.connect() as conn:
        records = found.search(conn, space.id, query)
        chunk = page_of(records, cursor, count)
        payloads = found.payloads(conn, [r.id for r in chunk.items])
    body = _page_body("insights", chunk, cursor, lambda r: record_json(r, payloads.get(r.id)))
    body["data"] = {"spaceId": space.id, **body["data"]}
    return body
