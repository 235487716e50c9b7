"""``GET /segment/v1/``: the workspace this server is, as Segment's ``getWorkspace`` answers.

Segment's SDKs call it first to check the token and learn the workspace id; a server that has
no workspace yet makes the default one, as creating a source would.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from headwater.api.segment.envelope import data
from headwater.api.sources import store_of
from headwater.store.workspace import WorkspaceStore

router = APIRouter(tags=["segment workspace"])


Store = Annotated[WorkspaceStore, Depends(store_of)]


@router.get("/", response_model=None)
def get_workspace(store: Store) -> dict[str, Any]:
    workspace = store.workspace()
    if workspace is None:
        with store.writing() as conn:
            store.workspace_id(conn, create=True)
        workspace = store.workspace()
    assert workspace is not None
    return data(workspace={"id": workspace.id, "slug": workspace.slug, "name": workspace.name})
