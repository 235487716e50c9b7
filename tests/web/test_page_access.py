"""Every page of the web app with each of Segment's roles (issue 18): a page whose area the role
reads answers 200 (or sends on with 303), every other page answers 403 with nothing of it —
no resource's name — and a form posted to it changes nothing.

The walk takes the pages from the app's route table, so a page added later is walked without
touching this file; a path parameter the walk cannot fill fails it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from starlette.routing import Route

from headwater.api.app import create_api
from headwater.api.debugger import router as debugger_router
from headwater.api.source_schema import router as source_schema_router
from headwater.api.tester import router as event_tester_router
from headwater.api.violations import router as violations_router
from headwater.iam.roles import ROLES
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from headwater.web.app import WebApp
from tests.support.clock import Clock

TOKEN = "test-admin-token"
# Names that only the pages of their area may show.
SECRET_NAMES = ("src-walk", "hook-walk", "wh-walk", "space-walk", "tp-walk", "fn-walk", "tf-walk")
# Pages the walk does not visit as a signed-in role: public, or streams.
PUBLIC = {"/login", "/login/code", "/logout", "/invite/{token}"}
STREAMS = {"/sources/{source}/debugger/stream"}


def _made(response: Any) -> dict[str, Any]:
    assert response.status_code in (200, 201, 202), response.text
    data: dict[str, Any] = response.json()["data"]
    return data


@pytest.fixture
def api(engine: Engine, clock: Clock) -> FastAPI:
    WorkspaceStore(engine, clock=clock).ensure_workspace("acme")
    return create_api(
        engine,
        admin_token_hash=hash_token(TOKEN),
        extra_routers=[
            debugger_router,
            violations_router,
            source_schema_router,
            event_tester_router,
        ],
        clock=clock,
    )


@pytest.fixture
def seeded(api: FastAPI) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """(path parameter → value, role → a token of that role over the workspace)."""
    with TestClient(api, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        source = _made(http.post("/api/v1/sources", json={"name": "src-walk"}))["source"]
        hook = _made(
            http.post(
                "/api/v1/destinations",
                json={
                    "name": "hook-walk",
                    "type": "webhook",
                    "source": "src-walk",
                    "settings": {"url": "http://127.0.0.1:9/"},
                },
            )
        )["destination"]
        warehouse = _made(
            http.post("/api/v1/warehouses", json={"name": "wh-walk", "type": "duckdb"})
        )["warehouse"]
        space = _made(
            http.post("/api/v1/spaces", json={"name": "space-walk", "sourceIds": [source["id"]]})
        )["space"]
        plan = _made(http.post("/api/v1/tracking-plans", json={"name": "tp-walk"}))["trackingPlan"]
        transformation = _made(
            http.post(
                "/api/v1/transformations",
                json={
                    "name": "tf-walk",
                    "sourceId": source["id"],
                    "enabled": True,
                    "if": "event='Walked'",
                    "newEventName": "Walk Done",
                },
            )
        )["transformation"]
        function = _made(
            http.post(
                "/api/v1/functions",
                json={
                    "name": "fn-walk",
                    "kind": "insert",
                    "language": "javascript",
                    "code": "async function onTrack(event) { return event }\n",
                },
            )
        )["function"]
        walk_filter = _made(
            http.post(
                f"/api/v1/destinations/{hook['id']}/filters",
                json={"title": "hook-walk filter", "if": "all", "actions": [{"type": "DROP"}]},
            )
        )["filter"]
        audience = _made(
            http.post(
                f"/api/v1/spaces/{space['id']}/audiences",
                json={"name": "Buyers", "definition": {"query": "event('Order').count() >= 1"}},
            )
        )["audience"]
        journey = _made(
            http.post(
                f"/api/v1/spaces/{space['id']}/journeys",
                json={
                    "name": "First Purchase",
                    "definition": {
                        "entry": {"audience": "buyers"},
                        "steps": [{"name": "Wait", "delay": {"days": 1}}],
                    },
                },
            )
        )["journey"]
        regulation = _made(
            http.post(
                "/api/v1/regulations",
                json={
                    "regulationType": "SUPPRESS_ONLY",
                    "subjectType": "USER_ID",
                    "subjectIds": ["u-walk"],
                },
            )
        )["regulateId"]
        user = _made(http.post("/api/v1/users", json={"email": "member@example.com"}))["user"]
        group = _made(http.post("/api/v1/groups", json={"name": "walkers"}))["userGroup"]
        _made(http.post("/api/v1/labels", json={"label": {"key": "env", "value": "walk"}}))
        invite = _made(
            http.post("/api/v1/invites", json={"email": "new@example.com", "permissions": []})
        )["invite"]
        tokens = {
            role: _made(
                http.post(
                    "/api/v1/tokens",
                    json={
                        "description": role,
                        "permissions": [{"roleId": role, "resources": [{"type": "WORKSPACE"}]}],
                    },
                )
            )["token"]
            for role in ROLES
        }
        params = {
            "source": source["id"],
            "destination": hook["id"],
            "warehouse": warehouse["id"],
            "space": space["id"],
            "plan": plan["id"],
            "transformation": transformation["id"],
            "function": function["id"],
            "version": "1",
            "filter": walk_filter["id"],
            "mapping": "no-such-mapping",  # hook-walk has none (not an Actions destination)
            "type": "webhook",  # a catalog entry
            "audience": audience["id"],
            "journey": journey["id"],
            "regulation": regulation,
            "profile": "use_no_such_profile",  # a reader gets the page's 404
            "user": user["id"],
            "group": group["id"],
            "invite": invite["id"],
            "key": "env",
            "value": "walk",
            "token": tokens["workspace-member"]["id"],
        }
        yield params, {role: made["token"] for role, made in tokens.items()}


def _pages(web: WebApp) -> list[tuple[str, str, Any]]:
    """(method, path template, area) of every signed-in page."""
    found = []
    for route in web.app.routes:
        if not isinstance(route, Route) or route.path in PUBLIC | STREAMS:
            continue
        assert route.endpoint in web.areas, f"{route.path} is not a signed-in page"
        for method in sorted(route.methods or ()):
            if method != "HEAD":
                found.append((method, route.path, web.areas[route.endpoint]))
    return found


def _fill(template: str, params: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1).split(":")[0]
        assert name in params, f"the walk has no value for {{{name}}} in {template}"
        return params[name]

    return re.sub(r"\{([^}]+)\}", value, template)


def test_every_page_with_each_role(
    api: FastAPI,
    engine: Engine,
    clock: Clock,
    seeded: tuple[dict[str, str], dict[str, str]],
) -> None:
    params, tokens = seeded
    web = WebApp(
        api, WorkspaceStore(engine, clock=clock), admin_token_hash=hash_token(TOKEN), clock=clock
    )
    pages = _pages(web)
    assert len(pages) > 10
    problems: list[str] = []
    with TestClient(web, follow_redirects=False) as browser:
        for role, token in tokens.items():
            browser.cookies.clear()
            signed = browser.post("/login", data={"token": token, "next": "/"})
            assert signed.status_code == 303, signed.text
            home = browser.get("/")
            assert home.status_code == 200, (role, home.text)
            csrf = re.search(r'name="csrf" value="([^"]+)"', home.text)
            assert csrf is not None
            owner = ROLES[role].id == "workspace-owner"
            for method, template, area in pages:
                reads = owner or area is None or role_reads(role, area)
                path = _fill(template, params)
                if method == "GET":
                    answer = browser.get(path)
                    if reads and answer.status_code not in (200, 303, 404):
                        problems.append(f"{role} GET {template}: {answer.status_code}")
                elif not reads:  # a form: only a role that reads the area gets past the check
                    answer = browser.post(path, data={"csrf": csrf.group(1)})
                else:
                    continue
                if not reads:
                    if answer.status_code != 403:
                        problems.append(f"{role} {method} {template}: {answer.status_code}")
                    leaked = [name for name in SECRET_NAMES if name in answer.text]
                    if leaked:
                        problems.append(f"{role} {method} {template} shows {leaked}")
                assert answer.status_code < 500, (role, method, template, answer.text)
    assert problems == []


def role_reads(role: str, area: Any) -> bool:
    found = ROLES[role]
    return area in found.reads or area in found.writes
