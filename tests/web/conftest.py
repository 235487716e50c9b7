"""What the web pages' tests share: the admin token, the web app over a module's ``api``
fixture, a client signed in with that token, a role's API token, and a form's CSRF token."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from headwater.web.app import WebApp
from tests.support.clock import Clock

TOKEN = "test-admin-token"


@pytest.fixture
def app(api: FastAPI, engine: Engine, clock: Clock) -> WebApp:
    """The web app over the module's ``api`` fixture (the REST API with its workspace)."""
    store = WorkspaceStore(engine, clock=clock)
    return WebApp(api, store, admin_token_hash=hash_token(TOKEN), clock=clock)


@pytest.fixture
def web(app: WebApp) -> Iterator[TestClient]:
    """A client signed in with the admin token; redirects are the tests' to check."""
    with TestClient(app, follow_redirects=False) as http:
        assert http.post("/login", data={"token": TOKEN, "next": "/"}).status_code == 303
        yield http


def api_token(api: FastAPI, role_id: str) -> str:
    """A new API token with ``role_id`` on the whole workspace, to sign in with that role."""
    with TestClient(api, headers={"Authorization": f"Bearer {TOKEN}"}) as rest:
        permission = {"roleId": role_id, "resources": [{"type": "WORKSPACE"}]}
        made = rest.post("/api/v1/tokens", json={"description": "web", "permissions": [permission]})
        assert made.status_code == 201, made.text
        token: str = made.json()["data"]["token"]["token"]
        return token


def csrf_of(page: str) -> str:
    """The CSRF token of the page's (first) form."""
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)
