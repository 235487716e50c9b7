"""The Engage pages: a space's computed traits, audiences and journeys; an audience's
definition, size preview and activation (its connected destinations), with a builder form
(Segment Query Language in a textarea, and a small guided form that writes a query); a
journey's steps as an SVG diagram.

Every read and change goes through the REST API in process (``/api/v1/spaces/…/audiences``,
``…/computed-traits``, ``…/journeys``), so its checks and errors hold here too.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.iam.access import Principal
from headwater.web.inprocess import Answer
from headwater.web.journey_diagram import journey_diagram
from headwater.web.sessions import Session

if TYPE_CHECKING:
    from headwater.web.app import WebApp

MAX_QUERY = 20_000
FIELDS = ("name", "description", "query", "type", "event", "times", "days")


def guided_query(event: str, times: str, days: str) -> str:
    """The query the guided form stands for: performed ``event`` at least ``times`` times in
    the last ``days`` days. ValueError naming what is wrong."""
    event = event.strip()
    if not event:
        raise ValueError("Enter the event's name.")
    try:
        count, within = int(times or "1"), int(days or "30")
    except ValueError:
        raise ValueError("Times and days must be whole numbers.") from None
    if count < 1 or within < 1:
        raise ValueError("Times and days must be 1 or more.")
    quoted = event.replace("\\", "\\\\").replace("'", "\\'")
    return f"event('{quoted}').within({within} days).count() >= {count}"


class EngagePages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.api = web.api

    def routes(self) -> list[Route]:
        return [
            *self.web.page_routes(
                "engage",
                [
                    ("GET", "/engage", self.spaces_page),
                    ("GET", "/engage/{space}", self.space_page),
                    ("POST", "/engage/{space}/audiences", self.new_audience),
                    ("GET", "/engage/{space}/audiences/{audience}", self.audience_page),
                    ("POST", "/engage/{space}/audiences/{audience}", self.edit_audience),
                    ("POST", "/engage/{space}/audiences/{audience}/destinations", self.connect),
                    ("GET", "/engage/{space}/journeys/{journey}", self.journey_page),
                ],
            ),
        ]

    # --- the spaces, and one space's lists ---------------------------------------------------

    async def spaces_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        answer = await self.api.call(
            "GET", "/api/v1/spaces", principal, params={"pagination.count": 200}
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.render(
            "engage.html", {"spaces": answer.data["spaces"], "current": "/engage"}, session=session
        )

    async def space_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._space(request, session, principal, form={}, notes={})

    async def _space(
        self,
        request: Request,
        session: Session,
        principal: Principal,
        *,
        form: dict[str, str],
        notes: dict[str, Any],
        status: int = 200,
    ) -> Response:
        space = quote(request.path_params["space"], safe="")
        found = await self.api.call("GET", f"/api/v1/spaces/{space}", principal)
        if found.status != 200:
            return self.web.refused(found, session)
        lists: dict[str, list[dict[str, Any]]] = {}
        for path, key in (
            ("audiences", "audiences"),
            ("computed-traits", "computedTraits"),
            ("journeys", "journeys"),
        ):
            answer = await self.api.call("GET", f"/api/v1/spaces/{space}/{path}", principal)
            if answer.status != 200:
                return self.web.refused(answer, session)
            lists[key] = answer.data[key]
        return self.web.render(
            "engage_space.html",
            {
                "space": found.data["space"],
                "audiences": lists["audiences"],
                "traits": lists["computedTraits"],
                "journeys": lists["journeys"],
                "form": {k: form.get(k, "") for k in FIELDS} | {"type": form.get("type", "USERS")},
                "action": f"/engage/{found.data['space']['id']}/audiences",
                "preview": notes.get("preview"),
                "error": notes.get("error"),
                "current": "/engage",
            },
            status=status,
            session=session,
        )

    # --- the builder: guided form, preview, create --------------------------------------------

    async def new_audience(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        given, notes, status = await self._builder(request, principal, form)
        if notes or form.get("action") != "create":
            return await self._space(
                request, session, principal, form=given, notes=notes, status=status
            )
        space = quote(request.path_params["space"], safe="")
        body = {
            "name": given["name"],
            "description": given["description"],
            "definition": {"query": given["query"], "type": given["type"]},
        }
        answer = await self.api.call(
            "POST", f"/api/v1/spaces/{space}/audiences", principal, body=body
        )
        if answer.status == 403:
            return self.web.not_allowed(session)
        if answer.status != 201:
            notes = {"error": answer.error}
            return await self._space(
                request, session, principal, form=given, notes=notes, status=answer.form_status
            )
        audience = answer.data["audience"]
        return self.web.see_other(f"/engage/{space}/audiences/{quote(audience['id'], safe='')}")

    async def _builder(
        self, request: Request, principal: Principal, form: FormData
    ) -> tuple[dict[str, str], dict[str, Any], int]:
        """The form's fields, and what its button asked: ``build`` writes the guided form's
        query into the textarea, ``preview`` asks the API for the size. Notes (an error or a
        preview) and the status the page answers with."""
        given = {k: str(form.get(k, "")).strip() for k in FIELDS}
        given["type"] = "ACCOUNTS" if given["type"] == "ACCOUNTS" else "USERS"
        action = str(form.get("action", ""))
        if action == "build":
            try:
                given["query"] = guided_query(given["event"], given["times"], given["days"])
            except ValueError as exc:
                return given, {"error": str(exc)}, 400
            return given, {}, 200
        if not given["query"]:
            return given, {"error": "Enter a query, or build one with the guided form."}, 400
        if len(given["query"]) > MAX_QUERY:
            return given, {"error": f"Enter at most {MAX_QUERY:,} characters."}, 400
        if action == "preview":
            answer = await self._preview(request, principal, given)
            if answer.status == 422 and _field(answer) != "space":  # the query refused
                return given, {"error": answer.error}, answer.status
            return given, {"preview": _preview_of(answer)}, 200
        return given, {}, 200

    async def _preview(
        self, request: Request, principal: Principal, given: dict[str, str]
    ) -> Answer:
        space = quote(request.path_params["space"], safe="")
        body = {"definition": {"query": given["query"], "type": given["type"]}}
        return await self.api.call(
            "POST", f"/api/v1/spaces/{space}/audiences/preview", principal, body=body
        )

    # --- one audience -----------------------------------------------------------------------

    async def audience_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._audience(request, session, principal, form=None, notes={})

    async def _audience(
        self,
        request: Request,
        session: Session,
        principal: Principal,
        *,
        form: dict[str, str] | None,
        notes: dict[str, Any],
        status: int = 200,
    ) -> Response:
        space = quote(request.path_params["space"], safe="")
        audience = quote(request.path_params["audience"], safe="")
        found = await self.api.call("GET", f"/api/v1/spaces/{space}", principal)
        if found.status != 200:
            return self.web.refused(found, session)
        answer = await self.api.call(
            "GET", f"/api/v1/spaces/{space}/audiences/{audience}", principal
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        shown = answer.data["audience"]
        if form is None:
            form = {k: "" for k in FIELDS} | {
                "name": shown["name"],
                "description": shown["description"],
                "query": shown["definition"]["query"],
                "type": shown["definition"]["type"],
            }
        preview = notes.get("preview")
        if preview is None and "error" not in notes:  # the size of the saved definition
            preview = _preview_of(await self._preview(request, principal, form))
        space_id = found.data["space"]["id"]
        return self.web.render(
            "audience.html",
            {
                "space": found.data["space"],
                "audience": shown,
                "form": form,
                "action": f"/engage/{space_id}/audiences/{quote(shown['id'], safe='')}",
                "preview": preview,
                "error": notes.get("error"),
                "connect_error": notes.get("connect_error"),
                "current": "/engage",
            },
            status=status,
            session=session,
        )

    async def edit_audience(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        given, notes, status = await self._builder(request, principal, form)
        if notes or form.get("action") != "save":
            return await self._audience(
                request, session, principal, form=given, notes=notes, status=status
            )
        space = quote(request.path_params["space"], safe="")
        audience = quote(request.path_params["audience"], safe="")
        body: dict[str, Any] = {
            "definition": {"query": given["query"], "type": given["type"]},
            "description": given["description"],
        }
        if given["name"]:
            body["name"] = given["name"]
        answer = await self.api.call(
            "PATCH", f"/api/v1/spaces/{space}/audiences/{audience}", principal, body=body
        )
        if answer.status == 403:
            return self.web.not_allowed(session)
        if answer.status != 200:
            return await self._audience(
                request,
                session,
                principal,
                form=given,
                notes={"error": answer.error},
                status=answer.form_status,
            )
        return self.web.see_other(f"/engage/{space}/audiences/{audience}")

    async def connect(self, request: Request, session: Session, principal: Principal) -> Response:
        """Activation: connect a destination (sending Identify and Track calls), or
        disconnect one."""
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        space = quote(request.path_params["space"], safe="")
        audience = quote(request.path_params["audience"], safe="")
        found = await self.api.call(
            "GET", f"/api/v1/spaces/{space}/audiences/{audience}", principal
        )
        if found.status != 200:
            return self.web.refused(found, session)
        current = [
            {"name": d["name"], "sendIdentify": d["sendIdentify"], "sendTrack": d["sendTrack"]}
            for d in found.data["audience"]["destinations"]
        ]
        removed = str(form.get("remove", "")).strip()
        name = str(form.get("destination", "")).strip()
        if removed:
            wanted = [d for d in current if d["name"] != removed]
        elif not name:
            return await self._audience(
                request,
                session,
                principal,
                form=None,
                notes={"connect_error": "Enter a destination's name."},
                status=400,
            )
        else:
            wanted = [*current, {"name": name, "sendIdentify": True, "sendTrack": True}]
        answer = await self.api.call(
            "PATCH",
            f"/api/v1/spaces/{space}/audiences/{audience}",
            principal,
            body={"destinations": wanted},
        )
        if answer.status == 403:
            return self.web.not_allowed(session)
        if answer.status != 200:
            return await self._audience(
                request,
                session,
                principal,
                form=None,
                notes={"connect_error": answer.error},
                status=answer.form_status,
            )
        return self.web.see_other(f"/engage/{space}/audiences/{audience}")

    # --- one journey ------------------------------------------------------------------------

    async def journey_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        space = quote(request.path_params["space"], safe="")
        journey = quote(request.path_params["journey"], safe="")
        found = await self.api.call("GET", f"/api/v1/spaces/{space}", principal)
        if found.status != 200:
            return self.web.refused(found, session)
        answer = await self.api.call("GET", f"/api/v1/spaces/{space}/journeys/{journey}", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        shown = answer.data["journey"]
        return self.web.render(
            "journey.html",
            {
                "space": found.data["space"],
                "journey": shown,
                "diagram": journey_diagram(shown["definition"]),
                "definition": json.dumps(shown["definition"], indent=2, sort_keys=True),
                "current": "/engage",
            },
            session=session,
        )


def _field(answer: Answer) -> str | None:
    """The field an API refusal names, if any."""
    try:
        return str(answer.body["errors"][0]["field"])
    except (KeyError, IndexError, TypeError):
        return None


def _preview_of(answer: Answer) -> dict[str, Any]:
    """A size preview as the page shows it: the size and when the data was loaded, or why
    there is none (a refused query is the form's error; no batch engine, a note)."""
    if answer.status == 200:
        data = answer.data
        return {"size": data["size"], "asOf": data.get("asOf"), "error": None}
    return {"size": None, "asOf": None, "error": answer.error}
