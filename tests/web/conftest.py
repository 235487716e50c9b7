"""What the web app's tests share.

Page tests: the admin token, the web app over a module's ``api`` fixture, a client signed in
with that token, a role's API token, and a form's CSRF token. Browser tests: one Chromium a
module, and one live server a module started from that module's ``CONFIG``. A module that
needs another of any of these defines its own fixture, which takes precedence.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.sync_api import Browser
from sqlalchemy.engine import Engine

from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from headwater.web.app import WebApp
from tests.support.browser import chromium, live_app
from tests.support.clock import Clock
from tests.support.live import LiveServer

TOKEN = "test-admin-token"


# --- page tests ------------------------------------------------------------------------------


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


# --- browser tests ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless Chromium shared by the module's tests (each opens its own context)."""
    with chromium() as found:
        yield found


@pytest.fixture(scope="module")
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A running server with the test module's ``CONFIG`` as its headwater.yaml."""
    config = getattr(request.module, "CONFIG", None)
    if not isinstance(config, str):
        raise TypeError(f"{request.module.__name__} needs a CONFIG (headwater.yaml text)")
    name = request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with live_app(tmp_path_factory.mktemp(name), config) as live:
        yield live
