"""Deleting the workspace and a source's data (§11) over the REST API.

``/workspace/deletion`` is the workspace's deletion as a resource: ``POST`` requests it (with
the workspace's name in ``confirm``), ``GET`` shows it, ``DELETE`` revokes it while the five
days last. ``/sources/{idOrName}/data-deletion`` removes whole days of one source's archive.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from starlette.concurrency import run_in_threadpool

from headwater.api.errors import ApiError
from headwater.api.sources import store_of
from headwater.privacy.source_data import SourceDataDeletion, SourceDataDeletions, parse_day
from headwater.privacy.workspace_deletion import WorkspaceDeletion, WorkspaceDeletions
from headwater.timestamps import format_timestamp

router = APIRouter(tags=["privacy"])

IdOrName = Annotated[str, Path(alias="idOrName", description="The source's id or name.")]


def _time(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return format_timestamp(datetime.fromtimestamp(epoch, UTC))


def _deletions(request: Request) -> WorkspaceDeletions:
    return WorkspaceDeletions(request.app.state.engine, clock=request.app.state.clock)


def _deletion_json(deletion: WorkspaceDeletion | None, now: float, name: str | None) -> Any:
    if deletion is None:
        return {"workspace": name, "status": None, "revocable": False}
    return {
        "id": deletion.id,
        "workspace": deletion.workspace_name,
        "status": deletion.status,
        "revocable": deletion.revocable(now),
        "requestedAt": _time(deletion.requested_at),
        "irrevocableAt": _time(deletion.irrevocable_at),
        "purgeBy": _time(deletion.purge_by),
        "revokedAt": _time(deletion.revoked_at),
        "finishedAt": _time(deletion.finished_at),
        "stepsDone": list(deletion.steps_done),
    }


@router.get("/workspace/deletion", response_model=None)
async def get_workspace_deletion(request: Request) -> dict[str, Any]:
    """The workspace's latest deletion, if any: its status and whether it can be revoked."""
    deletions = _deletions(request)

    def read() -> Any:
        return _deletion_json(
            deletions.latest(), request.app.state.clock(), deletions.workspace_name()
        )

    return {"data": {"deletion": await run_in_threadpool(read)}}


@router.post("/workspace/deletion", response_model=None, status_code=202)
async def request_workspace_deletion(
    request: Request, body: Annotated[Any, Body()] = None
) -> dict[str, Any]:
    """Delete the workspace: revocable for five days, then everything Headwater keeps for it is
    purged (not forwarded to destinations or warehouses). Body: `{"confirm": "<its name>"}`."""
    if not isinstance(body, dict):
        raise ApiError(422, "validation", 'the body must be a JSON object: {"confirm": name}')
    unknown = sorted(str(k) for k in body if k != "confirm")
    if unknown:
        raise ApiError(422, "validation", f"{unknown[0][:100]}: unknown field", unknown[0][:100])
    deletions = _deletions(request)
    deletion = await run_in_threadpool(deletions.request, body.get("confirm"))
    return {"data": {"deletion": _deletion_json(deletion, request.app.state.clock(), None)}}


@router.delete("/workspace/deletion", response_model=None)
async def revoke_workspace_deletion(request: Request) -> dict[str, Any]:
    """Revoke the workspace's deletion, within five days of the request."""
    deletions = _deletions(request)
    deletion = await run_in_threadpool(deletions.revoke)
    return {"data": {"deletion": _deletion_json(deletion, request.app.state.clock(), None)}}


def _run_json(run: SourceDataDeletion) -> dict[str, Any]:
    return {
        "id": run.id,
        "sourceId": run.source_id,
        "from": run.from_day.isoformat(),
        "to": run.to_day.isoformat(),
        "requestedAt": _time(run.requested_at),
        "filesRemoved": run.files_removed,
    }


def _runs(request: Request) -> SourceDataDeletions:
    return SourceDataDeletions(
        request.app.state.engine, request.app.state.archive_dir, clock=request.app.state.clock
    )


@router.post("/sources/{idOrName}/data-deletion", response_model=None)
async def delete_source_data(
    id_or_name: IdOrName, request: Request, body: Annotated[Any, Body()] = None
) -> dict[str, Any]:
    """Delete the source's archived events for whole days, `from` to `to` (UTC, inclusive):
    from the archive only, forwarded nowhere. Body: `{"from": "2026-01-01", "to": "2026-01-31"}`."""
    if not isinstance(body, dict):
        raise ApiError(422, "validation", "the body must be a JSON object with from and to")
    unknown = sorted(str(k) for k in body if k not in ("from", "to"))
    if unknown:
        raise ApiError(422, "validation", f"{unknown[0][:100]}: unknown field", unknown[0][:100])
    first = parse_day(body.get("from"), "from")
    last = parse_day(body.get("to"), "to")
    source = await run_in_threadpool(store_of(request).get_source, id_or_name)
    if source is None:
        raise ApiError(404, "not_found", f"no source has the id or name {id_or_name[:200]!r}")
    runs = _runs(request)
    run = await run_in_threadpool(runs.delete, source.id, first, last)
    return {"data": {"deletion": _run_json(run)}}


@router.get("/sources/{idOrName}/data-deletion", response_model=None)
async def list_source_data_deletions(id_or_name: IdOrName, request: Request) -> dict[str, Any]:
    """The source's data deletions, newest first (the last 100)."""
    source = await run_in_threadpool(store_of(request).get_source, id_or_name)
    if source is None:
        raise ApiError(404, "not_found", f"no source has the id or name {id_or_name[:200]!r}")
    runs = await run_in_threadpool(_runs(request).list, source.id)
    return {"data": {"deletions": [_run_json(run) for run in runs]}}
