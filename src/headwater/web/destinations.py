"""The Destinations pages: the workspace's destinations, the catalog with search and categories,
adding one with a settings form generated from its definition, a destination's overview and
settings, and its Event Delivery (a chart per hour, error groups with samples, Replay).

Every read and change goes through the REST API in process (``/api/v1/destinations``,
``/api/v1/catalog/destinations``, ``/api/v1/overview``), so its checks, errors, PII masking of
delivery samples and audit records hold here too.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.iam.access import Principal
from headwater.web.charts import Series, stacked_bars
from headwater.web.inprocess import Answer, InProcessAPI
from headwater.web.sessions import Session
from headwater.web.settings_form import settings_from_form, shown_fields

if TYPE_CHECKING:
    from headwater.web.app import WebApp

REDACTED = "[redacted]"
DELIVERY_RANGES = (1, 6, 24, 72, 168)  # hours Event Delivery can show

# Segment's catalog categories, read from a definition's type, name and description: the
# definitions do not carry one, and a catalog of 200 is only browsable by kind.
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Raw Data", ("webhook", "s3", "kafka", "kinesis", "eventbridge", "sftp", "sheets", "noop")),
    ("Audiences", ("audience", "cohort", "lists", "static-lists")),
    (
        "Advertising",
        ("conversion", "capi", "ads", "criteo", "tiktok", "pinterest", "reddit", "snap", "dv360"),
    ),
    ("Analytics", ("analytics", "amplitude", "mixpanel", "heap", "posthog", "june", "clearbrain")),
    ("Email Marketing", ("email", "sendgrid", "klaviyo", "mailchimp", "loops", "drip", "sfmc")),
    ("SMS & Push Notifications", ("sms", "push", "twilio", "airship", "pushwoosh", "courier")),
    ("CRM", ("crm", "salesforce", "hubspot", "pipedrive", "close", "attio", "intercom")),
    ("A/B Testing", ("optimizely", "launchdarkly", "kameleoon", "absmartly", "experiment")),
    ("Messaging", ("slack", "lark")),
    ("Surveys", ("survey", "qualtrics", "sprig", "survicate")),
    ("Functions", ("function:",)),
)
OTHER = "Other"


async def destination_of(api: InProcessAPI, request: Request, principal: Principal) -> Answer:
    """The destination the page's path names, as the API answers it (a 403 or 404 is the
    page's): the destination's own pages, its filters and its mappings load it alike."""
    ref = request.path_params["destination"]
    return await api.call("GET", f"/api/v1/destinations/{ref}", principal)


async def definition_of(
    api: InProcessAPI, principal: Principal, type_: str
) -> tuple[Answer, dict[str, Any] | None]:
    """The catalog's entry for ``type_`` (its settings and actions; None when there is none),
    and the answer."""
    # The type as the search: the catalog answers the few entries that mention it, not
    # all two hundred with their settings and actions.
    answer = await api.call(
        "GET", "/api/v1/catalog/destinations", principal, params={"search": type_}
    )
    found = next((d for d in answer.data.get("destinations", []) if d["type"] == type_), None)
    return answer, found


async def delete_part(
    web: WebApp, request: Request, session: Session, principal: Principal, part: str
) -> Response:
    """Delete one of a destination's filters or mappings (``part``), then back to their list:
    both pages' Delete buttons post here alike."""
    if await web.posted_form(request, session) is None:
        return web.forbidden(session)
    ref, item = request.path_params["destination"], request.path_params[part.removesuffix("s")]
    answer = await web.api.call("DELETE", f"/api/v1/destinations/{ref}/{part}/{item}", principal)
    if answer.status != 200:
        return web.refused(answer, session)
    return web.see_other(f"/destinations/{ref}/{part}?deleted=1")


def category(definition: dict[str, Any]) -> str:
    text = " ".join((definition["type"], definition["name"], definition["description"])).lower()
    for name, words in CATEGORIES:
        if any(word in text for word in words):
            return name
    return OTHER


class DestinationPages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.api = web.api

    def routes(self) -> list[Route]:
        return self.web.page_routes(
            "sources",
            [
                ("GET", "/destinations", self.list_page),
                ("GET", "/destinations/catalog", self.catalog_page),
                ("GET", "/destinations/catalog/{type}", self.add_page),
                ("POST", "/destinations/catalog/{type}", self.create),
                ("GET", "/destinations/{destination}", self.destination_page),
                ("POST", "/destinations/{destination}", self.update),
                ("POST", "/destinations/{destination}/enabled", self.enable),
                ("GET", "/destinations/{destination}/delivery", self.delivery_page),
                ("POST", "/destinations/{destination}/replay", self.replay),
            ],
        )

    # --- the list ---------------------------------------------------------------------------

    async def list_page(self, request: Request, session: Session, principal: Principal) -> Response:
        answer = await self.api.call("GET", "/api/v1/overview", principal, params={"hours": 24})
        if answer.status != 200:
            return self.web.refused(answer, session)
        names = {s["id"]: s["name"] for s in answer.data["sources"]}
        return self.web.render(
            "destinations.html",
            {
                "destinations": answer.data["destinations"],
                "source_names": names,
                "current": "/destinations",
            },
            session=session,
        )

    # --- the catalog ------------------------------------------------------------------------

    async def catalog_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        search = request.query_params.get("q", "").strip()[:200]
        chosen = request.query_params.get("category", "")
        params: dict[str, Any] = {"brief": "true", **({"search": search} if search else {})}
        answer = await self.api.call(
            "GET", "/api/v1/catalog/destinations", principal, params=params
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        entries = [
            {
                "type": d["type"],
                "name": d["name"],
                "kind": d["kind"],
                "description": d["description"],
                "category": category(d),
            }
            for d in answer.data["destinations"]
        ]
        categories = sorted({e["category"] for e in entries} | ({chosen} if chosen else set()))
        if chosen:
            entries = [e for e in entries if e["category"] == chosen]
        return self.web.render(
            "catalog.html",
            {
                "entries": entries,
                "search": search,
                "category": chosen,
                "categories": categories,
                "current": "/destinations",
            },
            session=session,
        )

    # --- adding a destination ---------------------------------------------------------------

    async def add_page(self, request: Request, session: Session, principal: Principal) -> Response:
        return await self._add_form(request, session, principal, form=None, error=None)

    async def create(self, request: Request, session: Session, principal: Principal) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        answer, definition = await definition_of(self.api, principal, request.path_params["type"])
        if answer.status != 200:
            return self.web.refused(answer, session)
        if definition is None:
            return self._no_such_type(session)
        name = str(form.get("name", "")).strip()
        source = str(form.get("source", "")).strip()
        settings, errors = settings_from_form(definition["settings"], form)
        problem = None
        if not name:
            problem = "Enter a name."
        elif not source:
            problem = "Choose a source."
        elif errors:
            problem = "Some settings could not be read; see the fields marked below."
        if problem is not None:
            return await self._add_form(
                request, session, principal, form=form, error=problem, errors=errors
            )
        created = await self.api.call(
            "POST",
            "/api/v1/destinations",
            principal,
            body={"name": name, "type": definition["type"], "source": source, "settings": settings},
        )
        if created.status != 201:
            if created.status == 403:
                return self.web.refused(created, session)
            return await self._add_form(
                request,
                session,
                principal,
                form=form,
                error=created.error,
                status=created.form_status,
            )
        return self.web.see_other(f"/destinations/{created.data['destination']['id']}")

    async def _add_form(
        self,
        request: Request,
        session: Session,
        principal: Principal,
        *,
        form: FormData | None,
        error: str | None,
        errors: dict[str, str] | None = None,
        status: int = 400,
    ) -> Response:
        answer, definition = await definition_of(self.api, principal, request.path_params["type"])
        if answer.status != 200:
            return self.web.refused(answer, session)
        if definition is None:
            return self._no_such_type(session)
        sources = await self.api.call("GET", "/api/v1/sources", principal)
        if sources.status != 200:
            return self.web.refused(sources, session)
        fields = shown_fields(definition["settings"], None, form, errors)
        return self.web.render(
            "destination_add.html",
            {
                "definition": definition,
                "sources": sources.data["sources"],
                "fields": fields,
                "name": str(form.get("name", "")) if form is not None else definition["name"],
                "source": str(form.get("source", "")) if form is not None else "",
                "error": error,
                "current": "/destinations",
            },
            status=200 if error is None else status,
            session=session,
        )

    def _no_such_type(self, session: Session) -> Response:
        return self.web.render(
            "message.html",
            {
                "title": "Not found",
                "message": "The catalog has no destination of this type.",
                "path": "/destinations/catalog",
            },
            status=404,
            session=session,
        )

    # --- one destination --------------------------------------------------------------------

    async def destination_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._overview(request, session, principal, form=None, error=None)

    async def update(self, request: Request, session: Session, principal: Principal) -> Response:
        """Save the settings: a blank secret keeps its stored value (the API keeps a secret an
        update leaves out)."""
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        found = await destination_of(self.api, request, principal)
        if found.status != 200:
            return self.web.refused(found, session)
        destination = found.data["destination"]
        answer, definition = await definition_of(self.api, principal, destination["type"])
        if answer.status != 200:
            return self.web.refused(answer, session)
        schema = definition["settings"] if definition is not None else {"properties": {}}
        settings, errors = settings_from_form(schema, form)
        name = str(form.get("name", "")).strip()
        if not name or errors:
            problem = "Enter a name." if not name else "Some settings could not be read."
            return await self._overview(
                request, session, principal, form=form, error=problem, errors=errors
            )
        changed = await self.api.call(
            "PATCH",
            f"/api/v1/destinations/{destination['id']}",
            principal,
            body={"name": name, "settings": settings} if definition is not None else {"name": name},
        )
        if changed.status != 200:
            if changed.status == 403:
                return self.web.refused(changed, session)
            return await self._overview(
                request,
                session,
                principal,
                form=form,
                error=changed.error,
                status=changed.form_status,
            )
        return self.web.see_other(f"/destinations/{destination['id']}?saved=1")

    async def enable(self, request: Request, session: Session, principal: Principal) -> Response:
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        destination = request.path_params["destination"]
        enabled = form.get("enabled") == "true"
        answer = await self.api.call(
            "PATCH", f"/api/v1/destinations/{destination}", principal, body={"enabled": enabled}
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        return self.web.see_other(f"/destinations/{answer.data['destination']['id']}")

    async def _overview(
        self,
        request: Request,
        session: Session,
        principal: Principal,
        *,
        form: FormData | None,
        error: str | None,
        errors: dict[str, str] | None = None,
        status: int = 400,
    ) -> Response:
        found = await destination_of(self.api, request, principal)
        if found.status != 200:
            return self.web.refused(found, session)
        destination = found.data["destination"]
        answer, definition = await definition_of(self.api, principal, destination["type"])
        if answer.status != 200:
            return self.web.refused(answer, session)
        overview = await self.api.call("GET", "/api/v1/overview", principal, params={"hours": 24})
        if overview.status != 200:
            return self.web.refused(overview, session)
        counts: dict[str, Any] = next(
            (d for d in overview.data["destinations"] if d["id"] == destination["id"]), {}
        )
        source = next(
            (s for s in overview.data["sources"] if s["id"] == destination["sourceId"]), None
        )
        schema = definition["settings"] if definition is not None else {"properties": {}}
        saved: dict[str, Any] = destination["settings"]
        stored = frozenset(k for k, v in saved.items() if v == REDACTED)
        fields = shown_fields(schema, saved, form, errors, stored_secrets=stored)
        return self.web.render(
            "destination.html",
            {
                "destination": destination,
                "definition": definition,
                "source": source,
                "counts": counts,
                "fields": fields,
                "name": str(form.get("name", "")) if form is not None else destination["name"],
                "error": error,
                "saved": request.query_params.get("saved") == "1",
                "current": "/destinations",
            },
            status=200 if error is None else status,
            session=session,
        )

    # --- Event Delivery ---------------------------------------------------------------------

    async def delivery_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        return await self._delivery(request, session, principal, replay=None, error=None)

    async def replay(self, request: Request, session: Session, principal: Principal) -> Response:
        """Segment's Replay: the archived events of a time range sent again to this
        destination."""
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        start, end = _moment(form.get("start")), _moment(form.get("end"))
        if start is None or end is None:
            return await self._delivery(
                request, session, principal, replay=None, error="Enter a start and an end time."
            )
        if end <= start:
            return await self._delivery(
                request, session, principal, replay=None, error="The end must be after the start."
            )
        destination = request.path_params["destination"]
        answer = await self.api.call(
            "POST",
            f"/api/v1/destinations/{destination}/replay",
            principal,
            body={"start": start.isoformat(), "end": end.isoformat()},
        )
        if answer.status != 200:
            if answer.status == 403:
                return self.web.refused(answer, session)
            return await self._delivery(
                request,
                session,
                principal,
                replay=None,
                error=answer.error,
                status=answer.form_status,
            )
        return await self._delivery(request, session, principal, replay=answer.data, error=None)

    async def _delivery(
        self,
        request: Request,
        session: Session,
        principal: Principal,
        *,
        replay: dict[str, Any] | None,
        error: str | None,
        status: int = 400,
    ) -> Response:
        try:
            hours = int(request.query_params.get("hours", "24"))
        except ValueError:
            hours = 24
        if hours not in DELIVERY_RANGES:
            hours = 24
        destination = request.path_params["destination"]
        answer = await self.api.call(
            "GET",
            f"/api/v1/destinations/{destination}/delivery",
            principal,
            params={"minutes": hours * 60},
        )
        if answer.status != 200:
            return self.web.refused(answer, session)
        data = answer.data
        hourly: list[dict[str, Any]] = data.get("hourly", [])[-hours:]
        labels = [_hour_label(h["hour"], hours) for h in hourly]
        chart = stacked_bars(
            f"Events delivered, retried and not delivered per hour, last {hours} hours",
            labels,
            [
                Series("Delivered", "ok", [h["delivered"] for h in hourly]),
                Series("Retried", "retrying", [h["retrying"] for h in hourly]),
                Series("Not delivered", "bad", [h["notDelivered"] for h in hourly]),
            ],
            x_label="Hour (UTC)",
            y_label="Events",
            every=max(1, len(labels) // 8),
        )
        errors = [
            {
                **group,
                "samples": [
                    {k: _pretty(v) for k, v in sample.items() if v is not None}
                    for sample in group["samples"]
                ],
            }
            for group in data["errors"]
        ]
        now = datetime.now(UTC).replace(second=0, microsecond=0, tzinfo=None)
        return self.web.render(
            "delivery.html",
            {
                "destination": data["destination"],
                "data": data,
                "errors": errors,
                "chart": chart,
                "hours": hours,
                "ranges": DELIVERY_RANGES,
                "replayed": replay,
                "error": error,
                "start_default": (now.replace(minute=0)).isoformat(timespec="minutes"),
                "end_default": now.isoformat(timespec="minutes"),
                "current": "/destinations",
            },
            status=200 if error is None else status,
            session=session,
        )


def _moment(raw: Any) -> datetime | None:
    """A ``datetime-local`` input's value (or an ISO time), read as UTC."""
    try:
        moment = datetime.fromisoformat(str(raw or "").strip())
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _hour_label(hour: int, hours: int) -> str:
    moment = datetime.fromtimestamp(hour, UTC)
    return moment.strftime("%H:%M" if hours <= 24 else "%d %b %H:%M")


def _pretty(value: Any) -> str:
    """A sample's part as the page shows it: JSON indented, a text as it is."""
    if isinstance(value, str):
        text = value
        try:
            value = json.loads(text)
        except ValueError:
            return text
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
