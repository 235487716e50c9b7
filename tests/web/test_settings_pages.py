"""The Settings pages (SQLite and PostgreSQL) through the web app and the REST API in process:
invites from the link shown once to a signed-in member with the invited role (and 403 where the
role does not reach), a member's roles, groups, labels, tokens shown once, the audit trail with
its filters, and two-factor authentication from enrolling to signing in with a code."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.api.audit import use_audit
from headwater.config.audit_view import workspace_view
from headwater.iam.access import Grant
from headwater.iam.invites import LIFETIME
from headwater.iam.permissions import PermissionStore
from headwater.iam.users import UserStore
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from headwater.web.app import COOKIE, WebApp
from tests.support.clock import Clock
from tests.web.conftest import csrf_of

TOKEN = "test-admin-token"
PASSWORD = "correct horse battery"


@pytest.fixture
def store(engine: Engine, clock: Clock) -> WorkspaceStore:
    workspace = WorkspaceStore(engine, clock=clock)
    workspace.ensure_workspace("acme")
    return workspace


@pytest.fixture
def api(engine: Engine, clock: Clock, store: WorkspaceStore) -> FastAPI:
    app = create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)
    use_audit(app, lambda: workspace_view(store))  # as the server does
    return app


@pytest.fixture
def app(api: FastAPI, store: WorkspaceStore, clock: Clock) -> WebApp:
    return WebApp(
        api,
        store,
        admin_token_hash=hash_token(TOKEN),
        clock=clock,
        public_url="https://hw.example.com",
    )


@pytest.fixture
def web(app: WebApp) -> Iterator[TestClient]:
    """Signed in with the admin token: the workspace's owner."""
    with TestClient(app, follow_redirects=False) as http:
        assert http.post("/login", data={"token": TOKEN, "next": "/"}).status_code == 303
        yield http


@pytest.fixture
def visitor(app: WebApp) -> Iterator[TestClient]:
    """A second browser, signed in as no one."""
    with TestClient(app, follow_redirects=False) as http:
        yield http


def post(web: TestClient, path: str, data: dict[str, str], page: str = "/settings/users") -> str:
    answer = web.post(path, data={"csrf": csrf_of(web.get(page).text), **data})
    assert answer.status_code in (200, 303), answer.text
    text: str = answer.text
    return text


def member(store: WorkspaceStore, email: str, *grants: Grant) -> str:
    user = UserStore(store).create(email, email.split("@")[0].title(), PASSWORD)
    PermissionStore(store).set("user", user.id, grants)
    return user.id


def sign_in(http: TestClient, email: str, password: str = PASSWORD) -> int:
    answer = http.post("/login", data={"email": email, "password": password, "next": "/"})
    status: int = answer.status_code
    return status


# --- invites ---------------------------------------------------------------------------------


def test_an_invite_link_signs_the_member_in_with_the_invited_role(
    web: TestClient, visitor: TestClient
) -> None:
    page = post(
        web,
        "/settings/invites",
        {"email": "Ana@Example.com", "role": "source-read-only", "scope": "WORKSPACE"},
    )
    link = re.search(r'<code id="invite-link">https://hw\.example\.com(/invite/[^<]+)</code>', page)
    assert link is not None, page
    path = link.group(1)
    assert 'data-copy="invite-link"' in page
    listing = web.get("/settings/users").text
    assert path not in listing  # shown once
    assert "ana@example.com" in listing and "Invite Pending" in listing
    assert "Source Read-only — All current and future resources" in listing

    joining = visitor.get(path)
    assert joining.status_code == 200
    assert "ana@example.com" in joining.text
    short = visitor.post(path, data={"name": "Ana", "password": "short"})
    assert short.status_code == 422
    assert "The password must be 8 to 1024 characters." in short.text
    assert visitor.post(path, data={"name": "", "password": PASSWORD}).status_code == 400

    joined = visitor.post(path, data={"name": "Ana", "password": PASSWORD})
    assert joined.status_code == 303 and joined.headers["location"] == "/"
    assert COOKIE in joined.cookies or visitor.cookies.get(COOKIE)
    sources = visitor.get("/sources")
    assert sources.status_code == 200
    assert 'href="/settings"' not in sources.text  # the navigation leaves Settings out
    refused = visitor.get("/settings/users")
    assert refused.status_code == 403 and "Not allowed" in refused.text
    assert visitor.get("/settings/tokens").status_code == 403
    assert visitor.get("/settings/audit").status_code == 403
    assert visitor.get("/settings/account").status_code == 200  # everyone's own account

    used = visitor.get(path)
    assert used.status_code == 410 and "used already" in used.text
    assert visitor.post(path, data={"name": "Eve", "password": PASSWORD}).status_code == 410
    listing = web.get("/settings/users").text
    assert "Invite Pending" not in listing
    assert re.search(r'<a href="/settings/users/\w+">Ana</a>', listing)
    audit = web.get("/settings/audit").text
    assert "Invite Created" in audit
    assert "Invite Accepted" in audit and "User Created" in audit
    assert path.removeprefix("/invite/") not in audit


def test_expired_and_revoked_invites_grant_nothing(
    web: TestClient, visitor: TestClient, clock: Clock
) -> None:
    csrf = csrf_of(web.get("/settings/users").text)
    no_role = web.post("/settings/invites", data={"csrf": csrf, "email": "bo@example.com"})
    assert no_role.status_code == 400 and "Choose a role." in no_role.text
    page = post(
        web,
        "/settings/invites",
        {"email": "bo@example.com", "role": "source-admin", "scope": "WORKSPACE"},
    )
    path = re.findall(r"https://hw\.example\.com(/invite/[^<]+)</code>", page)[0]
    clock.advance(LIFETIME + 1)
    expired = visitor.get(path)
    assert expired.status_code == 410 and "expired" in expired.text
    web.post("/login", data={"token": TOKEN})  # the owner's session lasted 7 days too
    assert "Expired" in web.get("/settings/users").text

    page = post(
        web,
        "/settings/invites",
        {"email": "bo@example.com", "role": "source-admin", "scope": "WORKSPACE"},
    )
    path = re.findall(r"https://hw\.example\.com(/invite/[^<]+)</code>", page)[0]
    invite_id = re.findall(r'action="/settings/invites/(\w+)/revoke"', page)[0]
    post(web, f"/settings/invites/{invite_id}/revoke", {})
    revoked = visitor.get(path)
    assert revoked.status_code == 404 and "revoked" in revoked.text
    assert visitor.get("/invite/" + "x" * 300).status_code == 404


def test_a_refused_invite_shows_the_apis_error(web: TestClient, store: WorkspaceStore) -> None:
    member(store, "cy@example.com")
    csrf = csrf_of(web.get("/settings/users").text)
    taken = web.post(
        "/settings/invites",
        data={
            "csrf": csrf,
            "email": "cy@example.com",
            "role": "source-admin",
            "scope": "WORKSPACE",
        },
    )
    assert taken.status_code == 409 and "member of this workspace already" in taken.text
    bad = web.post(
        "/settings/invites",
        data={"csrf": csrf, "email": "nope", "role": "source-admin", "scope": "WORKSPACE"},
    )
    assert bad.status_code == 422 and 'id="invite-error"' in bad.text
    forged = web.post("/settings/invites", data={"csrf": "forged", "email": "x@example.com"})
    assert forged.status_code == 403


def test_the_invites_api_answers_the_link_once(api: FastAPI) -> None:
    with TestClient(api) as http:
        http.headers["authorization"] = f"Bearer {TOKEN}"
        made = http.post(
            "/api/v1/invites",
            json={
                "email": "di@example.com",
                "permissions": [{"roleId": "source-admin", "resources": [{"type": "WORKSPACE"}]}],
            },
        )
        assert made.status_code == 201, made.text
        data = made.json()["data"]
        assert data["path"] == f"/invite/{data['token']}"
        assert data["invite"]["status"] == "pending"
        listed = http.get("/api/v1/invites")
        assert data["token"] not in listed.text
        assert [i["email"] for i in listed.json()["data"]["invites"]] == ["di@example.com"]
        invite_id = data["invite"]["id"]
        assert http.delete(f"/api/v1/invites/{invite_id}").status_code == 200
        assert http.delete(f"/api/v1/invites/{invite_id}").status_code == 404
        assert http.post("/api/v1/invites", json={"email": 5}).status_code == 422


# --- members, roles, groups, labels ----------------------------------------------------------


def test_a_members_roles_change_and_the_member_is_removed(
    web: TestClient, store: WorkspaceStore
) -> None:
    user_id = member(store, "ed@example.com")
    source_id = store.create_source("web").id
    page = web.get(f"/settings/users/{user_id}")
    assert page.status_code == 200 and "Minimal Workspace Access" in page.text
    assert f'<option value="SOURCE:{source_id}">Source: web</option>' in page.text
    member_page = f"/settings/users/{user_id}"
    post(
        web,
        f"{member_page}/roles",
        {"action": "add", "role": "source-admin", "scope": f"SOURCE:{source_id}"},
        member_page,
    )
    post(
        web,
        f"{member_page}/roles",
        {"action": "add", "role": "source-read-only", "scope": "LABEL:environment:prod"},
        member_page,
    )
    page = web.get(member_page).text
    assert "Source Admin — Source: web" in page
    assert "Source Read-only — Resources labeled environment:prod" in page
    # A role that does not apply to a source: the API's refusal, on the page.
    csrf = csrf_of(page)
    refused = web.post(
        f"{member_page}/roles",
        data={
            "csrf": csrf,
            "action": "add",
            "role": "function-admin",
            "scope": f"SOURCE:{source_id}",
        },
    )
    assert refused.status_code == 422 and "applies to WORKSPACE or FUNCTION" in refused.text
    post(web, f"{member_page}/roles", {"action": "remove", "index": "0"}, member_page)
    page = web.get(member_page).text
    assert "Source Admin — Source: web" not in page
    assert "Source Read-only — Resources labeled environment:prod" in page
    assert PermissionStore(store).grants("user", user_id) == (
        Grant("source-read-only", "WORKSPACE", None, (("environment", "prod"),)),
    )
    stale = web.post(f"{member_page}/roles", data={"csrf": csrf, "action": "remove", "index": "9"})
    assert stale.status_code == 400
    post(web, f"{member_page}/remove", {}, member_page)
    assert UserStore(store).get(user_id) is None
    assert web.get(member_page).status_code == 404
    assert web.get("/settings/users/..%2F..%2Fapi").status_code == 404


def test_roles_page_lists_segments_roles(web: TestClient) -> None:
    page = web.get("/settings/roles")
    assert page.status_code == 200
    assert '<th scope="row">Source Read-only</th>' in page.text
    assert "Workspace Owner" in page.text and "can be narrowed by labels" in page.text
    assert web.get("/settings").headers["location"] == "/settings/users"


def test_groups_are_created_and_deleted(web: TestClient) -> None:
    post(web, "/settings/groups", {"name": "Analysts"}, "/settings/groups")
    listing = web.get("/settings/groups").text
    assert "<td>Analysts</td>" in listing
    csrf = csrf_of(listing)
    empty = web.post("/settings/groups", data={"csrf": csrf, "name": " "})
    assert empty.status_code == 400 and "Enter a name." in empty.text
    twice = web.post("/settings/groups", data={"csrf": csrf, "name": "Analysts"})
    assert twice.status_code == 409 and 'id="group-error"' in twice.text
    group_id = re.findall(r'action="/settings/groups/(\w+)/delete"', listing)[0]
    post(web, f"/settings/groups/{group_id}/delete", {}, "/settings/groups")
    assert "Analysts" not in web.get("/settings/groups").text


def test_labels_are_created_refused_and_deleted(web: TestClient, store: WorkspaceStore) -> None:
    post(
        web,
        "/settings/labels",
        {"key": "product", "value": "car", "description": "Cars"},
        "/settings/labels",
    )
    listing = web.get("/settings/labels").text
    assert "<code>product:car</code>" in listing and "<code>environment:prod</code>" in listing
    csrf = csrf_of(listing)
    bad = web.post("/settings/labels", data={"csrf": csrf, "key": "1x", "value": "y"})
    assert bad.status_code == 422 and 'id="label-error"' in bad.text
    member(store, "fa@example.com", Grant("source-admin", "WORKSPACE", None, (("product", "car"),)))
    in_use = web.post("/settings/labels/product/car/delete", data={"csrf": csrf})
    assert in_use.status_code == 409 and 'id="label-error"' in in_use.text
    post(web, "/settings/labels/environment/dev/delete", {}, "/settings/labels")
    assert "environment:dev" not in web.get("/settings/labels").text


# --- tokens ----------------------------------------------------------------------------------


def test_a_token_is_shown_once_then_listed_without_its_secret(
    web: TestClient, visitor: TestClient
) -> None:
    page = post(
        web,
        "/settings/tokens",
        {"description": "CI deploys", "role": "source-read-only", "scope": "WORKSPACE"},
        "/settings/tokens",
    )
    found = re.search(r'<code id="new-token">(hwp_\w{40})</code>', page)
    assert found is not None, page
    secret = found.group(1)
    listing = web.get("/settings/tokens").text
    assert secret not in listing
    assert (
        "CI deploys" in listing and "Source Read-only — All current and future resources" in listing
    )
    # The token works: it signs in, as a Source Read-only.
    assert visitor.post("/login", data={"token": secret, "next": "/"}).status_code == 303
    assert visitor.get("/sources").status_code == 200
    assert visitor.get("/settings/tokens").status_code == 403
    token_id = re.findall(r'action="/settings/tokens/(\w+)/revoke"', listing)[0]
    post(web, f"/settings/tokens/{token_id}/revoke", {}, "/settings/tokens")
    assert "CI deploys" not in web.get("/settings/tokens").text
    assert visitor.get("/sources").status_code == 303  # revoked: signed out
    csrf = csrf_of(listing)
    empty = web.post("/settings/tokens", data={"csrf": csrf, "description": ""})
    assert empty.status_code == 400 and "Enter a description." in empty.text


# --- the audit trail -------------------------------------------------------------------------


def test_the_audit_trail_filters_and_shows_before_and_after(web: TestClient) -> None:
    post(web, "/sources", {"name": "Checkout"}, "/sources")
    post(web, "/settings/groups", {"name": "Ops"}, "/settings/groups")
    page = web.get("/settings/audit")
    assert page.status_code == 200
    assert "Source Created" in page.text and "by Admin token" in page.text
    assert "<h3>After</h3>" in page.text
    only = web.get("/settings/audit", params={"type": "Source Created"}).text
    assert "Source Created" in only and "Group Created" not in only
    by_type = web.get("/settings/audit", params={"resourceType": "nothing"}).text
    assert "No audit events match." in by_type
    nobody = web.get("/settings/audit", params={"actor": "someone-else"}).text
    assert "No audit events match." in nobody
    assert web.get("/settings/audit", params={"cursor": "garbage"}).status_code in (400, 422)


def test_settings_need_the_iam_area(
    web: TestClient, visitor: TestClient, store: WorkspaceStore
) -> None:
    member(store, "gil@example.com", Grant("source-admin"))
    assert sign_in(visitor, "gil@example.com") == 303
    for path in ("/settings", "/settings/users", "/settings/roles", "/settings/groups"):
        refused = visitor.get(path)
        assert refused.status_code == 403, path
        assert "Invite a team member" not in refused.text
    csrf = csrf_of(visitor.get("/settings/account").text)
    made = visitor.post("/settings/groups", data={"csrf": csrf, "name": "Sneaky"})
    assert made.status_code == 403
    assert "Sneaky" not in web.get("/settings/groups").text
    assert visitor.get("/settings/account").status_code == 200
    assert web.get("/settings/users").status_code == 200
    assert visitor.get("/settings/users", follow_redirects=False).status_code == 403


# --- two-factor authentication ---------------------------------------------------------------


def test_two_factor_enrolls_with_a_code_and_then_guards_signing_in(
    visitor: TestClient, store: WorkspaceStore, clock: Clock
) -> None:
    user_id = member(store, "hal@example.com", Grant("workspace-owner"))
    assert sign_in(visitor, "hal@example.com") == 303
    page = visitor.get("/settings/account").text
    assert "<strong>Off.</strong>" in page
    started = post(
        visitor, "/settings/account/two-factor", {"action": "start"}, "/settings/account"
    )
    secret = re.findall(r'<code id="totp-secret">([A-Z2-7]{32})</code>', started)[0]
    assert "otpauth://totp/Headwater:hal%40example.com?secret=" + secret in started
    csrf = csrf_of(started)
    wrong = visitor.post(
        "/settings/account/two-factor",
        data={"csrf": csrf, "action": "confirm", "secret": secret, "code": "000000"},
    )
    assert wrong.status_code == 400 and "does not match" in wrong.text
    totp = pyotp.TOTP(secret)
    done = visitor.post(
        "/settings/account/two-factor",
        data={"csrf": csrf, "action": "confirm", "secret": secret, "code": totp.at(clock.now)},
    )
    assert done.status_code == 303
    assert "Two-factor authentication is on" in visitor.get(done.headers["location"]).text

    visitor.post("/logout", data={"csrf": csrf})
    visitor.cookies.clear()
    asked = visitor.post(
        "/login", data={"email": "hal@example.com", "password": PASSWORD, "next": "/sources"}
    )
    assert asked.status_code == 200 and "Enter your code" in asked.text
    assert COOKIE not in asked.cookies  # not signed in yet
    pending = re.findall(r'name="pending" value="([^"]+)"', asked.text)[0]
    clock.advance(30)
    bad = visitor.post("/login/code", data={"pending": pending, "code": "123456"})
    assert bad.status_code == 401 and "4 tries left" in bad.text
    assert visitor.get("/sources").status_code == 303
    code = totp.at(clock.now)
    good = visitor.post("/login/code", data={"pending": pending, "code": code})
    assert good.status_code == 303 and good.headers["location"] == "/sources"
    assert visitor.get("/sources").status_code == 200

    # The same code a second time is refused (a code counts once).
    visitor.cookies.clear()
    again = visitor.post("/login", data={"email": "hal@example.com", "password": PASSWORD})
    pending = re.findall(r'name="pending" value="([^"]+)"', again.text)[0]
    assert visitor.post("/login/code", data={"pending": pending, "code": code}).status_code == 401
    forged = visitor.post("/login/code", data={"pending": pending + "x", "code": code})
    assert forged.status_code == 401 and "email and password again" in forged.text
    clock.advance(30)
    assert (
        visitor.post(
            "/login/code", data={"pending": pending, "code": totp.at(clock.now)}
        ).status_code
        == 303
    )

    # Turning it off needs a current code.
    csrf = csrf_of(visitor.get("/settings/account").text)
    kept = visitor.post(
        "/settings/account/two-factor", data={"csrf": csrf, "action": "disable", "code": "000000"}
    )
    assert kept.status_code == 400 and "stays on" in kept.text
    clock.advance(30)
    off = visitor.post(
        "/settings/account/two-factor",
        data={"csrf": csrf, "action": "disable", "code": totp.at(clock.now)},
    )
    assert off.status_code == 303
    audit = visitor.get("/settings/audit", params={"actor": user_id}).text
    assert "Two-Factor Authentication Enabled" in audit
    assert "Two-Factor Authentication Disabled" in audit
    visitor.cookies.clear()
    assert sign_in(visitor, "hal@example.com") == 303  # the password alone again


def test_too_many_wrong_codes_or_a_late_code_ask_for_the_password_again(
    visitor: TestClient, store: WorkspaceStore, clock: Clock
) -> None:
    user_id = member(store, "ivy@example.com")
    secret = pyotp.random_base32()
    UserStore(store).set_totp_secret(user_id, secret)
    asked = visitor.post("/login", data={"email": "ivy@example.com", "password": PASSWORD})
    pending = re.findall(r'name="pending" value="([^"]+)"', asked.text)[0]
    for _ in range(5):
        assert (
            visitor.post("/login/code", data={"pending": pending, "code": "1"}).status_code == 401
        )
    right = pyotp.TOTP(secret).at(clock.now)
    locked = visitor.post("/login/code", data={"pending": pending, "code": right})
    assert locked.status_code == 401 and "too many wrong codes" in locked.text
    asked = visitor.post("/login", data={"email": "ivy@example.com", "password": PASSWORD})
    pending = re.findall(r'name="pending" value="([^"]+)"', asked.text)[0]
    clock.advance(301)
    late = visitor.post(
        "/login/code", data={"pending": pending, "code": pyotp.TOTP(secret).at(clock.now)}
    )
    assert late.status_code == 401
    # A wrong password never reaches the code step.
    wrong = visitor.post("/login", data={"email": "ivy@example.com", "password": "nope nope"})
    assert wrong.status_code == 401 and "pending" not in wrong.text


def test_a_token_session_has_no_two_factor_to_set_up(web: TestClient) -> None:
    page = web.get("/settings/account")
    assert page.status_code == 200 and "you signed in with a token" in page.text
    csrf = csrf_of(page.text)
    refused = web.post("/settings/account/two-factor", data={"csrf": csrf, "action": "start"})
    assert refused.status_code == 400
