"""The REST API: one FastAPI application for everything under ``/api/v1``.

Every answer that is not a success has the Public API's error shape, whoever produced it: our
routes (``ApiError``), the workspace model (its conflicts and unknown names), FastAPI's request
validation, or the router (unknown path, wrong method). A client — the web app, Terraform-like
tooling, a script — parses one shape, and bad input never turns into a 500.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

import headwater
from headwater.api import (
    audit,
    consent,
    data_deletion,
    data_retention,
    destinations,
    engage,
    filters,
    functions,
    iam,
    insights,
    journeys,
    mappings,
    overview,
    privacy,
    profiles,
    regulations,
    segment,
    sources,
    spaces,
    sql_traits,
    subscription_uploads,
    subscriptions,
    tracking_plans,
    transformations,
    uploads,
    warehouses,
    workspace_settings,
)
from headwater.api.auth import require_access
from headwater.api.errors import ApiError, error_body, handle_api_error
from headwater.audit.trail import AuditTrail
from headwater.errors import ConflictError, InputError, NotFoundError
from headwater.store.archive import DEFAULT_RETENTION_DAYS
from headwater.store.workspace import WorkspaceStore

PREFIX = "/api/v1"

logger = logging.getLogger(__name__)


def create_api(
    engine: Engine,
    *,
    admin_token_hash: str,
    extra_routers: Sequence[APIRouter] = (),
    archive_dir: Path = Path("archive"),
    archive_retention_days: int | None = DEFAULT_RETENTION_DAYS,
    clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The REST API on ``engine``; ``extra_routers`` are mounted under ``/api/v1`` too."""
    app = FastAPI(
        title="Headwater API",
        version=headwater.__version__,
        description="Manage a Headwater workspace: sources and their write keys, destinations, "
        "Event Delivery and Replay. Send "
        "`Authorization: Bearer <token>` with every request: the admin token, or an API "
        "token (`hwp_…`), which may use the routes its roles allow.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
        # The docs and the OpenAPI document are not API routes, so they stay public.
        dependencies=[Depends(require_access), Depends(_reject_nul)],
    )
    app.state.engine = engine
    app.state.admin_token_hash = admin_token_hash
    app.state.archive_dir = archive_dir
    app.state.archive_retention_days = archive_retention_days  # the server's, until a workspace's
    app.state.workspace_store = WorkspaceStore(engine, clock=clock)
    app.state.audit_trail = AuditTrail(engine, clock=clock)
    app.state.clock = clock

    app.add_exception_handler(ApiError, handle_api_error)
    app.add_exception_handler(InputError, _input_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    for unusable in _UNUSABLE_INPUT:
        app.add_exception_handler(unusable, _unusable_input)
    app.add_exception_handler(Exception, _server_error)

    app.include_router(sources.router, prefix=PREFIX)
    app.include_router(destinations.router, prefix=PREFIX)
    app.include_router(filters.router, prefix=PREFIX)
    app.include_router(mappings.router, prefix=PREFIX)
    app.include_router(warehouses.router, prefix=PREFIX)
    app.include_router(tracking_plans.router, prefix=PREFIX)
    app.include_router(transformations.router, prefix=PREFIX)
    app.include_router(spaces.router, prefix=PREFIX)
    app.include_router(insights.router, prefix=PREFIX)
    app.include_router(uploads.router, prefix=PREFIX)
    app.include_router(profiles.router, prefix=PREFIX)
    app.include_router(engage.router, prefix=PREFIX)
    app.include_router(subscriptions.router, prefix=PREFIX)
    app.include_router(subscription_uploads.router, prefix=PREFIX)
    app.include_router(sql_traits.router, prefix=PREFIX)
    app.include_router(journeys.router, prefix=PREFIX)
    app.include_router(data_retention.router, prefix=PREFIX)
    app.include_router(workspace_settings.router, prefix=PREFIX)
    app.include_router(privacy.router, prefix=PREFIX)
    app.include_router(consent.router, prefix=PREFIX)
    app.include_router(regulations.router, prefix=PREFIX)
    app.include_router(data_deletion.router, prefix=PREFIX)
    app.include_router(functions.router, prefix=PREFIX)
    app.include_router(audit.router, prefix=PREFIX)
    app.include_router(overview.router, prefix=PREFIX)
    app.include_router(iam.router, prefix=PREFIX)
    for router in extra_routers:
        app.include_router(router, prefix=PREFIX)
    # Segment's Public API shapes, for Segment's SDKs and Terraform provider.
    app.include_router(segment.router, prefix=segment.PREFIX)
    return app


def _reject_nul(request: Request) -> None:
    """FastAPI dependency: no NUL in the path or query (PostgreSQL cannot even look it up)."""
    query = request.query_params.multi_items()
    if "\x00" in request.url.path or any("\x00" in k + v for k, v in query):
        raise ApiError(400, "bad_request", "the URL contains a NUL character (%00); remove it")


# --- error handlers --------------------------------------------------------------------------

_INPUT_ERRORS: list[tuple[type[InputError], int, str]] = [
    (NotFoundError, 404, "not_found"),
    (ConflictError, 409, "conflict"),
]


async def _input_error(_request: Request, exc: Exception) -> JSONResponse:
    # Every refusal of input is a 4xx, wherever it was raised: a parser deep in a route can
    # never turn a client's mistake into a 500.
    assert isinstance(exc, InputError)
    status, type_ = 422, "validation"
    for cls, cls_status, cls_type in _INPUT_ERRORS:
        if isinstance(exc, cls):
            status, type_ = cls_status, cls_type
            break
    field = sources.api_field(exc.field)
    message = f"{field}: {exc.message}" if field and status == 422 else exc.message
    return JSONResponse(error_body(type_, message, field), status_code=status)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # FastAPI reads the body before the auth dependency runs; say 401 (or 403) first, so a
    # caller without the token (or without access) learns nothing about the API's inputs.
    try:
        require_access(request)
    except ApiError as auth:
        return await handle_api_error(request, auth)
    errors: list[dict[str, object]] = []
    status = 422
    for error in exc.errors():
        loc = [str(part) for part in error.get("loc", ())]
        field = ".".join(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else ""
        if error.get("type") == "json_invalid":
            status = 400
            errors.append({"type": "bad_request", "message": "the body is not valid JSON"})
            continue
        message = str(error.get("msg", "invalid value"))
        if loc == ["body"] and "json" not in request.headers.get("content-type", ""):
            message = "send the body as a JSON object with Content-Type: application/json"
        entry: dict[str, object] = {
            "type": "validation",
            "message": f"{field}: {message}" if field else message,
        }
        if field:
            entry["field"] = field
        errors.append(entry)
    return JSONResponse({"errors": errors}, status_code=status)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        body = error_body("not_found", f"no such endpoint: {request.method} {request.url.path}")
    elif exc.status_code == 405:
        body = error_body(
            "method_not_allowed", f"{request.method} is not allowed on {request.url.path}"
        )
    else:
        body = error_body("http_error", str(exc.detail))
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    # The state database is down or unreachable: the caller's request was fine, so say so.
    logger.error("state database unavailable: %s", exc)
    return JSONResponse(
        error_body("unavailable", "the state database is unavailable; retry later"),
        status_code=503,
        headers={"Retry-After": "5"},
    )


# What a client's values make Python raise when they slip past the checks: a lone surrogate
# meeting a UTF-8 encoder, nesting meeting a recursive walk, a number meeting a 64-bit column.
_UNUSABLE_INPUT: dict[type[Exception], str] = {
    UnicodeError: "the request contains text that is not valid Unicode (a lone UTF-16 "
    "surrogate such as \\ud800?); send UTF-8 text",
    RecursionError: "the request nests too deeply (objects, arrays or parentheses); flatten it",
    OverflowError: "a number or date in the request is out of range",
}


async def _unusable_input(request: Request, exc: Exception) -> JSONResponse:
    # A gap in the checks (each such input should get its own clear check): answer 400, as
    # the input is at fault, and log the traceback so that the gap gets closed.
    logger.error(
        "REST API: %s %s: unusable input reached %s",
        request.method,
        request.url.path,
        type(exc).__name__,
        exc_info=exc,
    )
    message = next(text for cls, text in _UNUSABLE_INPUT.items() if isinstance(exc, cls))
    return JSONResponse(error_body("bad_request", message), status_code=400)


async def _server_error(_request: Request, _exc: Exception) -> JSONResponse:
    # Starlette re-raises the exception after this answer, so the server logs it once.
    return JSONResponse(
        error_body("server", "the server failed; see its log for details"), status_code=500
    )
