"""``/api/v1/regulations`` and ``/api/v1/suppressions``: deletion and suppression, in the shapes
of Segment's Public API (spec/protocols-privacy-api.md §10.5, §15.3).

Creating answers ``{"data": {"regulateId": …}}`` with ``X-RateLimit-Remaining`` (subjects left
in the type's category for the period) and ``X-RateLimit-Reset``; the regulation is carried out
by the worker. Bodies are read raw, so the 4 MB limit holds before anything is parsed, and
every refusal comes back in the Public API's error envelope with its status.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from headwater.api.errors import ApiError, printable
from headwater.api.sources import _pagination, iso, store_of
from headwater.errors import InvalidError, NotFoundError, RegulationRefused
from headwater.privacy.regulations import (
    CLOUD_SOURCE,
    MAX_BODY_BYTES,
    REGULATION_TYPES,
    SOURCE,
    STATUSES,
    WORKSPACE,
    Page,
    Regulation,
    Regulations,
    encode_cursor,
    http_date,
)
from headwater.store.workspace import WorkspaceStore

router = APIRouter(tags=["regulations"])

SourceId = Annotated[str, Path(alias="sourceId", description="The source's id or name.")]
RegulateId = Annotated[str, Path(alias="regulateId", description="The regulation's id.")]
Pagination = Annotated[tuple[str | None, int], Depends(_pagination)]
ALLOWED_FIELDS = {"regulationType", "subjectType", "subjectIds"}


def regulations_of(request: Request) -> Regulations:
    return Regulations(request.app.state.engine, clock=request.app.state.clock)


Store = Annotated[Regulations, Depends(regulations_of)]


def _refused(exc: RegulationRefused) -> JSONResponse:
    types = {400: "validation", 404: "not_found", 409: "conflict", 413: "too_large"}
    error: dict[str, Any] = {
        "type": types.get(exc.status, "rate_limit" if exc.status == 429 else "validation"),
        "message": printable(exc.message),
        "status": exc.status,
    }
    if exc.field:
        error["field"] = exc.field
    return JSONResponse({"errors": [error]}, status_code=exc.status, headers=exc.headers)


def _workspace_id(store: WorkspaceStore) -> str:
    workspace = store.workspace()
    if workspace is None:
        raise NotFoundError("no workspace: run `headwater apply` first")
    return workspace.id


def _source_id(store: WorkspaceStore, id_or_name: str) -> str:
    source = store.get_source(id_or_name)
    if source is None:
        raise NotFoundError(f"no such source: {id_or_name}", "sourceId")
    return source.id


async def _body(request: Request, scope: str) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > MAX_BODY_BYTES:
        raise RegulationRefused(
            f"the body must be at most {MAX_BODY_BYTES // (1024 * 1024)} MB; send the subjects "
            "in batches",
            status=413,
        )
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise RegulationRefused("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RegulationRefused("the body must be a JSON object")
    allowed = ALLOWED_FIELDS | ({"collection"} if scope == CLOUD_SOURCE else set())
    unknown = sorted(str(k) for k in body if k not in allowed)
    if unknown:
        raise RegulationRefused(
            f"{unknown[0]}: unknown field (expected one of: {', '.join(sorted(allowed))})",
            field=unknown[0],
        )
    return body


async def _create(
    request: Request, regulations: Regulations, scope: str, source: str | None
) -> JSONResponse:
    store: WorkspaceStore = store_of(request)
    try:
        body = await _body(request, scope)

        def create() -> tuple[str, int, float]:
            workspace_id = _workspace_id(store)
            source_id = None if source is None else _source_id(store, source)
            created = regulations.create(
                workspace_id,
                scope,
                body.get("regulationType"),
                body.get("subjectType"),
                body.get("subjectIds"),
                source_id=source_id,
                collection=body.get("collection"),
            )
            return created.regulation.id, created.remaining, created.reset_at

        regulation_id, remaining, reset_at = await run_in_threadpool(create)
    except RegulationRefused as exc:
        return _refused(exc)
    return JSONResponse(
        {"data": {"regulateId": regulation_id}},
        headers={
            "X-RateLimit-Remaining": str(max(0, remaining)),
            "X-RateLimit-Reset": http_date(reset_at),
        },
    )


@router.post("/regulations", response_model=None)
async def create_workspace_regulation(request: Request, regulations: Store) -> JSONResponse:
    """Suppress or delete users across every source of the workspace."""
    return await _create(request, regulations, WORKSPACE, None)


@router.post("/regulations/sources/{sourceId}", response_model=None)
async def create_source_regulation(
    source_id: SourceId, request: Request, regulations: Store
) -> JSONResponse:
    """Suppress or delete users of one source (``DELETE_ARCHIVE_ONLY`` takes ANONYMOUS_ID)."""
    return await _create(request, regulations, SOURCE, source_id)


@router.post("/regulations/cloudsources/{sourceId}", response_model=None)
async def create_cloud_source_regulation(
    source_id: SourceId, request: Request, regulations: Store
) -> JSONResponse:
    """Delete a cloud source's objects (``subjectType: OBJECT_ID`` with its ``collection``)."""
    return await _create(request, regulations, CLOUD_SOURCE, source_id)


# --- reading -------------------------------------------------------------------------------------


def _values(request: Request, *names: str) -> list[str]:
    """A list filter however a client spells it: repeated, ``name[]``, or comma-separated."""
    out: list[str] = []
    for name in names:
        for value in request.query_params.getlist(name):
            out.extend(v.strip() for v in value.split(",") if v.strip())
    return out


def _filters(request: Request) -> tuple[list[str], list[str]]:
    statuses = _values(request, "status", "status[]")
    for status in statuses:
        if status not in STATUSES:
            raise InvalidError(f"must be one of {', '.join(STATUSES)}", "status")
    types = _values(request, "regulationTypes", "regulationTypes[]")
    for type_ in types:
        if type_ not in REGULATION_TYPES:
            raise InvalidError(f"must be one of {', '.join(REGULATION_TYPES)}", "regulationTypes")
    return statuses, types


def regulation_item(regulation: Regulation) -> dict[str, Any]:
    """A list entry as Segment's: id, subjectType, subjects, status, createdAt, regulationType,
    finishedAt when done."""
    out: dict[str, Any] = {
        "id": regulation.id,
        "workspaceId": regulation.workspace_id,
        "subjectType": regulation.subject_type,
        "subjects": list(regulation.subjects),
        "status": regulation.status,
        "createdAt": iso(int(regulation.created_at)),
        "regulationType": regulation.regulation_type,
    }
    if regulation.source_id is not None:
        out["sourceId"] = regulation.source_id
    if regulation.collection is not None:
        out["collection"] = regulation.collection
    if regulation.finished_at is not None:
        out["finishedAt"] = iso(int(regulation.finished_at))
    return out


def _pagination_json(page: Page, cursor: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"current": cursor or encode_cursor(0)}
    if page.next_cursor is not None:
        out["next"] = page.next_cursor
    if page.previous_cursor is not None:
        out["previous"] = page.previous_cursor
    out["totalEntries"] = page.total
    return out


def _listing(
    request: Request, regulations: Regulations, page: tuple[str | None, int], source: str | None
) -> dict[str, Any]:
    store: WorkspaceStore = store_of(request)
    statuses, types = _filters(request)
    cursor, count = page
    source_id = None if source is None else _source_id(store, source)
    found = regulations.list(
        _workspace_id(store),
        source_id=source_id,
        statuses=statuses,
        types=types,
        cursor=cursor,
        count=count,
    )
    return {
        "data": {
            "regulations": [regulation_item(r) for r in found.items],
            "pagination": _pagination_json(found, cursor),
        }
    }


@router.get("/regulations", response_model=None)
def list_regulations(request: Request, regulations: Store, page: Pagination) -> dict[str, Any]:
    """The workspace's regulations, newest first; filters ``status`` and ``regulationTypes``."""
    return _listing(request, regulations, page, None)


@router.get("/regulations/sources/{sourceId}", response_model=None)
def list_source_regulations(
    source_id: SourceId, request: Request, regulations: Store, page: Pagination
) -> dict[str, Any]:
    """One source's regulations, newest first."""
    return _listing(request, regulations, page, source_id)


@router.get("/regulations/{regulateId}", response_model=None)
def get_regulation(regulate_id: RegulateId, regulations: Store) -> dict[str, Any]:
    """A regulation's overall status and each store's and destination's (``streamStatus``)."""
    regulation = regulations.get(regulate_id)
    if regulation is None:
        raise ApiError(404, "not_found", f"no such regulation: {regulate_id}", "regulateId")
    destination_status = [
        {
            "name": step.name,
            "id": step.target_id,
            "kind": step.kind,
            "status": step.status,
            "errString": step.detail,
            **({"finishedAt": iso(int(step.finished_at))} if step.finished_at else {}),
        }
        for step in regulations.steps(regulation.id)
    ]
    out: dict[str, Any] = {
        "id": regulation.id,
        "workspaceId": regulation.workspace_id,
        "overallStatus": regulation.status,
        "createdAt": iso(int(regulation.created_at)),
        "regulationType": regulation.regulation_type,
        "subjectType": regulation.subject_type,
        "subjects": list(regulation.subjects),
        "streamStatus": [
            {
                "id": regulation.source_id or regulation.workspace_id,
                "status": regulation.status,
                "destinationStatus": destination_status,
            }
        ],
    }
    if regulation.finished_at is not None:
        out["finishedAt"] = iso(int(regulation.finished_at))
    return {"data": {"regulation": out}}


@router.get("/suppressions", response_model=None)
def list_suppressions(request: Request, regulations: Store, page: Pagination) -> dict[str, Any]:
    """Users suppressed by ``SUPPRESS_ONLY`` and in effect (the Suppressed Users list);
    ``sourceId`` lists one source's instead of the workspace's."""
    store: WorkspaceStore = store_of(request)
    cursor, count = page
    scope = ""
    wanted = request.query_params.get("sourceId")
    if wanted:
        scope = _source_id(store, wanted)
    found = regulations.suppressed(_workspace_id(store), scope=scope, cursor=cursor, count=count)
    return {
        "data": {
            "subjectType": "USER_ID",
            "subjectIds": found.items,
            "pagination": _pagination_json(found, cursor),
        }
    }
