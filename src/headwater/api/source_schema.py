"""The Source Schema over HTTP (§6): events, properties and traits with their counts, New
Event, archive, Clear Schema History, the CSV export, and the source's schema controls.

Segment's Public API has no schema endpoints, so the shapes are plain, in its style (a
``{"data": …}`` envelope, camelCase). The CSV export answers at once with the file, where
Segment prepares it in the background and keeps it 14 days: a schema is at most 4,000 events
of 300 properties, small enough to write while the client waits.

With a tracking plan connected (``use_plans``) events and properties say whether they are
planned, and archive and clear follow the plan's rules (A-SC-4, A-SC-5).
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, FastAPI, Path, Request, Response

from headwater.api.auth import require_access
from headwater.api.errors import ApiError
from headwater.protocols.compiled import PAGE_VIEWED, SCREEN_VIEWED, CompiledEvent, CompiledPlan
from headwater.protocols.schema_controls import read_controls, save_controls
from headwater.protocols.source_schema import (
    GROUP_KIND,
    IDENTIFY,
    KINDS,
    MAX_NAME,
    TIMEFRAMES,
    TRACK,
    Item,
    SchemaStore,
    since_hour,
    storable,
)
from headwater.store import schema

router = APIRouter(tags=["source schema"], dependencies=[Depends(require_access)])

PlanLookup = Callable[[str], CompiledPlan | None]  # source id -> its connected plan

SourceRef = Annotated[str, Path(alias="idOrName", description="The source's id or name.")]
EXPORT_TIMEFRAMES = ("7d", "30d")  # §6.5
_DAYS = {"7d": 7, "30d": 30}


def use_plans(app: FastAPI, lookup: PlanLookup) -> None:
    """Tell the schema routes which plan each source has (none by default)."""
    app.state.schema_plans = lookup


def _plan(request: Request, source_id: str) -> CompiledPlan | None:
    lookup: PlanLookup | None = getattr(request.app.state, "schema_plans", None)
    return lookup(source_id) if lookup is not None else None


def _clock(request: Request) -> Callable[[], float]:
    clock: Callable[[], float] = getattr(request.app.state, "schema_clock", time.time)
    return clock


def _store(request: Request) -> SchemaStore:
    return SchemaStore(request.app.state.engine, clock=_clock(request))


def _source(request: Request, id_or_name: str) -> Any:
    """The source row with this id, else this name, else this slug; 404 when none."""
    s = schema.sources
    with request.app.state.engine.connect() as conn:
        for column in (s.c.id, s.c.name, s.c.slug):
            found = conn.execute(sa.select(s).where(column == id_or_name).limit(2)).all()
            if len(found) == 1:
                return found[0]
            if found:
                raise ApiError(409, "conflict", f"more than one source is named {id_or_name!r}")
    raise ApiError(404, "not_found", f"no source has the id or name {id_or_name!r}")


def _timeframe(value: str | None, allowed: tuple[str, ...] = tuple(TIMEFRAMES)) -> str:
    chosen = value or "7d"
    if chosen not in allowed:
        raise ApiError(
            400, "bad_request", f"timeframe must be one of {', '.join(allowed)}", "timeframe"
        )
    return chosen


def _event_rule(plan: CompiledPlan, kind: str, name: str) -> CompiledEvent | None:
    if kind == IDENTIFY:
        return plan.identify
    if kind == GROUP_KIND:
        return plan.group
    if name == PAGE_VIEWED and plan.page is not None:
        return plan.page
    if name == SCREEN_VIEWED and plan.screen is not None:
        return plan.screen
    return plan.track.get(name)


def _planned(plan: CompiledPlan | None, item: Item) -> bool | None:
    """Whether the plan plans this event (or its property's top-level name); None: no plan."""
    if plan is None:
        return None
    rule = _event_rule(plan, item.kind, item.event)
    if rule is None:
        return False
    if not item.property:
        return True
    return item.property.split(".", 1)[0] in rule.planned


def _iso(seconds: int | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _shown(item: Item, plan: CompiledPlan | None) -> dict[str, Any]:
    shown: dict[str, Any] = {"name": item.property or item.event}
    if not item.property:
        shown["type"] = item.kind.upper()
    shown.update(
        allowed=item.allowed,
        blocked=item.blocked,
        total=item.total,
        planned=_planned(plan, item),
        firstSeenAt=_iso(item.first_seen),
        lastSeenAt=_iso(item.last_seen),
    )
    if not item.property:
        shown["archived"] = item.archived
    return shown


def _json(data: dict[str, Any], status: int = 200) -> Response:
    return Response(msgspec.json.encode({"data": data}), status, media_type="application/json")


@router.get("/sources/{idOrName}/schema/events", summary="Track events in the source's schema")
def list_events(
    request: Request, source: SourceRef, timeframe: str | None = None, archived: bool = False
) -> Response:
    """Page calls are listed as ``Page Viewed``, Screen calls as ``Screen Viewed``; archived
    events only with ``archived=true``."""
    row = _source(request, source)
    chosen = _timeframe(timeframe)
    plan = _plan(request, row.id)
    items = _store(request).items(row.id, TRACK, chosen, properties=False)
    events = [_shown(i, plan) for i in items if i.archived == archived]
    return _json({"events": events, "timeframe": chosen})


@router.post(
    "/sources/{idOrName}/schema/events", summary="New Event: list an event before it arrives"
)
def add_event(
    request: Request, source: SourceRef, body: Annotated[dict[str, Any], Body()]
) -> Response:
    row = _source(request, source)
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or not storable(name):
        raise ApiError(
            422,
            "validation",
            f"name: must be an event name of 1 to {MAX_NAME} characters, without NUL",
            "name",
        )
    if not _store(request).add_event(row.id, name):
        raise ApiError(409, "conflict", f"the schema already lists the event {name!r}", "name")
    return _json({"event": {"name": name, "type": "TRACK"}}, 201)


@router.get(
    "/sources/{idOrName}/schema/events/{event}/properties",
    summary="One Track event's properties (the first 300)",
)
def list_properties(
    request: Request, source: SourceRef, event: str, timeframe: str | None = None
) -> Response:
    row = _source(request, source)
    chosen = _timeframe(timeframe)
    store = _store(request)
    if not store.has_event(row.id, event):
        raise ApiError(404, "not_found", f"the schema does not list the event {event!r}")
    plan = _plan(request, row.id)
    items = store.items(row.id, TRACK, chosen, event=event, properties=True)
    return _json({"event": event, "properties": [_shown(i, plan) for i in items]})


@router.get("/sources/{idOrName}/schema/traits", summary="Identify or Group traits")
def list_traits(
    request: Request, source: SourceRef, type: str = "identify", timeframe: str | None = None
) -> Response:
    row = _source(request, source)
    kind = _kind(type, (IDENTIFY, GROUP_KIND))
    chosen = _timeframe(timeframe)
    plan = _plan(request, row.id)
    items = _store(request).items(row.id, kind, chosen, properties=True)
    return _json({"type": kind.upper(), "traits": [_shown(i, plan) for i in items]})


def _kind(value: str, allowed: tuple[str, ...]) -> str:
    kind = value.lower()
    if kind not in allowed:
        raise ApiError(400, "bad_request", f"type must be one of {', '.join(allowed)}", "type")
    return kind


@router.post("/sources/{idOrName}/schema/events/{event}/archive", summary="Archive an event")
def archive_event(request: Request, source: SourceRef, event: str) -> Response:
    """With a plan the event must be unplanned or blocked; without one it must be blocked
    (disabled) first (§6.4)."""
    row = _source(request, source)
    store = _store(request)
    if not store.has_event(row.id, event):
        raise ApiError(404, "not_found", f"the schema does not list the event {event!r}")
    blocked = event in read_controls(request.app.state.workspace_store, row.id)["blockedEvents"]
    plan = _plan(request, row.id)
    if plan is not None:
        if _event_rule(plan, TRACK, event) is not None and not blocked:
            raise ApiError(
                400,
                "bad_request",
                f"{event!r} is planned and allowed: only a blocked or unplanned event can be "
                "archived",
            )
    elif not blocked:
        raise ApiError(
            400,
            "bad_request",
            f"block {event!r} first (schema controls: blockedEvents): only a blocked event can "
            "be archived",
        )
    store.set_archived(row.id, event, True)
    return _json({"event": {"name": event, "archived": True}})


@router.post("/sources/{idOrName}/schema/events/{event}/unarchive", summary="Unarchive an event")
def unarchive_event(request: Request, source: SourceRef, event: str) -> Response:
    row = _source(request, source)
    store = _store(request)
    if not store.has_event(row.id, event):
        raise ApiError(404, "not_found", f"the schema does not list the event {event!r}")
    store.set_archived(row.id, event, False)
    return _json({"event": {"name": event, "archived": False}})


@router.post("/sources/{idOrName}/schema/clear", summary="Clear Schema History")
def clear_schema(request: Request, source: SourceRef) -> Response:
    """Forget what the schema lists; it fills again from new events. With a plan connected
    Identify and Group traits stay (A-SC-5)."""
    row = _source(request, source)
    kinds = [TRACK] if _plan(request, row.id) is not None else list(KINDS)
    _store(request).clear(row.id, kinds)
    return _json({"cleared": [k.upper() for k in kinds]})


@router.get("/sources/{idOrName}/schema/export", summary="The schema as a CSV file")
def export_schema(
    request: Request, source: SourceRef, type: str = "track", timeframe: str | None = None
) -> Response:
    row = _source(request, source)
    kind = _kind(type, KINDS)
    chosen = _timeframe(timeframe, EXPORT_TIMEFRAMES)
    now = _clock(request)()
    with request.app.state.engine.connect() as conn:
        workspace = conn.execute(
            sa.select(schema.workspaces.c.slug).where(schema.workspaces.c.id == row.workspace_id)
        ).scalar_one()
    body = schema_csv(_store(request), row.id, kind, chosen, _plan(request, row.id), now)
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d--%H-%M")
    filename = f"{workspace}-{row.slug}-{kind}--{stamp}-utc.csv"
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"content-disposition": f'attachment; filename="{filename}"'},
    )


def schema_csv(
    store: SchemaStore,
    source_id: str,
    kind: str,
    timeframe: str,
    plan: CompiledPlan | None,
    now: float,
) -> str:
    """One row per (event, property) for Track, per trait for Identify/Group (§6.5)."""
    start = since_hour(timeframe, now) * 3600
    stale = f"more than {_DAYS[timeframe]} days ago"

    def seen(item: Item) -> str:
        if item.last_seen is None:
            return ""
        if item.last_seen < start:
            return stale
        return datetime.fromtimestamp(item.last_seen, UTC).strftime("%Y-%m-%d %H:%M:%S")

    def planned(item: Item) -> str:
        value = _planned(plan, item)
        return "" if value is None else "planned" if value else "unplanned"

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    counts = ["Allowed", "Blocked", "Total", "Planned"]
    if kind == TRACK:
        writer.writerow(["Event Name", "Last Seen At (UTC)", "Property Name", *counts])
        items = store.items(source_id, TRACK, timeframe)
        with_properties = {i.event for i in items if i.property}
        for item in items:
            if item.property or item.event not in with_properties:
                writer.writerow(
                    [
                        item.event,
                        seen(item),
                        item.property,
                        item.allowed,
                        item.blocked,
                        item.total,
                        planned(item),
                    ]
                )
    else:
        writer.writerow(["Trait Name", "Last Seen At (UTC)", *counts])
        for item in store.items(source_id, kind, timeframe, properties=True):
            writer.writerow(
                [item.property, seen(item), item.allowed, item.blocked, item.total, planned(item)]
            )
    return out.getvalue()


# --- schema controls ---------------------------------------------------------------------------


@router.get("/sources/{idOrName}/schema-controls", summary="The source's schema controls")
def get_controls(request: Request, source: SourceRef) -> Response:
    row = _source(request, source)
    return _json({"schemaControls": read_controls(request.app.state.workspace_store, row.id)})


@router.put("/sources/{idOrName}/schema-controls", summary="Replace the source's schema controls")
def put_controls(
    request: Request, source: SourceRef, body: Annotated[dict[str, Any], Body()]
) -> Response:
    """Blocked Track events, all Page / Screen calls, omitted Identify / Group traits and
    schema integration filters (``{event: {destination name: false}}``)."""
    row = _source(request, source)
    saved = save_controls(request.app.state.workspace_store, row.id, body)
    return _json({"schemaControls": saved})
