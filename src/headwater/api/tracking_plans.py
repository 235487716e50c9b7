"""``/api/v1/tracking-plans``: Protocols tracking plans in the shapes of Segment's Public API.

Plans (`TrackingPlanV1`), their rules (`RuleV1`: list, upsert, replace, remove), the sources
connected to them, and each plan's changelog. Bodies are read as plain JSON and checked by the
plan store, so every refusal — a rule that does not compile, a source that already has a plan
— comes back as a 4xx naming the rule or the field, and nothing is changed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from headwater.api.errors import ApiError, body_object
from headwater.api.sources import _pagination, iso, source_json, store_of
from headwater.errors import InvalidError
from headwater.protocols.compiled import Rule
from headwater.protocols.plan_csv import (
    MAX_BYTES,
    PlanCsvError,
    csv_filename,
    rules_from_csv,
    rules_to_csv,
)
from headwater.protocols.plan_from_schema import rules_from_schema
from headwater.protocols.plans import (
    ACTOR_API,
    FIRST_PAGE,
    MAX_RULES_PER_REQUEST,
    PLAN_TYPES,
    TOO_MANY_RULES,
    ChangeEntry,
    Page,
    PlanInfo,
    PlanStore,
    RuleIdent,
    RuleInfo,
    check_plan_type,
    page_of,
    rule_from_segment,
)
from headwater.protocols.source_schema import KINDS, TIMEFRAMES, SchemaStore
from headwater.store.workspace import UNSET, WorkspaceStore, is_unicode

router = APIRouter(prefix="/tracking-plans", tags=["tracking plans"])

PlanId = Annotated[str, Path(alias="trackingPlanId", description="The plan's id or name.")]
Pagination = Annotated[tuple[str | None, int], Depends(_pagination)]
JsonBody = Annotated[Any, Body()]
SUCCESS = {"data": {"status": "SUCCESS"}}


def plans_of(request: Request) -> PlanStore:
    """FastAPI dependency: the plan store on the application's workspace store."""
    workspace: WorkspaceStore = store_of(request)
    return PlanStore(workspace)


Plans = Annotated[PlanStore, Depends(plans_of)]


def plan_json(plan: PlanInfo) -> dict[str, Any]:
    return {
        "id": plan.id,
        "name": plan.name,
        "slug": plan.slug,
        "description": plan.description,
        "type": plan.type,
        "labels": dict(plan.labels),
        "libraries": list(plan.libraries),
        "createdAt": iso(plan.created_at),
        "updatedAt": iso(plan.updated_at),
    }


def rule_json(rule: RuleInfo) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": rule.type,
        "key": rule.key,
        "jsonSchema": rule.json_schema,
        "version": rule.version,
        "createdAt": iso(rule.created_at),
        "updatedAt": iso(rule.updated_at),
    }
    if rule.deprecated_at is not None:
        out["deprecatedAt"] = iso(rule.deprecated_at)
    if rule.library_id is not None:
        out["syncedFrom"] = rule.library_id  # a library's rule: edit it in the library
    return out


def _pagination_json(page: Page, cursor: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {"current": cursor or FIRST_PAGE}
    if page.next_cursor is not None:
        out["next"] = page.next_cursor
    if page.previous_cursor is not None:
        out["previous"] = page.previous_cursor
    out["totalEntries"] = page.total
    return out


def _page_body(
    name: str, found: Page, cursor: str | None, show: Callable[[Any], Any]
) -> dict[str, Any]:
    """A list route's answer: the page's items shown, and the Public API's pagination."""
    items = [show(item) for item in found.items]
    return {"data": {name: items, "pagination": _pagination_json(found, cursor)}}


def _string(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required or name in body:
            raise ApiError(422, "validation", f"{name}: must be a string", name)
        return None
    if not isinstance(value, str):
        raise ApiError(422, "validation", f"{name}: must be a string", name)
    if not is_unicode(value):
        raise ApiError(422, "validation", f"{name}: must be valid Unicode text", name)
    return value


def _rules_list(body: Any) -> list[Any]:
    rules = body_object(body, {"rules"}).get("rules")
    if not isinstance(rules, list):
        raise ApiError(422, "validation", "rules: must be a list of rules", "rules")
    if len(rules) > MAX_RULES_PER_REQUEST:
        raise ApiError(400, "validation", TOO_MANY_RULES, "rules")
    return rules


# --- plans -----------------------------------------------------------------------------------


@router.get("", response_model=None)
def list_tracking_plans(
    page: Pagination,
    plans: Plans,
    type_: Annotated[
        str | None, Query(alias="type", description=f"One of {', '.join(PLAN_TYPES)}.")
    ] = None,
) -> dict[str, Any]:
    cursor, count = page
    if type_ is not None:
        check_plan_type(type_)
    return _page_body("trackingPlans", plans.page(cursor, count, type_=type_), cursor, plan_json)


@router.post("", status_code=201, response_model=None)
def create_tracking_plan(body: JsonBody, plans: Plans) -> dict[str, Any]:
    fields = body_object(body, {"name", "description", "type", "labels", "libraries", "rules"})
    name = _string(fields, "name", required=True)
    assert name is not None
    rules: list[Rule] = []
    if "rules" in fields:
        rules = [rule for rule, _ in _parsed(_rules_list({"rules": fields["rules"]}))]
    libraries = fields.get("libraries", [])
    if not isinstance(libraries, list) or not all(isinstance(x, str) for x in libraries):
        raise ApiError(422, "validation", "libraries: must be a list of plan ids", "libraries")
    plan = plans.create(
        name,
        type_=fields.get("type", "LIVE"),
        description=_string(fields, "description") or "",
        labels=fields.get("labels") or {},
        rules=rules,
        libraries=libraries,
        actor=ACTOR_API,
    )
    return {"data": {"trackingPlan": plan_json(plan)}}


@router.get("/{trackingPlanId}", response_model=None)
def get_tracking_plan(plan_id: PlanId, plans: Plans) -> dict[str, Any]:
    return {"data": {"trackingPlan": plan_json(plans.require(plan_id))}}


@router.patch("/{trackingPlanId}", response_model=None)
def update_tracking_plan(plan_id: PlanId, body: JsonBody, plans: Plans) -> dict[str, Any]:
    fields = body_object(body, {"name", "description", "labels", "libraries"})
    libraries = fields.get("libraries", UNSET)
    if libraries is not UNSET and (
        not isinstance(libraries, list) or not all(isinstance(x, str) for x in libraries)
    ):
        raise ApiError(422, "validation", "libraries: must be a list of plan ids", "libraries")
    name = _string(fields, "name")
    description = _string(fields, "description")
    plan = plans.update(
        plan_id,
        name=name if name is not None else UNSET,
        description=description if description is not None else UNSET,
        labels=fields.get("labels", UNSET),
        libraries=libraries,
        actor=ACTOR_API,
    )
    return {"data": {"trackingPlan": plan_json(plan)}}


@router.delete("/{trackingPlanId}", response_model=None)
def delete_tracking_plan(plan_id: PlanId, plans: Plans) -> dict[str, Any]:
    plans.delete(plan_id, actor=ACTOR_API)
    return SUCCESS


# --- rules -----------------------------------------------------------------------------------


def _parsed(rules: list[Any]) -> list[tuple[Rule, str | None]]:
    return [rule_from_segment(item, f"rules[{i}]") for i, item in enumerate(rules)]


@router.get("/{trackingPlanId}/rules", response_model=None)
def list_rules(plan_id: PlanId, page: Pagination, plans: Plans) -> dict[str, Any]:
    cursor, count = page
    return _page_body("rules", page_of(plans.rules(plan_id), cursor, count), cursor, rule_json)


@router.patch("/{trackingPlanId}/rules", response_model=None)
def update_rules(plan_id: PlanId, body: JsonBody, plans: Plans) -> dict[str, Any]:
    """Add or change rules; `newKey` renames one (Segment's `UpsertRuleV1`)."""
    plans.upsert_rules(plan_id, _parsed(_rules_list(body)), actor=ACTOR_API)
    return SUCCESS


@router.put("/{trackingPlanId}/rules", response_model=None)
@router.post("/{trackingPlanId}/rules", response_model=None, include_in_schema=False)
def replace_rules(plan_id: PlanId, body: JsonBody, plans: Plans) -> dict[str, Any]:
    """The plan's own rules become exactly these."""
    parsed = _parsed(_rules_list(body))
    if any(new_key is not None for _, new_key in parsed):
        raise ApiError(422, "validation", "rules: newKey is for PATCH (upsert) only", "rules")
    plans.replace_rules(plan_id, [rule for rule, _ in parsed], actor=ACTOR_API)
    return SUCCESS


@router.delete("/{trackingPlanId}/rules", response_model=None)
def remove_rules(
    plan_id: PlanId,
    plans: Plans,
    body: Annotated[Any, Body()] = None,
    rules: Annotated[
        str | None,
        Query(description="The rules to remove as JSON: [{type, key, version}, …]."),
    ] = None,
) -> dict[str, Any]:
    """Remove rules named by (type, key, version), in the body or the `rules` query."""
    if body is None:
        if rules is None:
            raise ApiError(422, "validation", "rules: name the rules to remove", "rules")
        try:
            body = {"rules": json.loads(rules)}
        except ValueError:
            raise ApiError(400, "bad_request", "rules: must be JSON", "rules") from None
    idents: list[RuleIdent] = []
    for i, item in enumerate(_rules_list(body)):
        if not isinstance(item, dict):
            raise InvalidError("must be an object {type, key, version}", f"rules[{i}]")
        rule, _ = rule_from_segment({"jsonSchema": {}, **item}, f"rules[{i}]")
        idents.append((rule.type, rule.key, rule.version))
    plans.remove_rules(plan_id, idents, actor=ACTOR_API)
    return SUCCESS


# --- sources ---------------------------------------------------------------------------------


@router.get("/{trackingPlanId}/sources", response_model=None)
def list_sources(plan_id: PlanId, page: Pagination, plans: Plans) -> dict[str, Any]:
    cursor, count = page
    found = page_of(plans.sources(plan_id), cursor, count)
    return _page_body("sources", found, cursor, source_json)


@router.post("/{trackingPlanId}/sources", response_model=None)
def add_source(plan_id: PlanId, body: JsonBody, plans: Plans) -> dict[str, Any]:
    source_id = _string(body_object(body, {"sourceId"}), "sourceId", required=True)
    assert source_id is not None
    plans.connect_source(plan_id, source_id, actor=ACTOR_API)
    return SUCCESS


@router.delete("/{trackingPlanId}/sources", response_model=None)
def remove_source(
    plan_id: PlanId,
    plans: Plans,
    source_id: Annotated[str, Query(alias="sourceId", description="The source's id or name.")],
) -> dict[str, Any]:
    plans.disconnect_source(plan_id, source_id, actor=ACTOR_API)
    return SUCCESS


# --- changelog -------------------------------------------------------------------------------


@router.get("/{trackingPlanId}/changelog", response_model=None)
def changelog(plan_id: PlanId, page: Pagination, plans: Plans) -> dict[str, Any]:
    """Who changed what and when, newest first."""
    cursor, count = page
    found = page_of(plans.changelog(plan_id), cursor, count)
    return _page_body("changelog", found, cursor, _change_json)


def _change_json(entry: ChangeEntry) -> dict[str, Any]:
    return {
        "id": str(entry.id),
        "timestamp": iso(entry.at),
        "actor": entry.actor,
        "action": entry.action,
        **dict(entry.detail),
    }


# --- CSV download and upload (the editor's spreadsheet) --------------------------------------


@router.get("/{trackingPlanId}/csv", response_model=None)
def download_csv(plan_id: PlanId, plans: Plans) -> Response:
    """The plan's own rules as Segment's CSV, named as Segment names the download (A-TP-15)."""
    plan = plans.require(plan_id)
    workspace = plans.workspace.workspace()
    slug = workspace.slug if workspace is not None else "workspace"
    now = datetime.fromtimestamp(plans.workspace.now(), UTC)
    name = csv_filename(plan.name, slug, now)
    body = rules_to_csv(r.rule() for r in plans.rules(plan_id, synced=False))
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}"},
    )


@router.put("/{trackingPlanId}/csv", response_model=None)
async def upload_csv(plan_id: PlanId, request: Request, plans: Plans) -> dict[str, Any]:
    """Replace the plan's rules with a CSV's; a file Segment would fail changes nothing (A-TP-14).

    Synchronous: a file at Segment's limits takes about a second to read. A refusal answers
    422 with the line at fault as the error's field, which is what `error_report.csv` says.
    """
    plan = await run_in_threadpool(plans.require, plan_id)
    if plan.libraries:
        raise ApiError(
            409,
            "conflict",
            "the plan has synced libraries: unsync them before uploading a CSV",
            "libraries",
        )
    data = await request.body()
    if len(data) >= MAX_BYTES:
        raise ApiError(413, "too_large", "the file must be smaller than 15 MB")
    try:
        rules = rules_from_csv(data)
    except PlanCsvError as exc:
        raise ApiError(
            422, "validation", str(exc), f"line {exc.line}" if exc.line is not None else None
        ) from None
    await run_in_threadpool(lambda: plans.set_rules(plan_id, rules, actor=ACTOR_API))
    return {"data": {"status": "SUCCESS", "rules": len(rules)}}


# --- a plan from what a source sends ----------------------------------------------------------


@router.post("/{trackingPlanId}/rules/import", response_model=None)
def import_rules(plan_id: PlanId, body: JsonBody, plans: Plans) -> dict[str, Any]:
    """Every event the source's schema lists (in the timeframe, default 30d) becomes a rule,
    with its properties or traits planned; events the plan already has keep their rules."""
    fields = body_object(body, {"sourceId", "timeframe"})
    source_ref = _string(fields, "sourceId", required=True)
    timeframe = _string(fields, "timeframe") or "30d"
    if timeframe not in TIMEFRAMES:
        raise ApiError(422, "validation", f"timeframe: one of {', '.join(TIMEFRAMES)}", "timeframe")
    workspace = plans.workspace
    source = workspace.get_source(str(source_ref))
    if source is None:
        raise ApiError(404, "not_found", f"no source {source_ref!r}", "sourceId")
    observed = SchemaStore(workspace.engine, clock=workspace.now)
    items = [item for kind in KINDS for item in observed.items(source.id, kind, timeframe)]
    own = [r.rule() for r in plans.rules(plan_id, synced=False)]
    planned = {(r.type, r.key) for r in plans.rules(plan_id)}
    added = [r for r in rules_from_schema(items) if (r.type, r.key) not in planned]
    if added:
        plans.set_rules(plan_id, [*own, *added], actor=ACTOR_API)
    return {"data": {"status": "SUCCESS", "added": [{"type": r.type, "key": r.key} for r in added]}}
