"""The web app's sign-in, sessions and first pages (SQLite and PostgreSQL), through its routes
and the REST API it calls in process: redirects to sign-in, the admin token signing in, CSRF on
sign-out, no open redirect, escaping, the Home page's flow with real counters."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.iam.tokens import TokenStore
from headwater.iam.users import UserStore
from headwater.store.admin_token import hash_token
from headwater.store.counters import RECEIVED, CounterKey, CounterStore, minute_of
from headwater.store.workspace import WorkspaceStore
from headwater.web.app import COOKIE, WebApp
from headwater.web.sessions import LIFETIME
from tests.support.clock import Clock
from tests.web.conftest import TOKEN
from tests.web.conftest import api_token as role_token


def api_token(engine: Engine, role_id: str) -> str:
    """An API token with one role over the workspace, made as the admin token makes one."""
    return role_token(create_api(engine, admin_token_hash=hash_token(TOKEN)), role_id)


@pytest.fixture
def web(engine: Engine, clock: Clock) -> Iterator[TestClient]:
    store = WorkspaceStore(engine, clock=clock)
    store.ensure_workspace("acme")
    api = create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)
    with TestClient(api, headers={"Authorization": f"Bearer {TOKEN}"}) as rest:
        assert rest.post("/api/v1/sources", json={"name": "web"}).status_code == 201
        assert rest.post("/api/v1/sources", json={"name": "<script>x</script>"}).status_code == 201
        hook = {
            "source": "web",
            "name": "hook",
            "type": "webhook",
            "settings": {"url": "http://127.0.0.1:9/hook"},
        }
        created = rest.post("/api/v1/destinations", json=hook)
        assert created.status_code == 201
    app = WebApp(api, store, admin_token_hash=hash_token(TOKEN), clock=clock)
    with TestClient(app, follow_redirects=False) as http:
        yield http


def sign_in(web: TestClient, token: str = TOKEN, target: str = "/") -> None:
    answer = web.post("/login", data={"token": token, "next": target})
    assert answer.status_code == 303, answer.text


def test_pages_need_a_session_and_the_admin_token_signs_in(web: TestClient) -> None:
    answer = web.get("/sources?x=1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/sources%3Fx%3D1"
    page = web.get("/login")
    assert page.status_code == 200 and 'name="token"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]

    refused = web.post("/login", data={"token": "wrong", "next": "/"})
    assert refused.status_code == 401 and "not valid" in refused.text
    assert COOKIE not in refused.cookies

    signed = web.post("/login", data={"token": TOKEN, "next": "/sources"})
    assert signed.status_code == 303 and signed.headers["location"] == "/sources"
    cookie = signed.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and TOKEN not in cookie
    sources = web.get("/sources")
    assert sources.status_code == 200
    assert "hook" in sources.text  # the destinations connected to each source
    assert "&lt;script&gt;x&lt;/script&gt;" in sources.text and "<script>x" not in sources.text


@pytest.mark.parametrize(
    "target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:x"]
)
def test_signing_in_never_sends_anyone_elsewhere(web: TestClient, target: str) -> None:
    answer = web.post("/login", data={"token": TOKEN, "next": target})
    assert answer.headers["location"] == "/"


def test_home_draws_each_connection_with_its_counts(
    web: TestClient, engine: Engine, clock: Clock
) -> None:
    store = WorkspaceStore(engine)
    source = store.get_source("web")
    assert source is not None
    minute = minute_of(clock())
    counters = CounterStore(engine)
    counters.add({CounterKey(source.id, "", RECEIVED, ""): 1234}, minute=minute)
    sign_in(web)
    page = web.get("/")
    assert page.status_code == 200
    assert "1,234 events" in page.text
    assert page.text.count("<line ") == 1  # web → hook
    assert 'aria-current="page"' in page.text


def test_sign_out_needs_the_forms_csrf_token(web: TestClient) -> None:
    sign_in(web)
    assert web.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert web.get("/").status_code == 200  # still signed in
    home = web.get("/").text
    csrf = home.split('name="csrf" value="')[1].split('"')[0]
    assert web.post("/logout", data={"csrf": csrf}).status_code == 303
    assert web.get("/").status_code == 303  # signed out


def test_sessions_end_after_seven_days(web: TestClient, clock: Clock) -> None:
    sign_in(web)
    clock.advance(LIFETIME - 60)
    assert web.get("/").status_code == 200
    clock.advance(120)
    assert web.get("/").status_code == 303


def test_a_hipaa_eligible_workspace_ends_sessions_after_15_idle_minutes(
    web: TestClient, engine: Engine, clock: Clock
) -> None:
    """A-IAM-7: idle 15 minutes in a HIPAA-eligible workspace → signed out; activity keeps the
    session; the flag is the owner's, through the REST API."""
    api = create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)
    with TestClient(api, headers={"Authorization": f"Bearer {TOKEN}"}) as rest:
        assert rest.get("/api/v1/workspace/settings").json()["data"]["workspace"] == {
            "id": WorkspaceStore(engine).workspace().id,  # type: ignore[union-attr]
            "name": "acme",
            "slug": "acme",
            "hipaaEligible": False,
        }
        refused = rest.patch("/api/v1/workspace/settings", json={"hipaaEligible": "yes"})
        assert refused.status_code == 422
        reader = {"Authorization": f"Bearer {api_token(engine, 'source-admin')}"}
        denied = rest.patch(
            "/api/v1/workspace/settings", json={"hipaaEligible": True}, headers=reader
        )
        assert denied.status_code == 403
        sign_in(web)
        made = rest.patch("/api/v1/workspace/settings", json={"hipaaEligible": True})
        assert made.json()["data"]["workspace"]["hipaaEligible"] is True
    for _ in range(4):  # an hour of use, a request every 14 minutes
        clock.advance(14 * 60)
        assert web.get("/").status_code == 200
    clock.advance(15 * 60 + 1)
    assert web.get("/").status_code == 303  # to sign in again
    with TestClient(api, headers={"Authorization": f"Bearer {TOKEN}"}) as rest:
        assert rest.patch("/api/v1/workspace/settings", json={"hipaaEligible": False}).is_success
    sign_in(web)
    clock.advance(LIFETIME - 60)
    assert web.get("/").status_code == 200  # not HIPAA-eligible: 7 days


def test_unknown_pages_and_static_files(web: TestClient) -> None:
    missing = web.get("/no/such/page")
    assert missing.status_code == 404 and "There is no page" in missing.text
    css = web.get("/static/app.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert web.get("/static/../app.py").status_code == 404


def test_members_sign_in_with_a_password_or_an_api_token_and_see_what_their_roles_allow(
    web: TestClient, engine: Engine
) -> None:
    store = WorkspaceStore(engine)
    UserStore(store).create("ana@example.com", "Ana", password="correct horse battery")
    wrong = web.post("/login", data={"email": "ana@example.com", "password": "nope", "next": "/"})
    assert wrong.status_code == 401 and "wrong" in wrong.text
    signed = web.post(
        "/login", data={"email": "ana@example.com", "password": "correct horse battery"}
    )
    assert signed.status_code == 303
    # A member without roles: signed in, but Home's data is not theirs to read, nor any
    # section's; a page of one answers 403 with nothing of it.
    home = web.get("/")
    assert home.status_code == 200 and "hook" not in home.text and "None yet" in home.text
    assert 'href="/sources"' not in home.text
    refused = web.get("/sources")
    assert refused.status_code == 403 and "hook" not in refused.text
    web.cookies.clear()

    reader = api_token(engine, "source-read-only")
    sign_in(web, reader)
    assert web.get("/").status_code == 200 and ">hook</text>" in web.get("/").text
    # Revoking the token ends the sessions it signed in.
    token_id = TokenStore(store).list()[0].id
    TokenStore(store).delete(token_id)
    assert web.get("/").status_code == 303
