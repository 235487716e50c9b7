"""A REST API client on a fresh workspace with a source ``web`` and one destination."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.api.debugger import router as debugger_router
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore

TOKEN = "test-admin-token"


@contextmanager
def api_with_destination(engine: Engine, destination: dict[str, Any]) -> Iterator[TestClient]:
    """On a migrated, empty database: the shared ``engine`` fixture (SQLite and PostgreSQL)."""
    WorkspaceStore(engine).ensure_workspace("acme")
    app = create_api(
        engine, admin_token_hash=hash_token(TOKEN), extra_routers=[debugger_router]
    )  # as the server mounts it
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        assert http.post("/api/v1/sources", json={"name": "web"}).status_code == 201
        created = http.post("/api/v1/destinations", json={"source": "web", **destination})
        assert created.status_code == 201, created.text
        yield http
