"""The Sources pages: the list with a form to add a source, a source's overview (events, write
keys, the analytics.js snippet, connected destinations) and its debugger, live over SSE.

Every read and change goes through the REST API in process (``/api/v1/sources``,
``/api/v1/overview``, ``…/debugger``), so its checks, errors, PII masking and audit records
hold here too.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from headwater.iam.access import Principal
from headwater.web.inprocess import Answer
from headwater.web.sessions import Session
from headwater.web.snippet import analytics_snippet

if TYPE_CHECKING:
    from headwater.web.app import WebApp

DEBUGGER_ROWS = 50
_STREAM_HEADERS = {"cache-control": "no-store", "x-accel-buffering": "no"}


class SourcePages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.api = web.api

    def routes(self) -> list[Route]:
        return self.web.page_routes(
            "sources",
            [
                ("GET", "/sources", self.list_page),
                ("POST", "/sources", self.create),
                ("GET", "/sources/{source}", self.source_page),
                ("POST", "/sources/{source}/write-keys", self.rotate),
                ("GET", "/sources/{source}/debugger", self.debugger_page),
                ("GET", "/sources/{source}/debugger/stream", self.stream),
            ],
        )

    # --- the list, and adding a source ------------------------------------------------------

    async def list_page(self, request: Request, session: Session, principal: Principal) -> Response:
        return await self._list(session, principal, name="", error=None)

    async def create(self, request: Request, session: Session, principal: Principal) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        name = str(form.get("name", "")).strip()
        if not name:
            return await self._list(session, principal, name=name, error="Enter a name.")
        answer = await self.api.call("POST", "/api/v1/sources", principal, body={"name": name})
        if answer.status != 201:
            return await self._list(
                session, principal, name=name, error=answer.error, status=answer.form_status
            )
        source = answer.data["source"]
        return self.web.see_other(f"/sources/{source['id']}")

    async def _list(
        self,
        session: Session,
        principal: Principal,
        *,
        name: str,
        error: str | None,
        status: int = 200,
    ) -> Response:
        answer = await self.api.call("GET", "/api/v1/overview", principal, params={"hours": 24})
        if answer.status != 200:
            return self.web.refused(answer, session)
        data = answer.data
        connected: dict[str, list[str]] = {}
        for destination in data["destinations"]:
            connected.setdefault(destination["sourceId"], []).append(destination["name"])
        return self.web.render(
            "sources.html",
            {
                "sources": data["sources"],
                "connected": connected,
                "current": "/sources",
                "name": name,
                "error": error,
            },
            status=status if error is None else max(status, 400),
            session=session,
        )

    # --- one source -------------------------------------------------------------------------

    async def source_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        found = await self._source(request, principal)
        if found.status != 200:
            return self.web.refused(found, session)
        source = found.data["source"]
        overview = await self.api.call("GET", "/api/v1/overview", principal, params={"hours": 24})
        if overview.status != 200:
            return self.web.refused(overview, session)
        counts: dict[str, Any] = next(
            (s for s in overview.data["sources"] if s["id"] == source["id"]), {}
        )
        destinations = [d for d in overview.data["destinations"] if d["sourceId"] == source["id"]]
        keys: list[str] = source["writeKeys"]
        newest = keys[0] if keys else ""  # the API lists the newest first
        return self.web.render(
            "source.html",
            {
                "source": source,
                "counts": counts,
                "destinations": destinations,
                "keys": keys,
                "snippet": analytics_snippet(newest, self.web.public_url(request)),
                "rotated": request.query_params.get("rotated") == "1",
                "current": "/sources",
            },
            session=session,
        )

    async def rotate(self, request: Request, session: Session, principal: Principal) -> Response:
        """Segment's "Rotate": a new key; the current ones keep working for a day."""
        if await self.web.posted_form(request, session) is None:
            return self.web.forbidden(session)
        source = request.path_params["source"]
        answer = await self.api.call(
            "POST", f"/api/v1/sources/{source}/write-keys", principal, body={}
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.see_other(f"/sources/{answer.data['source']['id']}?rotated=1")

    # --- the debugger -----------------------------------------------------------------------

    async def debugger_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        found = await self._source(request, principal)
        if found.status != 200:
            return self.web.refused(found, session)
        source = found.data["source"]
        search = request.query_params.get("q", "")[:200]
        params: dict[str, Any] = {"limit": DEBUGGER_ROWS}
        if search:
            params["q"] = search
        answer = await self.api.call(
            "GET", f"/api/v1/sources/{source['id']}/debugger", principal, params=params
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        events = [_shown(entry) for entry in answer.data["events"]]
        return self.web.render(
            "debugger.html",
            {
                "source": source,
                "events": events,
                "search": search,
                # An empty list (and no search) streams from the first entry: one that lands
                # between this page and its stream's start still shows.
                "after": max((e["id"] for e in events), default=None if search else 0),
                "current": "/sources",
            },
            session=session,
        )

    async def stream(self, request: Request, session: Session, principal: Principal) -> Response:
        """The API's SSE stream, passed on as it comes; the browser's ``Last-Event-ID`` and
        ``after`` resume it."""
        source = request.path_params["source"]
        params = {"after": request.query_params["after"]} if "after" in request.query_params else {}
        headers = []
        if "last-event-id" in request.headers:
            headers.append((b"last-event-id", request.headers["last-event-id"].encode()))
        answer = await self.api.stream(
            f"/api/v1/sources/{source}/debugger/stream", principal, params=params, headers=headers
        )
        if answer.status != 200:
            body = b"".join([chunk async for chunk in answer.chunks])
            return Response(body, status_code=answer.status, media_type="application/json")
        return StreamingResponse(
            answer.chunks, media_type="text/event-stream", headers=_STREAM_HEADERS
        )

    async def _source(self, request: Request, principal: Principal) -> Answer:
        source = request.path_params["source"]
        return await self.api.call("GET", f"/api/v1/sources/{source}", principal)


def _shown(entry: dict[str, Any]) -> dict[str, Any]:
    """A debugger entry as its row shows it: a one-line summary and the message as JSON."""
    found = entry.get("message")
    message: dict[str, Any] = found if isinstance(found, dict) else {}
    kind = str(message.get("type", "message"))
    label = message.get("event") or message.get("name") or ""
    return {
        "id": entry["id"],
        "receivedAt": entry.get("receivedAt", ""),
        "status": entry.get("status", ""),
        "reason": entry.get("reason"),
        "kind": kind,
        "label": str(label),
        "json": json.dumps(found, indent=2, ensure_ascii=False, sort_keys=True),
    }
