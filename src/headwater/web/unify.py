"""The Unify pages: the spaces, a space's profile search by any identifier (``user_id``,
``email``, ``anonymous_id``, an external id's type…) and a profile's traits, identities,
recent events and merges.

Every read goes through the REST API in process (``/api/v1/spaces``, ``…/profiles``), so a
reader without PII Access sees the values the API masks, masked here too.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.iam.access import Principal
from headwater.web.sessions import Session

if TYPE_CHECKING:
    from headwater.web.app import WebApp

MAX_SEARCH = 200


def shown_value(value: Any) -> str:
    """A trait's or a property's value as a page shows it: text as is, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def event_summary(event: dict[str, Any]) -> dict[str, Any]:
    """A timeline entry: its type, name, time, and the whole message as JSON."""
    kind = str(event.get("type", "message"))
    label = event.get("event") or event.get("name") or ""
    return {
        "kind": kind,
        "label": str(label),
        "at": str(event.get("timestamp") or event.get("receivedAt") or ""),
        "json": json.dumps(event, indent=2, ensure_ascii=False, sort_keys=True),
    }


class UnifyPages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.api = web.api

    def routes(self) -> list[Route]:
        return [
            *self.web.page_routes(
                "unify",
                [
                    ("GET", "/unify", self.spaces_page),
                    ("GET", "/unify/{space}", self.space_page),
                    ("GET", "/unify/{space}/profiles", self.search_page),
                    ("GET", "/unify/{space}/profiles/{profile}", self.profile_page),
                ],
            ),
        ]

    async def spaces_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        answer = await self.api.call(
            "GET", "/api/v1/spaces", principal, params={"pagination.count": 200}
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.render(
            "unify.html", {"spaces": answer.data["spaces"], "current": "/unify"}, session=session
        )

    async def space_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        space = quote(request.path_params["space"], safe="")
        return self.web.see_other(f"/unify/{space}/profiles")

    async def search_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        space = quote(request.path_params["space"], safe="")
        found = await self.api.call("GET", f"/api/v1/spaces/{space}", principal)
        if found.status != 200:
            return self.web.refused(found, session)
        search = request.query_params.get("q", "").strip()
        error = None
        profiles: list[dict[str, Any]] = []
        status = 200
        if len(search) > MAX_SEARCH:
            error, status = f"Enter at most {MAX_SEARCH} characters.", 400
        elif search:
            answer = await self.api.call(
                "GET", f"/api/v1/spaces/{space}/profiles", principal, params={"q": search}
            )
            if answer.status != 200:
                error, status = answer.error, answer.form_status
            else:
                profiles = [
                    {**p, "traits": [(k, shown_value(v)) for k, v in sorted(p["traits"].items())]}
                    for p in answer.data["profiles"]
                ]
        return self.web.render(
            "profiles.html",
            {
                "space": found.data["space"],
                "search": search,
                "profiles": profiles,
                "error": error,
                "current": "/unify",
            },
            status=status,
            session=session,
        )

    async def profile_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        space = quote(request.path_params["space"], safe="")
        profile = quote(request.path_params["profile"], safe="")
        found = await self.api.call("GET", f"/api/v1/spaces/{space}", principal)
        if found.status != 200:
            return self.web.refused(found, session)
        answer = await self.api.call("GET", f"/api/v1/spaces/{space}/profiles/{profile}", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        shown = answer.data["profile"]
        return self.web.render(
            "profile.html",
            {
                "space": found.data["space"],
                "profile": shown,
                "traits": [(k, shown_value(v)) for k, v in sorted(shown["traits"].items())],
                "events": [event_summary(e) for e in shown["events"]],
                "current": "/unify",
            },
            session=session,
        )
