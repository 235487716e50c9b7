"""The workspace's data retention (Privacy → Settings → Data Retention, spec §10.6)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, StrictInt

from headwater.store.retention import OPTIONS, UNLIMITED, DataRetention, parse_retention, shown

router = APIRouter(prefix="/workspace", tags=["workspace"])


class RetentionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    retention: StrictInt | Literal["unlimited"]


def retention_of(request: Request) -> DataRetention:
    state = request.app.state
    return DataRetention(state.workspace_store, state.archive_retention_days)


def _json(retention: DataRetention) -> dict[str, Any]:
    chosen, _ = retention.chosen()
    return {
        "retention": shown(retention.days()),
        "source": "workspace" if chosen else "server",
        "options": [*OPTIONS, UNLIMITED],
    }


@router.get("/data-retention", response_model=None)
def get_data_retention(request: Request) -> dict[str, Any]:
    """How long the archive keeps events: the workspace's choice, else the server's
    ``archive_retention_days`` (``source`` says which)."""
    return {"data": {"dataRetention": _json(retention_of(request))}}


@router.put("/data-retention", response_model=None)
def put_data_retention(body: RetentionBody, request: Request) -> dict[str, Any]:
    """Set the workspace's retention: 14, 30, 90, 180, 365 days or ``"unlimited"``. Archived
    events older than it are purged by the next maintenance pass, and replay refuses a
    window that starts before it."""
    retention = retention_of(request)
    retention.set(parse_retention(body.retention, "retention"))
    return {"data": {"dataRetention": _json(retention)}}
