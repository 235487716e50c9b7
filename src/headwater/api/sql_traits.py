"""``/api/v1/spaces/{idOrName}/sql-traits``: a space's SQL traits, their previews, runs on
demand and run history.

A trait is addressed by its id (``tra_…``), its key or its name. ``POST …/preview`` (a query
not saved yet) and ``POST …/{id}/preview`` run the query for its first 100 rows with a run's
checks and mark each identifier known (on a profile of the space) or not; nothing is stored or
sent. A query the warehouse refuses, or whose result breaks Segment's rules, is a 422 naming the
problem; a warehouse that cannot be reached, a 503. ``POST …/{id}/run`` asks for a run now
(202): the worker runs it within seconds; ``GET …/{id}/runs`` follows it. The warehouse, the
level and the key are fixed at creation. The rules live in ``headwater.engage.sql_traits``,
shared with ``headwater apply``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Path, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from headwater.api.changes import NoNulls
from headwater.api.errors import ApiError
from headwater.api.sources import iso, store_of
from headwater.engage.sql_traits.definitions import (
    DEFAULT_EVERY_HOURS,
    MAX_EVERY_HOURS,
    Run,
    SqlTrait,
    SqlTraitStore,
)
from headwater.engage.sql_traits.runs import Preview, Runner, preview
from headwater.errors import WarehouseError
from headwater.store.workspace import UNSET, WorkspaceStore

router = APIRouter(prefix="/spaces/{idOrName}/sql-traits", tags=["sql traits"])

SpaceId = Annotated[str, Path(alias="idOrName", description="The space's id or name.")]
TraitId = Annotated[str, Path(alias="traitId", description="The SQL trait's id, key or name.")]
EveryHours = Annotated[
    int, Field(strict=True, ge=1, le=MAX_EVERY_HOURS, description="Hours between runs.")
]


def use_warehouse_queries(app: FastAPI, runner: Runner) -> None:
    """Give the preview routes the server's warehouse queries."""
    app.state.warehouse_queries = runner


def traits_of(request: Request) -> SqlTraitStore:
    workspace: WorkspaceStore = store_of(request)
    return SqlTraitStore(workspace)


Traits = Annotated[SqlTraitStore, Depends(traits_of)]


# --- bodies ----------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScheduleBody(_Body):
    everyHours: EveryHours = DEFAULT_EVERY_HOURS


class CreateSqlTraitBody(_Body):
    name: StrictStr
    key: StrictStr | None = Field(
        default=None, description="Left out: the name in snake_case. Never changes."
    )
    warehouse: StrictStr = Field(description="The warehouse's id or name; never changes.")
    query: StrictStr
    level: Literal["users", "accounts"] = "users"
    schedule: ScheduleBody = Field(default_factory=ScheduleBody)


class UpdateSqlTraitBody(NoNulls):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr | None = None
    query: StrictStr | None = None
    schedule: ScheduleBody | None = None
    # Fixed at creation: given only to be refused with a clear message.
    key: StrictStr | None = None
    warehouse: StrictStr | None = None
    level: StrictStr | None = None


class PreviewBody(_Body):
    warehouse: StrictStr = Field(description="The warehouse's id or name.")
    query: StrictStr
    level: Literal["users", "accounts"] = "users"


# --- answers ---------------------------------------------------------------------------------


def trait_json(trait: SqlTrait) -> dict[str, Any]:
    return {
        "id": trait.id,
        "spaceId": trait.space_id,
        "key": trait.key,
        "name": trait.name,
        "warehouseId": trait.warehouse_id,
        "query": trait.query,
        "level": trait.level,
        "schedule": {"everyHours": trait.every_hours},
        "status": trait.status,
        "error": trait.last_error,
        "lastRunAt": iso(trait.last_run_at) if trait.last_run_at is not None else None,
        "nextRunAt": iso(trait.next_run_at) if trait.next_run_at is not None else None,
        "runRequestedAt": iso(trait.requested_at) if trait.requested_at is not None else None,
        "createdAt": iso(trait.created_at),
        "updatedAt": iso(trait.updated_at),
    }


def run_json(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "trigger": run.trigger,
        "status": run.status,
        "startedAt": iso(run.started_at),
        "finishedAt": iso(run.finished_at) if run.finished_at is not None else None,
        "rows": run.rows,
        "changed": run.changed,
        "nulled": run.nulled,
        "discarded": run.discarded,
        "error": run.error,
    }


def preview_json(found: Preview) -> dict[str, Any]:
    return {
        "identifier": found.identifier,
        "traits": found.traits,
        "rows": [
            {
                "identifier": row.identifier,
                "known": row.known,
                "traits": row.traits,
                **({"userId": row.user_id} if row.user_id is not None else {}),
                **({"discarded": True} if row.discarded else {}),
            }
            for row in found.rows
        ],
    }


def _one(trait: SqlTrait) -> dict[str, Any]:
    return {"data": {"sqlTrait": trait_json(trait)}}


# --- routes ----------------------------------------------------------------------------------


@router.get("", response_model=None)
def list_traits(space_id: SpaceId, traits: Traits) -> dict[str, Any]:
    return {"data": {"sqlTraits": [trait_json(t) for t in traits.list(space_id)]}}


@router.post("", status_code=201, response_model=None)
def create_trait(space_id: SpaceId, body: CreateSqlTraitBody, traits: Traits) -> dict[str, Any]:
    """A new SQL trait; it runs at once (its initial sync), then on its schedule."""
    created = traits.create(
        space_id,
        body.name,
        key=body.key,
        warehouse=body.warehouse,
        query=body.query,
        level=body.level,
        every_hours=body.schedule.everyHours,
    )
    return _one(created)


@router.post("/preview", response_model=None)
def preview_query(
    space_id: SpaceId, body: PreviewBody, traits: Traits, request: Request
) -> dict[str, Any]:
    """Preview a query before saving it as a trait."""
    space = traits.space_id(space_id)
    warehouse = traits.warehouse_id(body.warehouse)
    return _preview(request, traits, space, warehouse, body.query, body.level)


@router.get("/{traitId}", response_model=None)
def get_trait(space_id: SpaceId, trait_id: TraitId, traits: Traits) -> dict[str, Any]:
    return _one(traits.require(space_id, trait_id))


@router.patch("/{traitId}", response_model=None)
def update_trait(
    space_id: SpaceId, trait_id: TraitId, body: UpdateSqlTraitBody, traits: Traits
) -> dict[str, Any]:
    """Change the name, the query or the schedule; the next run uses them."""
    current = traits.require(space_id, trait_id)
    fixed = {"key": current.key, "warehouse": None, "level": current.level}
    for name in body.model_fields_set & fixed.keys():
        given = getattr(body, name)
        if name == "warehouse":
            if traits.warehouse_id(given) == current.warehouse_id:
                continue
        elif given == fixed[name]:
            continue
        raise ApiError(
            422,
            "validation",
            f"{name}: a SQL trait's {name} cannot change; create a new trait instead",
            name,
        )
    updated = traits.update(
        space_id,
        current.id,
        name=body.name if body.name is not None else UNSET,
        query=body.query if body.query is not None else UNSET,
        every_hours=body.schedule.everyHours if body.schedule is not None else UNSET,
    )
    return _one(updated)


@router.delete("/{traitId}", response_model=None)
def delete_trait(space_id: SpaceId, trait_id: TraitId, traits: Traits) -> dict[str, Any]:
    """Delete the trait; profiles keep the values it gave them. Its key is never reused."""
    traits.delete(space_id, trait_id)
    return {"data": {"status": "SUCCESS"}}


@router.post("/{traitId}/preview", response_model=None)
def preview_trait(
    space_id: SpaceId, trait_id: TraitId, traits: Traits, request: Request
) -> dict[str, Any]:
    trait = traits.require(space_id, trait_id)
    return _preview(request, traits, trait.space_id, trait.warehouse_id, trait.query, trait.level)


@router.post("/{traitId}/run", status_code=202, response_model=None)
def run_trait(space_id: SpaceId, trait_id: TraitId, traits: Traits) -> dict[str, Any]:
    """Ask for a run now; follow it at ``GET …/runs``."""
    return _one(traits.request_run(space_id, trait_id))


@router.get("/{traitId}/runs", response_model=None)
def list_runs(space_id: SpaceId, trait_id: TraitId, traits: Traits) -> dict[str, Any]:
    """The last 30 runs, newest first."""
    return {"data": {"runs": [run_json(r) for r in traits.runs(space_id, trait_id)]}}


def _preview(
    request: Request,
    traits: SqlTraitStore,
    space_id: str,
    warehouse_id: str,
    query: str,
    level: str,
) -> dict[str, Any]:
    runner: Runner | None = getattr(request.app.state, "warehouse_queries", None)
    if runner is None:
        raise ApiError(503, "unavailable", "this process cannot query warehouses; retry later")
    try:
        found = preview(
            traits.workspace.engine,
            runner,
            space_id=space_id,
            warehouse_id=warehouse_id,
            query=query,
            level=level,
        )
    except WarehouseError as exc:
        raise ApiError(503, "unavailable", f"the warehouse cannot be queried now: {exc}") from None
    return {"data": {"preview": preview_json(found)}}
