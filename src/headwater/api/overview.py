"""The workspace overview: each source's events and each destination's deliveries over the last
hours, in one answer (Segment's Workspace Home and the app's flow of sources to destinations)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from headwater.api.auth import ReadableSources
from headwater.delivery.engine import DELIVERED, FAILED_DELIVERY, RETRY
from headwater.destinations.store import DestinationStore
from headwater.store.counters import (
    ACCEPTED,
    FAILED_ON_INGEST,
    FILTERED_AT_SOURCE,
    RECEIVED,
    CounterStore,
    minute_of,
)
from headwater.store.workspace import WorkspaceStore

router = APIRouter(tags=["overview"])


@router.get("/overview", response_model=None)
def workspace_overview(
    request: Request,
    only: ReadableSources,
    hours: Annotated[int, Query(ge=1, le=14 * 24, description="Look back this many hours.")] = 24,
) -> dict[str, Any]:
    """Every source and destination the caller may read, with its counts over the last
    ``hours``."""
    store: WorkspaceStore = request.app.state.workspace_store
    since = minute_of(request.app.state.clock()) - hours * 60
    sources: dict[str, dict[str, int]] = {}
    destinations: dict[str, dict[str, int]] = {}
    for source_id, destination_id, step, events in CounterStore(store.engine).by_connection(since):
        if destination_id:
            counts = destinations.setdefault(destination_id, {})
        else:
            counts = sources.setdefault(source_id, {})
        counts[step] = counts.get(step, 0) + events
    source_rows = [
        {
            "id": s.id,
            "name": s.name,
            "enabled": s.enabled,
            "received": sources.get(s.id, {}).get(RECEIVED, 0),
            "accepted": sources.get(s.id, {}).get(ACCEPTED, 0),
            "failedOnIngest": sources.get(s.id, {}).get(FAILED_ON_INGEST, 0),
            "filteredAtSource": sources.get(s.id, {}).get(FILTERED_AT_SOURCE, 0),
        }
        for s in store.all_sources()
        if only is None or s.id in only
    ]
    destination_rows = [
        {
            "id": d.id,
            "name": d.name,
            "type": d.type,
            "sourceId": d.source_id,
            "enabled": d.enabled,
            "delivered": destinations.get(d.id, {}).get(DELIVERED, 0),
            "failed": destinations.get(d.id, {}).get(FAILED_DELIVERY, 0),
            "retrying": destinations.get(d.id, {}).get(RETRY, 0),
        }
        for d in DestinationStore(store).list()
        if only is None or d.source_id in only
    ]
    return {"data": {"hours": hours, "sources": source_rows, "destinations": destination_rows}}
