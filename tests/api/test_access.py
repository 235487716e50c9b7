"""Access checks on every route: 401 without a token, 403 for a token whose roles do not reach
the route's area or resource, never for one whose roles do (§20, A-API-1, A-API-4, A-IAM-1).

The walk takes the routes from the application's OpenAPI document, as the server mounts them,
so a route added later is checked without touching this file; a route no area covers fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import PREFIX, create_api
from headwater.api.areas import route_access
from headwater.api.auth import pii_access
from headwater.api.debugger import router as debugger_router
from headwater.api.source_schema import router as source_schema_router
from headwater.api.tester import router as event_tester_router
from headwater.api.violations import router as violations_router
from headwater.iam.roles import ROLES, WORKSPACE_OWNER
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.api.test_sources_api import assert_error

ADMIN = "test-admin-token"
EXTRA = [debugger_router, violations_router, source_schema_router, event_tester_router]


def _app(engine: Engine) -> FastAPI:
    return create_api(engine, admin_token_hash=hash_token(ADMIN), extra_routers=EXTRA)


def _operations() -> list[tuple[str, str]]:
    spec = _app(sa.create_engine("sqlite://")).openapi()
    return [(m.upper(), path) for path, ops in spec["paths"].items() for m in ops]


OPERATIONS = _operations()


@pytest.fixture
def admin(engine: Engine) -> Iterator[TestClient]:
    WorkspaceStore(engine).ensure_workspace("acme")
    app = _app(engine)
    with TestClient(
        app, headers={"Authorization": f"Bearer {ADMIN}"}, raise_server_exceptions=False
    ) as http:
        yield http


def _token(admin: TestClient, *permissions: dict[str, Any], pii: bool = False) -> str:
    made = admin.post(
        f"{PREFIX}/tokens",
        json={"description": "t", "permissions": list(permissions), "piiAccess": pii},
    )
    assert made.status_code == 201, made.text
    token: str = made.json()["data"]["token"]["token"]
    return token


def _role(role_id: str, **resource: Any) -> dict[str, Any]:
    return {"roleId": role_id, "resources": [{"type": "WORKSPACE", **resource}]}


def _as(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_route_maps_to_an_area() -> None:
    unmapped = [
        f"{method} {path}"
        for method, path in OPERATIONS
        if route_access(method, path.removeprefix(PREFIX)) is None
    ]
    assert unmapped == [], "add these routes to api/areas.py"


def _fill(path: str) -> str:
    """The route's path with every parameter naming nothing that exists."""
    parts = [("nothing-here" if p.startswith("{") else p) for p in path.split("/")]
    return "/".join(parts)


@pytest.mark.parametrize("role_id", [r for r in ROLES if r != WORKSPACE_OWNER])
def test_a_token_reaches_exactly_the_routes_of_its_roles_areas(
    admin: TestClient, role_id: str
) -> None:
    headers = _as(_token(admin, _role(role_id)))
    wrong: list[str] = []
    for method, path in OPERATIONS:
        needs = route_access(method, path.removeprefix(PREFIX))
        assert needs is not None
        allowed = ROLES[role_id].can(needs.area, needs.write)
        body: dict[str, Any] | None = None if method in ("GET", "HEAD", "DELETE") else {}
        got = admin.request(method, _fill(path), json=body, headers=headers).status_code
        if (got == 403) == allowed or got == 401:
            wrong.append(f"{method} {path}: {got} (allowed: {allowed})")
    assert wrong == []


def test_no_token_401_and_member_without_tracking_plan_read_403(admin: TestClient) -> None:
    """A-API-1: no token → 401; a Workspace Member token without Tracking Plan read → 403."""
    plans = f"{PREFIX}/tracking-plans"
    assert_error(admin.get(plans, headers={"Authorization": ""}), 401, "unauthorized")
    assert_error(admin.get(plans, headers=_as("hwp_" + "x" * 40)), 401, "unauthorized")
    member = _as(_token(admin, _role("workspace-member"), _role("source-admin")))
    assert_error(admin.get(plans, headers=member), 403, "forbidden")
    assert admin.get(f"{PREFIX}/sources", headers=member).status_code == 200
    reader = _as(_token(admin, _role("tracking-plan-read-only")))
    assert admin.get(plans, headers=reader).status_code == 200
    assert_error(admin.post(plans, json={"name": "p"}, headers=reader), 403, "forbidden")
    # A body the route would refuse is still a 403 first: nothing about inputs leaks.
    assert_error(
        admin.post(plans, content=b"{", headers={**reader, "Content-Type": "application/json"}),
        403,
        "forbidden",
    )


def test_only_owners_create_tokens_and_the_plaintext_is_shown_once(admin: TestClient) -> None:
    """A-API-4."""
    source_admin = _as(_token(admin, _role("source-admin")))
    refused = admin.post(f"{PREFIX}/tokens", json={"description": "mine"}, headers=source_admin)
    assert_error(refused, 403, "forbidden")
    made = admin.post(
        f"{PREFIX}/tokens",
        json={"description": "ci", "permissions": [_role("workspace-owner")]},
    )
    assert made.status_code == 201, made.text
    token = made.json()["data"]["token"]
    plaintext = token["token"]
    assert plaintext.startswith("hwp_") and len(plaintext) == 44
    listed = admin.get(f"{PREFIX}/tokens")
    assert plaintext not in listed.text
    (shown,) = [t for t in listed.json()["data"]["tokens"] if t["id"] == token["id"]]
    assert "token" not in shown and shown["description"] == "ci"
    assert shown["createdBy"] == "Admin token"
    # The owner token works as an owner: it creates a token itself.
    again = admin.post(f"{PREFIX}/tokens", json={"description": "x"}, headers=_as(plaintext))
    assert again.status_code == 201, again.text
    assert admin.delete(f"{PREFIX}/tokens/{token['id']}").status_code == 200
    assert_error(admin.get(f"{PREFIX}/sources", headers=_as(plaintext)), 401, "unauthorized")


def test_the_principal_and_its_pii_access_reach_the_route(engine: Engine) -> None:
    """What later readers (masking, the Audit Trail) find in ``request.state``."""
    probe = APIRouter()

    @probe.get("/sources/{idOrName}/probe")
    def _probe(request: Request) -> dict[str, Any]:
        principal = request.state.principal
        return {
            "pii": pii_access(request),
            "actor": [principal.kind, principal.id, principal.name, principal.email],
        }

    WorkspaceStore(engine).ensure_workspace("acme")
    app = create_api(engine, admin_token_hash=hash_token(ADMIN), extra_routers=[probe])
    with TestClient(app, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
        url = f"{PREFIX}/sources/web/probe"
        assert admin.get(url).json() == {
            "pii": True,
            "actor": ["admin", "admin", "Admin token", None],
        }
        for pii in (False, True):
            token = _token(admin, _role("source-read-only"), pii=pii)
            answer = admin.get(url, headers=_as(token)).json()
            assert answer["pii"] is pii
            assert answer["actor"][0] == "token" and answer["actor"][2] == "t"
