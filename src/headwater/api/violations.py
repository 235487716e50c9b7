"""Protocols over HTTP: a source's violations, its daily digest, blocked events and MTUs.

The stage writes what these routes read (`protocols/violations.py`, `blocked.py`, `mtu.py`).
Shapes follow the REST API's: a `{"data": …}` envelope, errors through `api/errors.py`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request

from headwater.api.auth import require_access
from headwater.api.errors import ApiError
from headwater.protocols.blocked import BlockedEvents
from headwater.protocols.mtu import MtuStore
from headwater.protocols.violations import DIGEST_ZONE, WINDOWS, UnknownWindow, ViolationStore
from headwater.store.workspace import WorkspaceStore

router = APIRouter(tags=["protocols"], dependencies=[Depends(require_access)])

SourceRef = Annotated[str, Path(alias="idOrName", description="The source's id or name.")]
MAX_SAMPLES = 20
_MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def _store(request: Request) -> WorkspaceStore:
    store: WorkspaceStore = request.app.state.workspace_store
    return store


def _source_id(store: WorkspaceStore, id_or_name: str | None, field: str = "source") -> str:
    if not id_or_name:
        raise ApiError(400, "validation", f"{field}: required (a source id or name)", field)
    found = store.get_source(id_or_name)
    if found is None:
        raise ApiError(404, "not_found", f"no source has the id or name {id_or_name!r}")
    return found.id


@router.get("/violations", summary="A source's unique violations over the past 1h, 24h or 7d")
def list_violations(
    request: Request,
    source: str | None = None,
    window: str = "24h",
    trackingPlanId: str | None = None,  # Segment's spelling
    samples: int = 3,
) -> dict[str, Any]:
    store = _store(request)
    source_id = _source_id(store, source)
    if not 0 <= samples <= MAX_SAMPLES:
        raise ApiError(400, "validation", f"samples: 0 to {MAX_SAMPLES}", "samples")
    violations = ViolationStore(store.engine, clock=store.now)
    try:
        found = violations.summary(source_id, window, plan_id=trackingPlanId, samples=samples)
    except UnknownWindow:
        raise ApiError(
            400, "validation", f"window: one of {', '.join(WINDOWS)}", "window"
        ) from None
    return {"data": {"sourceId": source_id, "window": window, "violations": found}}


@router.get("/violations/digest", summary="A source's daily violations digest")
def violations_digest(
    request: Request, source: str | None = None, day: str | None = None
) -> dict[str, Any]:
    """``day`` (YYYY-MM-DD, US Eastern) the digest is sent on; today's by default."""
    store = _store(request)
    source_id = _source_id(store, source)
    if day is None:
        sent_on = datetime.fromtimestamp(store.now(), UTC).astimezone(DIGEST_ZONE).date()
    else:
        try:
            sent_on = date.fromisoformat(day)
        except ValueError:
            raise ApiError(400, "validation", "day: a date, YYYY-MM-DD", "day") from None
    digest = ViolationStore(store.engine, clock=store.now).digest(source_id, sent_on)
    return {"data": {"sourceId": source_id, "day": sent_on.isoformat(), "violations": digest}}


@router.get("/sources/{idOrName}/mtu", summary="A source's monthly tracked users")
def source_mtu(request: Request, source: SourceRef, month: str | None = None) -> dict[str, Any]:
    """``month`` YYYY-MM (UTC); this month by default."""
    store = _store(request)
    source_id = _source_id(store, source, "idOrName")
    if month is None:
        month = datetime.fromtimestamp(store.now(), UTC).strftime("%Y-%m")
    elif not _MONTH.match(month):
        raise ApiError(400, "validation", "month: YYYY-MM", "month")
    return {"data": MtuStore(store.engine, clock=store.now).count(source_id, month)}


@router.get("/sources/{idOrName}/blocked-events", summary="A source's newest blocked events")
def blocked_events(request: Request, source: SourceRef, count: int = 50) -> dict[str, Any]:
    store = _store(request)
    source_id = _source_id(store, source, "idOrName")
    if not 1 <= count <= 200:
        raise ApiError(400, "validation", "count: 1 to 200", "count")
    found = BlockedEvents(store.engine, clock=store.now).recent(source_id, count)
    return {"data": {"sourceId": source_id, "blockedEvents": found}}
