"""The audit trail through the REST API (§21): every change made through it is recorded, and
``GET /audit-events`` reads the trail in the Public API's shape.

Recording wraps the application: for a request that may change something (POST, PUT, PATCH,
DELETE) and succeeds, the workspace's view before and after (``headwater export``'s, secrets
redacted, see audit/changes.py) gives the resources created, deleted or modified. A change
outside the exported configuration (a regulation, a replay, a token) is recorded by its route
instead: "Regulation Created" with the resource's id from the path or the answer, and never
the request's body, which may carry a subject's ids or a secret.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from headwater.api.errors import ApiError, body_object
from headwater.api.sources import _pagination
from headwater.audit.changes import View, changes
from headwater.audit.forwarding import AuditForwarding, ForwardingSettings
from headwater.audit.trail import ADMIN, Actor, AuditEvent, AuditTrail
from headwater.audit.trail import Query as TrailQuery
from headwater.errors import NotFoundError
from headwater.store.workspace import WorkspaceStore

router = APIRouter(tags=["audit trail"])

Pagination = Annotated[tuple[str | None, int], Depends(_pagination)]
JsonBody = Annotated[Any, Body()]

_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_AUDITED = ("/api/v1/", "/segment/v1/")  # the management APIs, not the Tracking API's paths
_VERBS = {"POST": "Created", "PUT": "Modified", "PATCH": "Modified", "DELETE": "Deleted"}
# Routes that change nothing, though they are POSTs: previews, testers, searches.
_READS = re.compile(r"/(preview|tester|test|search|validate|query|estimate)s?(/|$)")
ANSWER_BYTES = 64 * 1024  # an answer read for its resource's id; larger ones are not


def trail_of(request: Request) -> AuditTrail:
    trail: AuditTrail = request.app.state.audit_trail
    return trail


Trail = Annotated[AuditTrail, Depends(trail_of)]


@router.get("/audit-events", response_model=None)
def list_audit_events(
    trail: Trail,
    page: Pagination,
    start_time: Annotated[str | None, Query(alias="startTime")] = None,
    end_time: Annotated[str | None, Query(alias="endTime")] = None,
    resource_id: Annotated[str | None, Query(alias="resourceId", max_length=200)] = None,
    resource_type: Annotated[str | None, Query(alias="resourceType", max_length=60)] = None,
    actor: Annotated[str | None, Query(max_length=200)] = None,
    type_: Annotated[str | None, Query(alias="type", max_length=200)] = None,
) -> dict[str, Any]:
    """The last 90 days of changes, newest first (Workspace Owners only)."""
    cursor, count = page
    query = TrailQuery(
        start=_time(start_time, "startTime"),
        end=_time(end_time, "endTime"),
        resource_id=resource_id,
        resource_type=resource_type,
        actor=actor,
        type=type_,
    )
    found = trail.page(query, count=count, cursor=cursor)
    pagination: dict[str, Any] = {"current": cursor or ""}
    if found.next_cursor is not None:
        pagination["next"] = found.next_cursor
    return {
        "data": {
            "auditEvents": [r.shown() for r in found.items],
            "pagination": pagination,
        }
    }


@router.get("/audit-forwarding", response_model=None)
def get_forwarding(request: Request) -> dict[str, Any]:
    """Whether audit events enter a source, and which (Workspace Owners only)."""
    found = _forwarding(request).settings(_workspace_id(request))
    return {"data": {"auditForwarding": found.shown()}}


@router.put("/audit-forwarding", response_model=None)
def set_forwarding(body: JsonBody, request: Request) -> dict[str, Any]:
    """``{"enabled": true, "sourceId": "…"}``: from now on every audit event also enters the
    source as a Track call named ``Audit`` (Segment's shape)."""
    fields = body_object(body, {"enabled", "sourceId"})
    enabled, source = fields.get("enabled"), fields.get("sourceId")
    if not isinstance(enabled, bool):
        raise ApiError(422, "validation", "enabled: must be true or false", "enabled")
    if source is not None and not isinstance(source, str):
        raise ApiError(422, "validation", "sourceId: must be a source's id or name", "sourceId")
    if enabled and source is None:
        raise ApiError(
            422, "validation", "sourceId: name the source that receives them", "sourceId"
        )
    store: WorkspaceStore = request.app.state.workspace_store
    source_id = None
    if source is not None:
        found = store.get_source(source)
        if found is None:
            raise ApiError(404, "not_found", f"no source {source!r}", "sourceId")
        source_id = found.id
    forwarding = _forwarding(request)
    forwarding.configure(_workspace_id(request), ForwardingSettings(enabled, source_id))
    return {"data": {"auditForwarding": forwarding.settings(_workspace_id(request)).shown()}}


def _forwarding(request: Request) -> AuditForwarding:
    trail = trail_of(request)
    return AuditForwarding(trail.engine, clock=trail.clock)


def _workspace_id(request: Request) -> str:
    workspace = request.app.state.workspace_store.workspace()
    if workspace is None:
        raise NotFoundError("no workspace: run `headwater apply` first")
    workspace_id: str = workspace.id
    return workspace_id


def _time(value: str | None, field: str) -> float | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400,
            "validation",
            f"{field}: expected an ISO-8601 time such as 2026-01-31T00:00:00Z",
            field,
        ) from None
    if parsed.tzinfo is None:
        raise ApiError(400, "validation", f"{field}: give a time zone (Z or ±hh:mm)", field)
    return parsed.timestamp()


def use_audit(app: FastAPI, view: Callable[[], View]) -> None:
    """Record every change made through ``app``; ``view`` reads the workspace as the trail
    compares it (the server passes the export's)."""
    app.add_middleware(
        _Recorder, trail=app.state.audit_trail, view=view, store=app.state.workspace_store
    )


class _Recorder:
    """ASGI middleware: a changing request's before/after, recorded once it succeeded."""

    def __init__(
        self, app: ASGIApp, *, trail: AuditTrail, view: Callable[[], View], store: WorkspaceStore
    ) -> None:
        self.app = app
        self.trail = trail
        self.view = view
        self.store = store
        # The view after the last recorded change and the config version it was read at: the
        # next change's "before" when nothing moved in between (one export a change, not two).
        self._last: tuple[int, View] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] not in _CHANGING
            or not scope["path"].startswith(_AUDITED)
        ):
            await self.app(scope, receive, send)
            return
        version, before = await asyncio.to_thread(self._before)
        status = 0
        answer = bytearray()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and len(answer) <= ANSWER_BYTES:
                answer.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)
        if 200 <= status < 300:
            await asyncio.to_thread(self._record, scope, version, before, bytes(answer))

    def _before(self) -> tuple[int, View]:
        version = self.store.config_version()
        if self._last is not None and self._last[0] == version:
            return self._last
        return version, self.view()

    def _record(self, scope: Scope, version: int, before: View, answer: bytes) -> None:
        events: list[AuditEvent] = []
        now = self.store.config_version()
        if now != version:
            after = self.view()
            self._last = (now, after)
            events = changes(before, after)
        if not events:
            route_event = _route_event(scope, answer, before)
            if route_event is None:
                return
            events = [route_event]
        self.trail.record(_actor(scope), events)


def _actor(scope: Scope) -> Actor:
    principal = scope.get("state", {}).get("principal")
    if principal is None:
        return ADMIN
    return Actor(principal.kind, principal.id, getattr(principal, "email", None))


def _route_event(scope: Scope, answer: bytes, view: View) -> AuditEvent | None:
    """A change the export does not show (a secret, a regulation), named by its route:
    ``POST /regulations`` → "Regulation Created"."""
    route = scope.get("route")
    if not isinstance(route, Route):
        return None
    template = route.path
    if _READS.search(template):
        return None
    statics = [p for p in template.split("/") if p and not p.startswith("{")]
    if not statics or statics[-1] in {"v1", "api"}:
        return None
    noun = _noun(statics[-1])
    kind = noun.lower().replace(" ", "_")
    params: dict[str, Any] = scope.get("path_params", {})
    named = next((str(v) for v in reversed(params.values())), None)
    if named is None or scope["method"] == "POST":
        named = _answer_id(answer) or named
    # A path names a resource by id or by name: the trail shows both when the view knows it.
    resource_id, resource_name = named, None
    by_id = {i: n for (k, n), i in view.ids.items() if k == kind}
    if named is not None and (kind, named) in view.ids:
        resource_id, resource_name = view.ids[(kind, named)], named
    elif named in by_id:
        resource_name = by_id[named]
    return AuditEvent(f"{noun} {_VERBS[scope['method']]}", kind, resource_id, resource_name)


def _noun(segment: str) -> str:
    words = segment.replace("_", "-").split("-")
    last = words[-1]
    if last.endswith("ies"):
        words[-1] = last[:-3] + "y"
    elif last.endswith("s") and not last.endswith("ss"):
        words[-1] = last[:-1]
    return " ".join(w.capitalize() for w in words if w)


def _answer_id(answer: bytes) -> str | None:
    """The created resource's id in a Public API answer (``{"data": {"<kind>": {"id"}}}``)."""
    try:
        body = json.loads(answer)
    except (ValueError, UnicodeDecodeError):
        return None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        return None
    for value in (data, *data.values()):
        if isinstance(value, dict) and isinstance(value.get("id"), str | int):
            return str(value["id"])
    # Some answers name it: ``{"data": {"regulateId": "reg_…"}}``.
    named = [v for k, v in data.items() if k.endswith("Id") and isinstance(v, str)]
    return named[0] if len(named) == 1 else None
