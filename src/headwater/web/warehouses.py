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
from headwater.store.instances import REDACTED
from headwater.warehouse.settings import KINDS, SECRETS
from headwater.web.sessions import Session

if TYPE_CHECKING:
    from headwater.web.app import Endpoint, Page, WebApp

TYPES = tuple(sorted(KINDS))
SCHEDULES = (1, 2, 3, 4, 6, 8, 12, 24)  # syncs a day: Segment's choices divide the day evenly


class WarehousePages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.api = web.api

    def routes(self) -> list[Route]:
        def page(handler: Page) -> Endpoint:
            return self.web.signed_in(handler, "warehouses")

        return [
            Route("/warehouses", page(self.list_page), methods=["GET"]),
            Route("/warehouses", page(self.create), methods=["POST"]),
            Route("/warehouses/{warehouse}", page(self.warehouse_page), methods=["GET"]),
            Route("/warehouses/{warehouse}/settings", page(self.save_settings), methods=["POST"]),
            Route("/warehouses/{warehouse}/syncs", page(self.sync_now), methods=["POST"]),
        ]

    # --- the list, and adding a warehouse ---------------------------------------------------

    async def list_page(self, request: Request, session: Session, principal: Principal) -> Response:
        kind = request.query_params.get("type", "duckdb")
        if kind not in KINDS:
            kind = "duckdb"
        return await self._list(session, principal, kind=kind, values={}, errors={})

    async def create(self, request: Request, session: Session, principal: Principal) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        kind = str(form.get("type", ""))
        name = str(form.get("name", "")).strip()
        values = {"name": name, **{k: str(v) for k, v in form.items() if k.startswith("s_")}}
        if kind not in KINDS:
            errors = {"type": f"Choose one of {', '.join(TYPES)}."}
            return await self._list(
                session, principal, kind="duckdb", values=values, errors=errors, status=400
            )
        if not name:
            return await self._list(
                session, principal, kind=kind, values=values, errors={"name": "Enter a name."}
            )
        body = {"name": name, "type": kind, "settings": settings_of(form, kind, {})}
        answer = await self.api.call("POST", "/api/v1/warehouses", principal, body=body)
        if answer.status != 201:
            return await self._list(
                session,
                principal,
                kind=kind,
                values=values,
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
        values: dict[str, str],
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
                "fields": setting_fields(kind, {}),
                "values": values,
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
        return await self._warehouse(request, session, principal, values=None, errors={})

    async def _warehouse(
        self,
        request: Request,
        session: Session,
        principal: Principal,
        *,
        values: dict[str, str] | None,
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
                "fields": setting_fields(warehouse["type"], warehouse["settings"]),
                "values": values or {},
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
        body = {
            "settings": settings_of(form, warehouse["type"], warehouse["settings"]),
            "enabled": form.get("enabled") == "on",
            "options": await self._options_of(form, warehouse, principal),
        }
        answer = await self.api.call(
            "PATCH", f"/api/v1/warehouses/{warehouse['id']}", principal, body=body
        )
        if answer.status != 200:
            values = {k: str(v) for k, v in form.items() if k.startswith("s_")}
            return await self._warehouse(
                request,
                session,
                principal,
                values=values,
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


def setting_fields(kind: str, shown: dict[str, Any]) -> list[dict[str, Any]]:
    """The settings form's fields for a kind: name, whether secret or required, and the value
    to show (never a secret's: a secret field says only whether one is set)."""
    model = KINDS.get(kind)
    if model is None:
        return []
    secrets = SECRETS.get(kind, frozenset())
    fields = []
    for name, info in model.model_fields.items():
        secret = name in secrets
        value = shown.get(name)
        fields.append(
            {
                "name": name,
                "label": name.replace("_", " ").capitalize(),
                "secret": secret,
                "required": info.is_required(),
                "is_set": secret and value not in (None, ""),
                "value": "" if secret or value is None else str(value),
            }
        )
    return fields


def settings_of(form: FormData, kind: str, shown: dict[str, Any]) -> dict[str, Any]:
    """The settings a form sends: empty fields left out, an empty secret kept as stored."""
    secrets = SECRETS.get(kind, frozenset())
    model = KINDS.get(kind)
    settings: dict[str, Any] = {}
    for name in model.model_fields if model is not None else ():
        value = str(form.get(f"s_{name}", "")).strip()
        if value:
            settings[name] = value
        elif name in secrets and shown.get(name) == REDACTED:
            settings[name] = REDACTED  # the API keeps the stored secret
    return settings


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
    """The form field an API error names: ``settings.host`` → ``s_host``; else ``name``."""
    try:
        field = str(body["errors"][0].get("field") or "")
    except (KeyError, IndexError, TypeError, AttributeError):
        return "form"
    if field.startswith("settings."):
        return "s_" + field.removeprefix("settings.")
    if field.startswith("options.syncs_per_day"):
        return "syncs_per_day"
    if field.startswith("options.sources"):
        return "sources"
    return field if field in ("name", "type") else "form"
