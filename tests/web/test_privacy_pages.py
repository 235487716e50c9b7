"""The Privacy pages (SQLite and PostgreSQL): creating a regulation (and the API's refusals on
the form), its status page, the suppressed users, the Privacy Portal's Inbox and Inventory and
consent categories for Workspace Owners only, and 403 for a role without Privacy."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from headwater.web.app import WebApp
from tests.support.clock import Clock

TOKEN = "test-admin-token"


@pytest.fixture
def api(engine: Engine, clock: Clock) -> FastAPI:
    store = WorkspaceStore(engine, clock=clock)
    store.ensure_workspace("acme")
    store.create_source("web")
    return create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)


@pytest.fixture
def web(api: FastAPI, engine: Engine, clock: Clock) -> Iterator[TestClient]:
    app = WebApp(
        api, WorkspaceStore(engine, clock=clock), admin_token_hash=hash_token(TOKEN), clock=clock
    )
    with TestClient(app, follow_redirects=False) as http:
        yield http


def sign_in(web: TestClient, token: str = TOKEN) -> None:
    assert web.post("/login", data={"token": token, "next": "/"}).status_code == 303


def token_with(api: FastAPI, role_id: str) -> str:
    with TestClient(api, headers={"Authorization": f"Bearer {TOKEN}"}) as rest:
        permission = {"roleId": role_id, "resources": [{"type": "WORKSPACE"}]}
        made = rest.post("/api/v1/tokens", json={"description": "t", "permissions": [permission]})
        assert made.status_code == 201, made.text
        token: str = made.json()["data"]["token"]["token"]
        return token


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None
    return found.group(1)


def create(web: TestClient, **fields: str) -> object:
    data = {"csrf": csrf_of(web.get("/privacy").text), "source": "", **fields}
    return web.post("/privacy/regulations", data=data)


def test_creating_a_regulation_leads_to_its_status(web: TestClient) -> None:
    sign_in(web)
    page = web.get("/privacy")
    assert page.status_code == 200, page.text
    assert '<option value="SUPPRESS_WITH_DELETE" selected>' in page.text
    assert "No regulations yet." in page.text
    answer = web.post(
        "/privacy/regulations",
        data={
            "csrf": csrf_of(page.text),
            "regulationType": "SUPPRESS_WITH_DELETE",
            "subjectType": "USER_ID",
            "subjectIds": "u1\nu2\n\nu1",
            "source": "",
        },
    )
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert location.startswith("/privacy/regulations/")
    shown = web.get(location)
    assert shown.status_code == 200, shown.text
    assert '<dd id="status">INITIALIZED</dd>' in shown.text
    assert "<code>u1</code>" in shown.text and "<code>u2</code>" in shown.text
    listing = web.get("/privacy").text
    regulation = location.rsplit("/", 1)[1]
    assert f'<a href="/privacy/regulations/{regulation}">' in listing
    assert "USER_ID: u1, u2" in listing and "INITIALIZED" in listing


def test_a_source_regulation(web: TestClient) -> None:
    sign_in(web)
    page = web.get("/privacy").text
    source = re.search(r'<option value="([^"]+)">Source: web</option>', page)
    assert source is not None
    answer = web.post(
        "/privacy/regulations",
        data={
            "csrf": csrf_of(page),
            "regulationType": "SUPPRESS_ONLY",
            "subjectType": "USER_ID",
            "subjectIds": "u7",
            "source": source.group(1),
        },
    )
    assert answer.status_code == 303, answer.text
    listing = web.get("/privacy").text
    assert "SUPPRESS_ONLY" in listing and "USER_ID: u7" in listing


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        (
            {"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID", "subjectIds": " "},
            400,
            "at least one subject",
        ),
        (
            {"regulationType": "NOPE", "subjectType": "USER_ID", "subjectIds": "u1"},
            400,
            "regulationType",
        ),
        (
            {"regulationType": "SUPPRESS_ONLY", "subjectType": "ANONYMOUS_ID", "subjectIds": "a"},
            400,
            "subjectType",
        ),
    ],
)
def test_a_refused_regulation_shows_the_error_by_the_form(
    web: TestClient, fields: dict[str, str], status: int, message: str
) -> None:
    sign_in(web)
    answer = create(web, **fields)
    assert answer.status_code == status, answer.text  # type: ignore[attr-defined]
    text: str = answer.text  # type: ignore[attr-defined]
    shown = re.search(r'<p id="regulation-error" class="error" role="alert">([^<]+)</p>', text)
    assert shown is not None and message in shown.group(1), text
    assert 'aria-invalid="true"' in text


def test_forms_need_the_csrf_token_and_unknown_regulations_are_404(web: TestClient) -> None:
    sign_in(web)
    forged = web.post(
        "/privacy/regulations",
        data={
            "csrf": "x",
            "regulationType": "SUPPRESS_ONLY",
            "subjectType": "USER_ID",
            "subjectIds": "u1",
        },
    )
    assert forged.status_code == 403
    assert "No regulations yet." in web.get("/privacy").text
    assert web.get("/privacy/regulations/nope").status_code == 404


def test_owners_see_the_portal_and_consent_categories(web: TestClient) -> None:
    sign_in(web)
    page = web.get("/privacy")
    assert 'href="/privacy/portal"' in page.text and 'href="/privacy/consent"' in page.text
    portal = web.get("/privacy/portal")
    assert portal.status_code == 200, portal.text
    assert "No fields seen in the last 7 days." in portal.text
    consent = web.get("/privacy/consent")
    assert consent.status_code == 200 and "No consent categories yet." in consent.text
    added = web.post(
        "/privacy/consent",
        data={
            "csrf": csrf_of(consent.text),
            "categoryId": "C0002",
            "name": "Analytics",
            "destinations": "webhook",
        },
    )
    assert added.status_code == 303, added.text
    listing = web.get("/privacy/consent").text
    assert "<code>C0002</code>" in listing and "<td>Analytics</td>" in listing
    refused = web.post(
        "/privacy/consent",
        data={
            "csrf": csrf_of(listing),
            "categoryId": "C0003",
            "name": "Ads",
            "destinations": "no-such-type",
        },
    )
    assert refused.status_code in (400, 404, 422), refused.text
    assert 'id="category-error"' in refused.text


def test_a_privacy_admin_gets_regulations_but_not_the_portal(web: TestClient, api: FastAPI) -> None:
    sign_in(web, token_with(api, "end-user-privacy-admin"))
    page = web.get("/privacy")
    assert page.status_code == 200, page.text
    assert 'href="/privacy/portal"' not in page.text
    assert web.get("/privacy/portal").status_code == 403
    assert web.get("/privacy/consent").status_code == 403
    answer = create(web, regulationType="SUPPRESS_ONLY", subjectType="USER_ID", subjectIds="u9")
    assert answer.status_code == 303  # type: ignore[attr-defined]


def test_a_role_without_privacy_gets_403(web: TestClient, api: FastAPI) -> None:
    sign_in(web, token_with(api, "source-read-only"))
    refused = web.get("/privacy")
    assert refused.status_code == 403 and "Regulations" not in refused.text
    assert web.post("/privacy/regulations", data={"csrf": "x"}).status_code == 403
