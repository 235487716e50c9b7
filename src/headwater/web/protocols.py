"""The Protocols pages: tracking plans (the list, adding one, and a plan's spreadsheet-like
editor: its rules as JSON Schema, its connected sources, CSV download and upload), violations
per source and event with samples, and transformations (rename an event or its properties).

Every read and change goes through the REST API in process (``/api/v1/tracking-plans``,
``/api/v1/violations``, ``/api/v1/transformations``): a rule that does not compile comes back
as the API's 4xx and shows by its field. Tracking plans need the tracking plans area;
violations and transformations are the sources area's, as in Segment (§5.1, §20.2).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from headwater.iam.access import Principal
from headwater.protocols.plan_csv import MAX_BYTES
from headwater.protocols.transformations.model import standard_matcher
from headwater.protocols.violations import WINDOWS
from headwater.web.inprocess import Answer
from headwater.web.sessions import Session

if TYPE_CHECKING:
    from headwater.web.app import WebApp

RULE_TYPES = ("TRACK", "IDENTIFY", "GROUP", "PAGE", "SCREEN", "COMMON")
EVENT_TYPES = ("track", "identify", "group")
SAMPLES = 3
NEW_RULE_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema#",
    "type": "object",
    "properties": {
        "properties": {"type": "object", "properties": {}, "required": []},
    },
}
MAX_RULES_SHOWN = 1000
_CSV_HEADERS = {"content-type", "content-disposition"}


class ProtocolPages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.api = web.api

    def routes(self) -> list[Route]:
        plan = "/protocols/tracking-plans/{plan}"
        listed = "/protocols/transformations"
        transformation = listed + "/{transformation}"
        return [
            *self.web.page_routes(
                "tracking_plans",
                [
                    ("GET", "/protocols", self.plans_page),
                    ("POST", "/protocols/tracking-plans", self.create_plan),
                    ("GET", plan, self.plan_page),
                    ("POST", plan + "/delete", self.delete_plan),
                    ("POST", plan + "/rules", self.save_rule),
                    ("POST", plan + "/rules/delete", self.delete_rule),
                    ("POST", plan + "/sources", self.connect_source),
                    ("POST", plan + "/sources/remove", self.disconnect_source),
                    ("GET", plan + "/csv", self.download_csv),
                    ("POST", plan + "/csv", self.upload_csv),
                ],
            ),
            *self.web.page_routes(
                "sources",
                [
                    ("GET", "/protocols/violations", self.violations_page),
                    ("GET", listed, self.transformations_page),
                    ("POST", listed, self.create_transformation),
                    ("GET", transformation, self.transformation_page),
                    ("POST", transformation, self.save_transformation),
                    ("POST", transformation + "/enabled", self.toggle),
                    ("POST", transformation + "/delete", self.delete_transformation),
                ],
            ),
        ]

    def _tabs(self, principal: Principal) -> list[tuple[str, str]]:
        """Protocols' sections the role may open."""
        tabs = []
        if principal.allows("tracking_plans", False):
            tabs.append(("Tracking plans", "/protocols"))
        if principal.allows("sources", False):
            tabs.append(("Violations", "/protocols/violations"))
            tabs.append(("Transformations", "/protocols/transformations"))
        return tabs

    def _render(
        self,
        name: str,
        context: dict[str, Any],
        session: Session,
        principal: Principal,
        *,
        tab: str,
        status: int = 200,
    ) -> Response:
        return self.web.render(
            name,
            {**context, "tabs": self._tabs(principal), "tab": tab, "current": "/protocols"},
            status=status,
            session=session,
        )

    # --- tracking plans ---------------------------------------------------------------------

    async def plans_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        deleted = request.query_params.get("deleted") == "1"
        return await self._plans(session, principal, values={}, errors={}, deleted=deleted)

    async def create_plan(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        name = str(form.get("name", "")).strip()
        description = str(form.get("description", "")).strip()
        values = {"name": name, "description": description}
        if not name:
            return await self._plans(
                session, principal, values=values, errors={"name": "Enter a name."}, status=400
            )
        body = {"name": name, "description": description, "type": "LIVE"}
        answer = await self.api.call("POST", "/api/v1/tracking-plans", principal, body=body)
        if answer.status != 201:
            field = _field(answer.body)
            errors = {field if field in ("name", "description") else "name": answer.error}
            return await self._plans(
                session, principal, values=values, errors=errors, status=answer.form_status
            )
        return self.web.see_other(f"/protocols/tracking-plans/{answer.data['trackingPlan']['id']}")

    async def _plans(
        self,
        session: Session,
        principal: Principal,
        *,
        values: dict[str, str],
        errors: dict[str, str],
        status: int = 200,
        deleted: bool = False,
    ) -> Response:
        answer = await self.api.call(
            "GET", "/api/v1/tracking-plans", principal, params={"pagination.count": 1000}
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self._render(
            "tracking_plans.html",
            {
                "plans": answer.data["trackingPlans"],
                "deleted": deleted,
                "values": values,
                "errors": errors,
                "may_change": principal.allows("tracking_plans", True),
            },
            session,
            principal,
            tab="/protocols",
            status=status,
        )

    async def plan_page(self, request: Request, session: Session, principal: Principal) -> Response:
        return await self._plan(request, session, principal)

    async def _plan(
        self,
        request: Request,
        session: Session,
        principal: Principal,
        *,
        editing: dict[str, Any] | None = None,
        status: int = 200,
        notice: str | None = None,
    ) -> Response:
        ref = request.path_params["plan"]
        found = await self.api.call("GET", f"/api/v1/tracking-plans/{ref}", principal)
        if found.status != 200:
            return self.web.refused(found, session)
        plan = found.data["trackingPlan"]
        base = f"/api/v1/tracking-plans/{plan['id']}"
        page = {"pagination.count": MAX_RULES_SHOWN}
        rules = await self.api.call("GET", base + "/rules", principal, params=page)
        connected = await self.api.call("GET", base + "/sources", principal, params=page)
        for answer in (rules, connected):
            if answer.status != 200:
                return self.web.refused(answer, session)
        connected_ids = {s["id"] for s in connected.data["sources"]}
        others = [s for s in await self._sources(principal) if s["id"] not in connected_ids]
        shown = [_shown_rule(rule, i) for i, rule in enumerate(rules.data["rules"])]
        if notice is None and request.query_params.get("uploaded"):
            notice = f"The CSV was uploaded: the plan has {request.query_params['uploaded']} rules."
        return self._render(
            "tracking_plan.html",
            {
                "plan": plan,
                "rules": shown,
                "total": rules.data["pagination"].get("totalEntries", len(shown)),
                "connected": connected.data["sources"],
                "others": others,
                "rule_types": RULE_TYPES,
                "editing": editing or {},
                "new_schema": json.dumps(NEW_RULE_SCHEMA, indent=2),
                "notice": notice,
                "may_change": principal.allows("tracking_plans", True),
            },
            session,
            principal,
            tab="/protocols",
            status=status,
        )

    async def delete_plan(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        """Deleting a plan cannot be undone (Segment cannot restore one either): the form
        asks the person to say so."""
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        if form.get("confirm") != "on":
            editing = {"slot": "delete", "error": "Tick the box to confirm: this cannot be undone."}
            return await self._plan(request, session, principal, editing=editing, status=400)
        ref = request.path_params["plan"]
        answer = await self.api.call("DELETE", f"/api/v1/tracking-plans/{ref}", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.see_other("/protocols?deleted=1")

    async def save_rule(self, request: Request, session: Session, principal: Principal) -> Response:
        """Add a rule, or change one's JSON Schema (the API's upsert)."""
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        ref = request.path_params["plan"]
        slot = str(form.get("slot", "new"))[:20]
        kind = str(form.get("type", ""))
        key = str(form.get("key", "")).strip()
        text = str(form.get("jsonSchema", ""))
        editing: dict[str, Any] = {"slot": slot, "type": kind, "key": key, "text": text}
        try:
            version = int(str(form.get("version", "1")))
        except ValueError:
            version = 0
        editing["version"] = version
        try:
            schema = json.loads(text) if text.strip() else {}
        except ValueError as exc:
            editing["error"] = f"jsonSchema: not valid JSON ({exc})"
            return await self._plan(request, session, principal, editing=editing, status=400)
        rule = {"type": kind, "key": key, "version": version, "jsonSchema": schema}
        answer = await self.api.call(
            "PATCH",
            f"/api/v1/tracking-plans/{ref}/rules",
            principal,
            body={"rules": [rule]},
        )
        if answer.status == 404 and _field(answer.body) is None:
            return self.web.refused(answer, session)
        if answer.status != 200:
            if answer.status == 403:
                return self.web.refused(answer, session)
            field = _field(answer.body) or ""
            editing["error"] = answer.error
            editing["field"] = field.removeprefix("rules[0].").removeprefix("rules[0]") or "rule"
            return await self._plan(
                request, session, principal, editing=editing, status=answer.form_status
            )
        return self.web.see_other(f"/protocols/tracking-plans/{ref}#rules")

    async def delete_rule(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        ref = request.path_params["plan"]
        try:
            version = int(str(form.get("version", "1")))
        except ValueError:
            version = 0
        ident = {"type": str(form.get("type", "")), "key": str(form.get("key", ""))}
        answer = await self.api.call(
            "DELETE",
            f"/api/v1/tracking-plans/{ref}/rules",
            principal,
            body={"rules": [{**ident, "version": version}]},
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.see_other(f"/protocols/tracking-plans/{ref}#rules")

    async def connect_source(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._source_change(request, session, principal, connect=True)

    async def disconnect_source(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._source_change(request, session, principal, connect=False)

    async def _source_change(
        self, request: Request, session: Session, principal: Principal, *, connect: bool
    ) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        ref = request.path_params["plan"]
        source = str(form.get("source", ""))
        path = f"/api/v1/tracking-plans/{ref}/sources"
        if connect:
            answer = await self.api.call("POST", path, principal, body={"sourceId": source})
        else:
            answer = await self.api.call("DELETE", path, principal, params={"sourceId": source})
        if answer.status in (400, 404, 409, 422) and source:
            return await self._plan(
                request,
                session,
                principal,
                editing={"slot": "sources", "error": answer.error},
                status=answer.status,
            )
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.see_other(f"/protocols/tracking-plans/{ref}#sources")

    async def download_csv(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        """The API's CSV (Segment's columns and file name), passed on as a download."""
        ref = request.path_params["plan"]
        answer = await self.api.stream(f"/api/v1/tracking-plans/{ref}/csv", principal)
        if answer.status != 200:
            body = b"".join([chunk async for chunk in answer.chunks])
            try:
                decoded = json.loads(body) if body else None
            except ValueError:
                decoded = None
            return self.web.refused(Answer(answer.status, decoded), session)
        headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in answer.headers
            if k.decode("latin-1").lower() in _CSV_HEADERS
        }
        headers["cache-control"] = "no-store"
        headers["x-content-type-options"] = "nosniff"
        return StreamingResponse(answer.chunks, headers=headers)

    async def upload_csv(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        """Replace the plan's rules with a CSV's (Segment's upload); a file with an error
        changes nothing, and the error names its line."""
        async with request.form(max_part_size=MAX_BYTES + 1) as form:
            if not session.csrf_matches(str(form.get("csrf", ""))):
                return self.web.forbidden(session)
            upload = form.get("file")
            # The API refuses a file of MAX_BYTES or more; reading no further bounds memory.
            data = await upload.read(MAX_BYTES) if isinstance(upload, UploadFile) else b""
        if not data:
            return await self._plan(
                request,
                session,
                principal,
                editing={"slot": "csv", "error": "Choose a CSV file to upload."},
                status=400,
            )
        ref = request.path_params["plan"]
        answer = await self.api.call(
            "PUT", f"/api/v1/tracking-plans/{ref}/csv", principal, content=data
        )
        if answer.status == 200:
            count = int(answer.data.get("rules", 0))
            return self.web.see_other(f"/protocols/tracking-plans/{ref}?uploaded={count}")
        if answer.status in (403, 404):
            return self.web.refused(answer, session)
        return await self._plan(
            request,
            session,
            principal,
            editing={"slot": "csv", "error": answer.error},
            status=answer.form_status,
        )

    async def _sources(self, principal: Principal) -> list[dict[str, Any]]:
        """The workspace's sources, where the role may read them."""
        if not principal.allows("sources", False):
            return []
        answer = await self.api.call(
            "GET", "/api/v1/sources", principal, params={"pagination.count": 1000}
        )
        found: list[dict[str, Any]] = answer.data.get("sources", [])
        return found

    # --- violations -------------------------------------------------------------------------

    async def violations_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        """Each source's violations (or one source's), grouped by event: every unique
        violation's count, last seen and newest samples."""
        window = request.query_params.get("window", "24h")
        chosen = request.query_params.get("source", "")
        sources = await self._sources(principal)
        error = None
        status = 200
        if window not in WINDOWS:
            error, status, window = f"Choose a window: {', '.join(WINDOWS)}.", 400, "24h"
        shown = [s for s in sources if not chosen or chosen in (s["id"], s["name"])]
        if chosen and not shown and error is None:
            error, status = f"There is no source {chosen!r}.", 404
        groups = []
        for source in shown if error is None else []:
            answer = await self.api.call(
                "GET",
                "/api/v1/violations",
                principal,
                params={"source": source["id"], "window": window, "samples": SAMPLES},
            )
            if answer.status != 200:
                return self.web.refused(answer, session)
            groups.append({"source": source, "events": _by_event(answer.data["violations"])})
        return self._render(
            "violations.html",
            {
                "sources": sources,
                "chosen": chosen,
                "window": window,
                "windows": tuple(WINDOWS),
                "groups": groups,
                "error": error,
            },
            session,
            principal,
            tab="/protocols/violations",
            status=status,
        )

    # --- transformations --------------------------------------------------------------------

    async def transformations_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._transformations(session, principal, values={}, errors={})

    async def _transformations(
        self,
        session: Session,
        principal: Principal,
        *,
        values: dict[str, str],
        errors: dict[str, str],
        status: int = 200,
    ) -> Response:
        answer = await self.api.call(
            "GET", "/api/v1/transformations", principal, params={"pagination.count": 1000}
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        sources = await self._sources(principal)
        names = {s["id"]: s["name"] for s in sources}
        return self._render(
            "transformations.html",
            {
                "transformations": [
                    _shown_transformation(t, names) for t in answer.data["transformations"]
                ],
                "sources": sources,
                "event_types": EVENT_TYPES,
                "values": values,
                "errors": errors,
                "may_change": principal.allows("sources", True),
            },
            session,
            principal,
            tab="/protocols/transformations",
            status=status,
        )

    async def create_transformation(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        values = {k: str(v) for k, v in form.items() if k != "csrf"}
        kind = values.get("event_type", "track")
        event = values.get("event", "").strip()
        renames, errors = _transformation_form(values, kind)
        if kind not in EVENT_TYPES:
            errors["event_type"] = f"Choose one of {', '.join(EVENT_TYPES)}."
        elif kind == "track" and not event:
            errors["event"] = "Enter the Track event's name."
        if errors:
            return await self._transformations(
                session, principal, values=values, errors=errors, status=400
            )
        body: dict[str, Any] = {
            "name": values["name"].strip(),
            "sourceId": values.get("source", ""),
            "enabled": values.get("enabled") == "on",
            "if": _matcher(kind, event),
            "propertyRenames": renames,
        }
        if values.get("new_event", "").strip():
            body["newEventName"] = values["new_event"].strip()
        answer = await self.api.call("POST", "/api/v1/transformations", principal, body=body)
        if answer.status != 201:
            if answer.status == 403:
                return self.web.refused(answer, session)
            errors = {_transformation_field(answer.body): answer.error}
            return await self._transformations(
                session, principal, values=values, errors=errors, status=answer.form_status
            )
        return self.web.see_other("/protocols/transformations")

    async def transformation_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._transformation(request, session, principal, values=None, errors={})

    async def _transformation(
        self,
        request: Request,
        session: Session,
        principal: Principal,
        *,
        values: dict[str, str] | None,
        errors: dict[str, str],
        status: int = 200,
    ) -> Response:
        ref = request.path_params["transformation"]
        answer = await self.api.call("GET", f"/api/v1/transformations/{ref}", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        names = {s["id"]: s["name"] for s in await self._sources(principal)}
        shown = _shown_transformation(answer.data["transformation"], names)
        if values is None:
            values = {
                "name": shown["name"],
                "new_event": shown.get("newEventName") or "",
                "renames": "\n".join(f"{r['old']} = {r['new']}" for r in shown["renames"]),
                "enabled": "on" if shown["enabled"] else "",
            }
        return self._render(
            "transformation.html",
            {
                "t": shown,
                "values": values,
                "errors": errors,
                "may_change": principal.allows("sources", True),
            },
            session,
            principal,
            tab="/protocols/transformations",
            status=status,
        )

    async def save_transformation(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        """Change what Segment lets change: the name, the resulting names, enabled."""
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        ref = request.path_params["transformation"]
        values = {k: str(v) for k, v in form.items() if k != "csrf"}
        current = await self.api.call("GET", f"/api/v1/transformations/{ref}", principal)
        if current.status != 200:
            return self.web.refused(current, session)
        kind = _shown_transformation(current.data["transformation"], {})["eventType"]
        renames, errors = _transformation_form(values, kind)
        if errors:
            return await self._transformation(
                request, session, principal, values=values, errors=errors, status=400
            )
        body: dict[str, Any] = {
            "name": values["name"].strip(),
            "enabled": values.get("enabled") == "on",
            "propertyRenames": renames,
        }
        new_event = values.get("new_event", "").strip()
        if new_event or "newEventName" in current.data["transformation"]:
            body["newEventName"] = new_event or None
        return await self._patch(
            request,
            session,
            principal,
            body,
            failed=lambda error: self._transformation(
                request,
                session,
                principal,
                values=values,
                errors=error,
                status=400,
            ),
        )

    async def toggle(self, request: Request, session: Session, principal: Principal) -> Response:
        """The list's enable / disable switch."""
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        body = {"enabled": form.get("enabled") == "true"}

        async def failed(error: dict[str, str]) -> Response:
            return await self._transformations(
                session, principal, values={}, errors=error, status=400
            )

        return await self._patch(request, session, principal, body, failed=failed)

    async def delete_transformation(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        if await self.web.posted_form(request, session) is None:
            return self.web.forbidden(session)
        ref = request.path_params["transformation"]
        answer = await self.api.call("DELETE", f"/api/v1/transformations/{ref}", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.see_other("/protocols/transformations")

    async def _patch(
        self,
        request: Request,
        session: Session,
        principal: Principal,
        body: dict[str, Any],
        *,
        failed: Callable[[dict[str, str]], Awaitable[Response]],
    ) -> Response:
        ref = request.path_params["transformation"]
        answer = await self.api.call(
            "PATCH", f"/api/v1/transformations/{ref}", principal, body=body
        )
        if answer.status in (403, 404):
            return self.web.refused(answer, session)
        if answer.status != 200:
            response = await failed({_transformation_field(answer.body): answer.error})
            response.status_code = answer.form_status
            return response
        return self.web.see_other("/protocols/transformations")


# --- shaping the API's answers for the pages ----------------------------------------------------


def _field(body: Any) -> str | None:
    try:
        found = body["errors"][0].get("field")
    except (KeyError, IndexError, TypeError, AttributeError):
        return None
    return str(found) if found else None


def _shown_rule(rule: dict[str, Any], index: int) -> dict[str, Any]:
    """A rule as the editor's row shows it: its identity, properties count and schema."""
    schema = rule.get("jsonSchema")
    return {
        **rule,
        "slot": str(index),
        "synced": rule.get("syncedFrom"),
        "properties": _properties_count(rule["type"], schema),
        "text": json.dumps(schema, indent=2, ensure_ascii=False),
    }


def _properties_count(kind: str, schema: Any) -> int:
    """How many properties (Track, Page, Screen), traits (Identify, Group) or top-level
    fields (Common) a rule plans."""
    if not isinstance(schema, dict):
        return 0
    inner = "traits" if kind in ("IDENTIFY", "GROUP") else "properties"
    node: Any = schema.get("properties", {})
    if kind != "COMMON":
        node = node.get(inner, {}) if isinstance(node, dict) else {}
        node = node.get("properties", {}) if isinstance(node, dict) else {}
    return len(node) if isinstance(node, dict) else 0


def _by_event(violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Violations grouped on their event (Track on ``event``, Page and Screen on ``name``),
    events with the most violations first."""
    events: dict[tuple[str, str], dict[str, Any]] = {}
    for v in violations:
        key = (v["eventType"], v["eventName"])
        group = events.setdefault(
            key, {"type": v["eventType"], "name": v["eventName"], "count": 0, "violations": []}
        )
        group["count"] += v["count"]
        group["violations"].append(
            {
                **v,
                "samples": [
                    json.dumps(s, indent=2, ensure_ascii=False, sort_keys=True)
                    for s in v.get("samples", [])
                ],
            }
        )
    return sorted(events.values(), key=lambda g: (-g["count"], g["name"]))


def _matcher(kind: str, event: str) -> str:
    """Segment's standard ``if`` for a transformation of one event."""
    if kind == "track":
        return "event='{}'".format(event.replace("\\", "\\\\").replace("'", "\\'"))
    return f"type='{kind}'"


def _transformation_form(
    values: dict[str, str], kind: str
) -> tuple[list[dict[str, str]], dict[str, str]]:
    """The renames a transformation form gives, and its errors (name, renames): adding and
    saving a transformation check them alike."""
    errors: dict[str, str] = {}
    if not values.get("name", "").strip():
        errors["name"] = "Enter a name."
    renames, problem = _renames(values.get("renames", ""), kind)
    if problem:
        errors["renames"] = problem
    return renames, errors


def _renames(text: str, kind: str) -> tuple[list[dict[str, str]], str | None]:
    """``old = new`` lines as the API's ``propertyRenames``, or the first bad line's error."""
    renames = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        old, sep, new = line.partition("=")
        if not sep or not old.strip() or not new.strip():
            return [], f"Line {number}: write each rename as old_name = new_name."
        renames.append({"oldName": _under(old.strip(), kind), "newName": _under(new.strip(), kind)})
    return renames, None


def _under(name: str, kind: str) -> str:
    """A property's path as the API takes it: below ``properties`` (Track) or ``traits``
    (Identify, Group) unless the person wrote the full path."""
    root = "properties" if kind == "track" else "traits"
    return name if name.startswith(("properties.", "traits.", "context.")) else f"{root}.{name}"


def _short(name: str) -> str:
    """A renamed property as the page shows it: without the ``properties.`` or ``traits.``."""
    return name.split(".", 1)[1] if name.startswith(("properties.", "traits.")) else name


def _shown_transformation(t: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    matched = standard_matcher(str(t.get("if", "")))
    kind, event = matched if matched is not None else ("", "")
    return {
        **t,
        "newEventName": t.get("newEventName"),
        "destinationMetadataId": t.get("destinationMetadataId"),
        "sourceName": names.get(t["sourceId"], t["sourceId"]),
        "renames": [
            {"old": _short(r["oldName"]), "new": _short(r["newName"])}
            for r in t.get("propertyRenames", [])
        ],
        "eventType": kind or "custom",
        "event": event,
    }


def _transformation_field(body: Any) -> str:
    """The create form's field an API error names."""
    field = _field(body) or ""
    if field.startswith("propertyRenames"):
        return "renames"
    return {
        "name": "name",
        "sourceId": "source",
        "if": "event",
        "newEventName": "new_event",
        "enabled": "enabled",
    }.get(field, "form")
