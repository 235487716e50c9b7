"""A destination's filters (Segment's destination filters): the list, and an editor for the
FQL ``if`` and the actions (drop, sample, drop properties, allow properties) with a live
preview on the source's recent events.

The preview runs the filter being written through the API's ``POST /api/v1/filters/preview``
on each of the source's newest debugger events (as the reader may see them: masked without
PII Access), so it evaluates exactly as delivery will. Without JavaScript the editor's
Preview button shows it; with it, ``static/filters.js`` asks for it as the FQL is typed.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from headwater.iam.access import Principal
from headwater.web.destinations import delete_part, destination_of
from headwater.web.inprocess import Answer
from headwater.web.sessions import Session

if TYPE_CHECKING:
    from headwater.web.app import WebApp

PREVIEW_EVENTS = 20  # the source's newest debugger events a preview evaluates
# The editor's action checkboxes in Segment's order (the order the filter applies them).
ACTIONS: tuple[tuple[str, str, str], ...] = (
    ("sample", "SAMPLE", "Sample: keep only a share of the matching events"),
    ("drop", "DROP", "Drop: the matching events do not reach the destination"),
    ("drop_properties", "DROP_PROPERTIES", "Drop properties: remove these fields"),
    ("allow_properties", "ALLOW_PROPERTIES", "Allow properties: send only these fields"),
)
_BY_TYPE = {type_: key for key, type_, _label in ACTIONS}
_NAME = re.compile(r"^[A-Za-z0-9_$-]+(?:\.[A-Za-z0-9_$-]+)*$")


class FilterPages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.api = web.api

    def routes(self) -> list[Route]:
        base = "/destinations/{destination}/filters"
        return self.web.page_routes(
            "sources",
            [
                ("GET", base, self.list_page),
                ("POST", base, self.create),
                ("GET", base + "/new", self.new_page),
                ("POST", base + "/preview", self.live_preview),
                ("GET", base + "/{filter}", self.edit_page),
                ("POST", base + "/{filter}", self.update),
                ("POST", base + "/{filter}/enabled", self.toggle),
                ("POST", base + "/{filter}/delete", self.delete),
            ],
        )

    # --- the list ----------------------------------------------------------------------------

    async def list_page(self, request: Request, session: Session, principal: Principal) -> Response:
        destination = await destination_of(self.api, request, principal)
        if destination.status != 200:
            return self.web.refused(destination, session)
        found = destination.data["destination"]
        answer = await self.api.call(
            "GET", f"/api/v1/destinations/{found['id']}/filters", principal
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        filters = [{**f, "summary": _summary(f.get("actions", []))} for f in answer.data["filters"]]
        params = request.query_params
        notice = None
        if params.get("saved") == "1":
            notice = "Filter saved."
        elif params.get("deleted") == "1":
            notice = "Filter deleted."
        return self.web.render(
            "filters.html",
            {
                "destination": found,
                "filters": filters,
                "notice": notice,
                "current": "/destinations",
            },
            session=session,
        )

    async def toggle(self, request: Request, session: Session, principal: Principal) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        ref, filter_id = request.path_params["destination"], request.path_params["filter"]
        answer = await self.api.call(
            "PATCH",
            f"/api/v1/destinations/{ref}/filters/{filter_id}",
            principal,
            body={"enabled": form.get("enabled") == "1"},
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.see_other(f"/destinations/{answer.data['filter']['destinationId']}/filters")

    async def delete(self, request: Request, session: Session, principal: Principal) -> Response:
        return await delete_part(self.web, request, session, principal, "filters")

    # --- the editor --------------------------------------------------------------------------

    async def new_page(self, request: Request, session: Session, principal: Principal) -> Response:
        destination = await destination_of(self.api, request, principal)
        if destination.status != 200:
            return self.web.refused(destination, session)
        shown = _form_of({"if": "", "actions": [{"type": "DROP"}], "enabled": True})
        return self._editor(session, destination.data["destination"], None, shown)

    async def edit_page(self, request: Request, session: Session, principal: Principal) -> Response:
        destination = await destination_of(self.api, request, principal)
        if destination.status != 200:
            return self.web.refused(destination, session)
        found = destination.data["destination"]
        filter_id = request.path_params["filter"]
        answer = await self.api.call(
            "GET", f"/api/v1/destinations/{found['id']}/filters/{filter_id}", principal
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        shown = _form_of(answer.data["filter"])
        events = await self._recent(found, principal)
        preview = await self._preview(principal, answer.data["filter"], events)
        return self._editor(session, found, filter_id, shown, preview=preview)

    async def create(self, request: Request, session: Session, principal: Principal) -> Response:
        return await self._save(request, session, principal, None)

    async def update(self, request: Request, session: Session, principal: Principal) -> Response:
        return await self._save(request, session, principal, request.path_params["filter"])

    async def _save(
        self, request: Request, session: Session, principal: Principal, filter_id: str | None
    ) -> Response:
        """Save, or (the Preview button) show what the filter would do, keeping the form."""
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        destination = await destination_of(self.api, request, principal)
        if destination.status != 200:
            return self.web.refused(destination, session)
        found = destination.data["destination"]
        shown = _typed(form)
        body, errors = _filter_of(form)
        if errors:
            return self._editor(session, found, filter_id, shown, errors=errors, status=400)
        if form.get("action") == "preview":
            preview = await self._preview(principal, body, await self._recent(found, principal))
            status = 400 if preview["errors"] else 200
            return self._editor(
                session,
                found,
                filter_id,
                shown,
                errors=preview["errors"],
                preview=preview,
                status=status,
            )
        path = f"/api/v1/destinations/{found['id']}/filters"
        if filter_id is None:
            answer = await self.api.call("POST", path, principal, body=body)
        else:
            answer = await self.api.call("PATCH", f"{path}/{filter_id}", principal, body=body)
        if answer.status not in (200, 201):
            if answer.status in (403, 404):
                return self.web.refused(answer, session)
            return self._editor(
                session,
                found,
                filter_id,
                shown,
                errors=_errors_of(answer),
                status=answer.form_status,
            )
        return self.web.see_other(f"/destinations/{found['id']}/filters?saved=1")

    def _editor(
        self,
        session: Session,
        destination: dict[str, Any],
        filter_id: str | None,
        shown: dict[str, Any],
        *,
        errors: dict[str, str] | None = None,
        preview: dict[str, Any] | None = None,
        status: int = 200,
    ) -> Response:
        return self.web.render(
            "filter.html",
            {
                "destination": destination,
                "filter_id": filter_id,
                "shown": shown,
                "actions": ACTIONS,
                "errors": errors or {},
                "preview": preview,
                "current": "/destinations",
            },
            status=status,
            session=session,
        )

    # --- the live preview --------------------------------------------------------------------

    async def live_preview(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        """The preview as JSON for ``filters.js``: the errors by field and the preview's HTML."""
        form = await self.web.posted_form(request, session)
        if form is None:
            return JSONResponse({"errors": {"form": "The form expired; reload."}}, status_code=403)
        destination = await destination_of(self.api, request, principal)
        if destination.status != 200:
            return JSONResponse(
                {"errors": {"form": destination.error}}, status_code=destination.form_status
            )
        body, errors = _filter_of(form)
        preview: dict[str, Any] | None = None
        if not errors:
            found = destination.data["destination"]
            preview = await self._preview(principal, body, await self._recent(found, principal))
            errors = preview["errors"]
        template = self.web.templates.get_template("_filter_preview.html")
        html = template.render(preview=preview if not errors else None)
        return JSONResponse({"errors": errors, "html": html}, headers={"cache-control": "no-store"})

    async def _recent(self, destination: dict[str, Any], principal: Principal) -> list[Any]:
        """The source's newest events the Tracking API accepted, as the reader may see them."""
        answer = await self.api.call(
            "GET",
            f"/api/v1/sources/{destination['sourceId']}/debugger",
            principal,
            params={"limit": PREVIEW_EVENTS},
        )
        if answer.status != 200:
            return []
        return [
            e
            for e in answer.data.get("events", [])
            if e.get("status") == "accepted" and isinstance(e.get("message"), dict)
        ]

    async def _preview(
        self, principal: Principal, body: dict[str, Any], events: list[Any]
    ) -> dict[str, Any]:
        """Each event and what the filter does to it: kept, dropped (why) or changed (which
        fields go); ``errors``: the API's refusal of the filter, by field."""
        rows: list[dict[str, Any]] = []
        errors: dict[str, str] = {}
        sent = {"if": body.get("if", ""), "actions": body.get("actions", [])}
        if not sent["if"]:
            return {"rows": [], "errors": {}, "count": len(events), "dropped": 0}
        for entry in events:
            message = entry["message"]
            answer = await self.api.call(
                "POST",
                "/api/v1/filters/preview",
                principal,
                body={"filter": sent, "payload": message},
            )
            if answer.status != 200:
                errors = _errors_of(answer)
                break
            rows.append(_row(entry, answer.data))
        if not events and sent["if"]:  # still check the statement with an empty event
            answer = await self.api.call(
                "POST", "/api/v1/filters/preview", principal, body={"filter": sent, "payload": {}}
            )
            if answer.status != 200:
                errors = _errors_of(answer)
        return {
            "rows": rows if not errors else [],
            "errors": errors,
            "count": len(events),
            "dropped": sum(1 for r in rows if r["outcome"] == "dropped"),
        }


# --- forms -----------------------------------------------------------------------------------


def _form_of(found: dict[str, Any]) -> dict[str, Any]:
    """A stored filter as the editor's fields."""
    shown: dict[str, Any] = {
        "title": found.get("title", ""),
        "description": found.get("description", ""),
        "if": found.get("if", ""),
        "enabled": found.get("enabled", True),
        "checked": set(),
        "sample_percent": "",
        "sample_path": "",
        "drop_properties": "",
        "allow_properties": "",
    }
    for action in found.get("actions", []):
        key = _BY_TYPE.get(str(action.get("type")))
        if key is None:
            continue
        shown["checked"].add(key)
        if key == "sample":
            shown["sample_percent"] = _percent_text(action.get("percent"))
            shown["sample_path"] = action.get("path") or ""
        elif key in ("drop_properties", "allow_properties"):
            shown[key] = _fields_text(action.get("fields") or {})
    return shown


def _typed(form: FormData) -> dict[str, Any]:
    """The form as it was sent, to show it again."""
    text = {
        k: str(form.get(k, ""))
        for k in (
            "title",
            "description",
            "if",
            "sample_percent",
            "sample_path",
            "drop_properties",
            "allow_properties",
        )
    }
    return {
        **text,
        "enabled": form.get("enabled") == "1",
        "checked": {key for key, _t, _l in ACTIONS if form.get(f"action_{key}") == "1"},
    }


def _filter_of(form: FormData) -> tuple[dict[str, Any], dict[str, str]]:
    """The filter the API takes, from the editor's fields, or the errors by field."""
    typed = _typed(form)
    errors: dict[str, str] = {}
    statement = typed["if"].strip()
    if not statement:
        errors["if"] = 'Enter an FQL statement, such as event = "Order Completed", or all.'
    actions: list[dict[str, Any]] = []
    for key, type_, _label in ACTIONS:
        if key not in typed["checked"]:
            continue
        action: dict[str, Any] = {"type": type_}
        if key == "sample":
            try:
                percent = float(typed["sample_percent"].strip().rstrip("%"))
            except ValueError:
                errors["sample"] = "Enter the share of events to keep, from 0 to 100 (%)."
                continue
            if not 0 <= percent <= 100:
                errors["sample"] = "Enter the share of events to keep, from 0 to 100 (%)."
                continue
            action["percent"] = round(percent / 100, 6)
            if typed["sample_path"].strip():
                action["path"] = typed["sample_path"].strip()
        elif key in ("drop_properties", "allow_properties"):
            fields, problem = _fields_of(typed[key])
            if problem:
                errors[key] = problem
                continue
            action["fields"] = fields
        actions.append(action)
    if not typed["checked"]:
        errors["actions"] = "Choose at least one action."
    body = {
        "title": typed["title"].strip(),
        "description": typed["description"].strip(),
        "if": statement,
        "actions": actions,
        "enabled": typed["enabled"],
    }
    return body, errors


def _fields_of(text: str) -> tuple[dict[str, list[str]], str | None]:
    """``properties.email, context.ip, userId`` as Segment's fields: ``{"properties":
    ["email"], "context": ["ip"], "": ["userId"]}``."""
    fields: dict[str, list[str]] = {}
    names = [n.strip() for n in re.split(r"[,\n]", text) if n.strip()]
    if not names:
        return {}, "List the fields, separated by commas (properties.email, context.ip)."
    for name in names:
        if not _NAME.match(name):
            return {}, f"{name!r} is not a field path (properties.email, context.ip, userId)."
        path, _, key = name.rpartition(".")
        fields.setdefault(path, [])
        if key not in fields[path]:
            fields[path].append(key)
    return fields, None


def _fields_text(fields: dict[str, list[str]]) -> str:
    return ", ".join(
        f"{path}.{key}" if path else key for path, keys in fields.items() for key in keys
    )


def _percent_text(percent: Any) -> str:
    if not isinstance(percent, int | float):
        return ""
    return f"{percent * 100:g}"


def _errors_of(answer: Answer) -> dict[str, str]:
    """The API's refusal by the editor's field it concerns."""
    try:
        field = str(answer.body["errors"][0].get("field") or "")
    except (KeyError, IndexError, TypeError, AttributeError):
        field = ""
    message = re.sub(r"^(\[\d+\]|filter)\.[\w.]*: ", "", answer.error)
    parts = field.split(".")
    for prefix in (["filters", "0"], ["filter"], ["body"]):
        if parts[: len(prefix)] == prefix:
            parts = parts[len(prefix) :]
            break
    if parts[:1] == ["if"]:
        return {"if": message}
    if parts[:1] in (["title"], ["description"]):
        return {parts[0]: message}
    if parts[:1] == ["actions"]:
        return {"actions": message}
    return {"form": message}


def _summary(actions: list[dict[str, Any]]) -> str:
    """The actions in a few words, for the list."""
    said = []
    for action in actions:
        type_ = action.get("type")
        if type_ == "DROP":
            said.append("Drop the event")
        elif type_ == "SAMPLE":
            said.append(f"Sample {_percent_text(action.get('percent'))}%")
        elif type_ == "DROP_PROPERTIES":
            said.append("Drop " + _fields_text(action.get("fields") or {}))
        elif type_ == "ALLOW_PROPERTIES":
            said.append("Allow only " + _fields_text(action.get("fields") or {}))
    return "; ".join(said)


def _row(entry: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    message = entry["message"]
    label = message.get("event") or message.get("name") or ""
    outcome, detail = "kept", ""
    if result.get("dropped"):
        outcome, detail = "dropped", str(result.get("reason") or "")
    else:
        removed = _removed(message, result.get("result") or {})
        if removed:
            outcome, detail = "changed", "without " + ", ".join(removed)
    return {
        "kind": str(message.get("type", "")),
        "label": str(label),
        "receivedAt": entry.get("receivedAt", ""),
        "outcome": outcome,
        "detail": detail,
        "json": json.dumps(message, indent=2, ensure_ascii=False, sort_keys=True),
    }


def _removed(before: Any, after: Any, path: str = "") -> list[str]:
    """The fields of ``before`` that ``after`` lacks, as dotted paths."""
    if not isinstance(before, dict) or not isinstance(after, dict):
        return []
    gone: list[str] = []
    for key, value in before.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in after:
            gone.append(where)
        else:
            gone.extend(_removed(value, after[key], where))
    return gone
