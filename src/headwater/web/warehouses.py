"""The Warehouses pages: the connections with their sources and last sync, adding one, and a
warehouse's page with its settings (secrets write-only), its sources, "Sync now" and the sync
history with each run's rows per table and notices.

Every read and change goes through ``/api/v1/warehouses`` in process; the API redacts secrets,
and the settings form never puts one back into the page: an empty secret field keeps the stored
value (the API keeps a secret sent as ``[redacted]``).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.iam.access import Principal
from headwater.warehouse.settings import KINDS, SECRETS
from headwater.web.sessions import Session
from headwater.web.settings_form import PREFIX, Field, settings_from_form, shown_fields

if TYPE_CHECKING:
    from headwater.web.app import WebApp

TYPES = tuple(sorted(KINDS))
SCHEDULES = (1, 2, 3, 4, 6, 8, 12, 24)  # syncs a day: Segment's choices divide the day evenly


class WarehousePages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.api = web.api

    def routes(self) -> list[Route]:
        return self.web.page_routes(
            "warehouses",
            [
                ("GET", "/warehouses", self.list_page),
                ("POST", "/warehouses", self.create),
                ("GET", "/warehouses/{warehouse}", self.warehouse_page),
                ("POST", "/warehouses/{warehouse}/settings", self.save_settings),
                ("POST", "/warehouses/{warehouse}/syncs", self.sync_now),
            ],
        )

    # --- the list, and adding a warehouse ---------------------------------------------------

    async def list_page(self, request: Request, session: Session, principal: Principal) -> Response:
        kind = request.query_params.get("type", "duckdb")
        if kind not in KINDS:
            kind = "duckdb"
        return await self._list(session, principal, kind=kind, form=None, errors={})

    async def create(self, request: Request, session: Session, principal: Principal) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        kind = str(form.get("type", ""))
        name = str(form.get("name", "")).strip()
        if kind not in KINDS:
            errors = {"type": f"Choose one of {', '.join(TYPES)}."}
            return await self._list(
                session, principal, kind="duckdb", form=form, errors=errors, status=400
            )
        if not name:
            return await self._list(
                session, principal, kind=kind, form=form, errors={"name": "Enter a name."}
            )
        settings, unread = settings_from_form(settings_schema(kind), form)
        if unread:
            errors = {PREFIX + key: message for key, message in unread.items()}
            return await self._list(
                session, principal, kind=kind, form=form, errors=errors, status=422
            )
        body = {"name": name, "type": kind, "settings": settings}
        answer = await self.api.call("POST", "/api/v1/warehouses", principal, body=body)
        if answer.status != 201:
            return await self._list(
                session,
                principal,
                kind=kind,
                form=form,
                errors={_field_of(answer.body): answer.error},
                status=answer.form_status,
            )
        return self.web.see_other(f"/warehouses/{answer.data['warehouse']['id']}")

    async def _list(
        self,
        session: Session,
        principal: Principal,
        *,
        kind: str,
        form: FormData | None,
        errors: dict[str, str],
        status: int = 200,
    ) -> Response:
        answer = await self.api.call("GET", "/api/v1/warehouses", principal)
        if answer.status != 200:
            return self.web.refused(answer, session)
        names = await self._source_names(principal)
        rows = []
        for warehouse in answer.data["warehouses"]:
            syncs = await self.api.call(
                "GET", f"/api/v1/warehouses/{warehouse['id']}/syncs", principal
            )
            found = syncs.data.get("syncs", []) if syncs.status == 200 else []
            rows.append(
                {
                    **warehouse,
                    "sources": connected_sources(warehouse, names),
                    "last": shown_sync(found[0]) if found else None,
                }
            )
        return self.web.render(
            "warehouses.html",
            {
                "warehouses": rows,
                "types": TYPES,
                "kind": kind,
                "fields": warehouse_fields(kind, {}, form, errors),
                "name": str(form.get("name", "")).strip() if form is not None else "",
                "errors": errors,
                "current": "/warehouses",
            },
            status=status if not errors else max(status, 400),
            session=session,
        )

    # --- one warehouse ----------------------------------------------------------------------

    async def warehouse_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._warehouse(request, session, principal, form=None, errors={})

    async def _warehouse(
        self,
        request: Request,
        session: Session,
        principal: Principal,
        *,
        form: FormData | None,
        errors: dict[str, str],
        status: int = 200,
    ) -> Response:
        ref = request.path_params["warehouse"]
        found = await self.api.call("GET", f"/api/v1/warehouses/{ref}", principal)
        if found.status != 200:
            return self.web.refused(found, session)
        warehouse = found.data["warehouse"]
        syncs = await self.api.call("GET", f"/api/v1/warehouses/{warehouse['id']}/syncs", principal)
        if syncs.status != 200:
            return self.web.refused(syncs, session)
        names = await self._source_names(principal)
        return self.web.render(
            "warehouse.html",
            {
                "warehouse": warehouse,
                "sources": connected_sources(warehouse, names),
                "all_sources": sorted(names.items(), key=lambda item: item[1].lower()),
                "taken": set(warehouse["options"].get("sources") or ()),
                "schedules": sorted({*SCHEDULES, warehouse["options"].get("syncs_per_day", 24)}),
                "syncs_per_day": warehouse["options"].get("syncs_per_day", 24),
                "fields": warehouse_fields(warehouse["type"], warehouse["settings"], form, errors),
                "errors": errors,
                "syncs": [shown_sync(s) for s in syncs.data["syncs"]],
                "requested": request.query_params.get("synced"),
                "saved": request.query_params.get("saved") == "1",
                "may_change": principal.allows("warehouses", True),
                "current": "/warehouses",
            },
            status=status if not errors else max(status, 400),
            session=session,
        )

    async def save_settings(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        ref = request.path_params["warehouse"]
        found = await self.api.call("GET", f"/api/v1/warehouses/{ref}", principal)
        if found.status != 200:
            return self.web.refused(found, session)
        warehouse = found.data["warehouse"]
        # A secret left blank is left out, and the API keeps the stored one.
        settings, unread = settings_from_form(settings_schema(warehouse["type"]), form)
        if unread:
            errors = {PREFIX + key: message for key, message in unread.items()}
            return await self._warehouse(
                request, session, principal, form=form, errors=errors, status=422
            )
        body = {
            "settings": settings,
            "enabled": form.get("enabled") == "on",
            "options": await self._options_of(form, warehouse, principal),
        }
        answer = await self.api.call(
            "PATCH", f"/api/v1/warehouses/{warehouse['id']}", principal, body=body
        )
        if answer.status != 200:
            return await self._warehouse(
                request,
                session,
                principal,
                form=form,
                errors={_field_of(answer.body): answer.error},
                status=answer.form_status,
            )
        return self.web.see_other(f"/warehouses/{warehouse['id']}?saved=1")

    async def sync_now(self, request: Request, session: Session, principal: Principal) -> Response:
        """Segment's "Sync now": the worker takes the request up within seconds."""
        if await self.web.posted_form(request, session) is None:
            return self.web.forbidden(session)
        ref = request.path_params["warehouse"]
        answer = await self.api.call("POST", f"/api/v1/warehouses/{ref}/syncs", principal, body={})
        if answer.status != 202:
            return self.web.refused(answer, session)
        found = await self.api.call("GET", f"/api/v1/warehouses/{ref}", principal)
        target = found.data["warehouse"]["id"] if found.status == 200 else ref
        return self.web.see_other(f"/warehouses/{target}?synced={answer.data['sync']['id']}")

    async def _options_of(
        self, form: FormData, warehouse: dict[str, Any], principal: Principal
    ) -> dict[str, Any]:
        """The warehouse's options with the form's schedule and sources; the rest (schema
        names, Selective Sync) kept. Sources change only where the role may read them."""
        options = dict(warehouse["options"])
        schedule = form.get("syncs_per_day")
        if schedule is not None:
            text = str(schedule)
            options["syncs_per_day"] = int(text) if text.isdigit() and len(text) < 6 else text
        if principal.allows("sources", False) and "sources_shown" in form:
            if form.get("sources_all") == "on":
                options.pop("sources", None)
            else:
                options["sources"] = [str(v) for v in form.getlist("source")]
        return options

    async def _source_names(self, principal: Principal) -> dict[str, str]:
        """Source names by id, where the role may read sources (otherwise the ids show)."""
        if not principal.allows("sources", False):
            return {}
        answer = await self.api.call(
            "GET", "/api/v1/sources", principal, params={"pagination.count": 1000}
        )
        return {s["id"]: s["name"] for s in answer.data.get("sources", [])}


def settings_schema(kind: str) -> dict[str, Any]:
    """A kind's settings as JSON Schema, its secrets ``writeOnly``: the form destinations'
    definitions generate then serves warehouses too."""
    model = KINDS.get(kind)
    if model is None:
        return {"properties": {}}
    schema = model.model_json_schema()
    for name in SECRETS.get(kind, frozenset()):
        schema["properties"][name]["writeOnly"] = True
    return schema


def warehouse_fields(
    kind: str, stored: dict[str, Any], form: FormData | None, errors: dict[str, str]
) -> list[Field]:
    """The settings form's fields: the stored settings (a secret only says it is set), or what
    a refused form posted, each with its error."""
    is_set = frozenset(k for k in SECRETS.get(kind, ()) if stored.get(k) not in (None, ""))
    by_setting = {k.removeprefix(PREFIX): v for k, v in errors.items() if k.startswith(PREFIX)}
    return shown_fields(settings_schema(kind), stored, form, by_setting, stored_secrets=is_set)


def connected_sources(warehouse: dict[str, Any], names: dict[str, str]) -> list[str] | None:
    """The sources a warehouse takes, by name where known; None: every source."""
    sources = warehouse["options"].get("sources")
    if sources is None:
        return None
    return [names.get(s, s) for s in sources]


def shown_sync(run: dict[str, Any]) -> dict[str, Any]:
    """A sync run as a history row: when, status, duration, rows in all and per table."""
    tables = [
        {"schema": schema, "table": table, "rows": int(count)}
        for schema, per_table in sorted((run.get("rows") or {}).items())
        for table, count in sorted(per_table.items())
    ]
    return {
        "id": run["id"],
        "trigger": run.get("trigger", ""),
        "status": run["status"],
        "startedAt": run["startedAt"],
        "duration": _duration(run["startedAt"], run.get("finishedAt")),
        "rows": sum(t["rows"] for t in tables),
        "tables": tables,
        "notices": list(run.get("notices") or []),
        "error": run.get("error"),
    }


def _duration(started: str, finished: str | None) -> str:
    if not finished:
        return ""
    try:
        seconds = int(
            (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
        )
    except ValueError:
        return ""
    minutes, seconds = divmod(max(seconds, 0), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _field_of(body: Any) -> str:
    """The form field an API error names: ``settings.host`` → ``setting.host``; else ``name``."""
    try:
        field = str(body["errors"][0].get("field") or "")
    except (KeyError, IndexError, TypeError, AttributeError):
        return "form"
    if field.startswith("settings."):
        return PREFIX + field.removeprefix("settings.")
    if field.startswith("options.syncs_per_day"):
        return "syncs_per_day"
    if field.startswith("options.sources"):
        return "sources"
    return field if field in ("name", "type") else "form"
