"""``/api/v1/workspace/settings``: the workspace's name and its HIPAA-eligible flag (Settings →
Workspace Settings → General; §13, §19). Workspace Owners only, as every ``/workspace`` route."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, StrictBool

from headwater.store.workspace import HIPAA_ELIGIBLE, WorkspaceStore

router = APIRouter(prefix="/workspace", tags=["workspace"])


class SettingsBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hipaaEligible: StrictBool | None = None


def _json(store: WorkspaceStore) -> dict[str, Any]:
    workspace = store.workspace()
    return {
        "data": {
            "workspace": {
                "id": workspace.id if workspace else None,
                "name": workspace.name if workspace else None,
                "slug": workspace.slug if workspace else None,
                "hipaaEligible": bool(workspace and workspace.hipaa_eligible),
            }
        }
    }


@router.get("/settings", response_model=None)
def get_settings(request: Request) -> dict[str, Any]:
    return _json(request.app.state.workspace_store)


@router.patch("/settings", response_model=None)
def update_settings(body: SettingsBody, request: Request) -> dict[str, Any]:
    """``hipaaEligible: true`` ends members' web sessions after 15 idle minutes (§13)."""
    store: WorkspaceStore = request.app.state.workspace_store
    if body.hipaaEligible is not None:
        store.set_setting(HIPAA_ELIGIBLE, body.hipaaEligible)
    return _json(store)
