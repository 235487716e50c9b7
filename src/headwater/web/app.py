"""The web app's routes: sign-in, sign-out and the pages, rendered on the server from the REST
API's answers (web/inprocess.py), with the package's own CSS and a little JavaScript.

Every page needs a session; a form that changes something carries the session's CSRF token.
Answers carry a Content-Security-Policy that allows only this server's own scripts and styles.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from headwater.iam.access import Principal
from headwater.iam.principals import ADMIN, principal_of, token_principal
from headwater.iam.roles import Area
from headwater.iam.users import UserStore
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from headwater.web.account import AccountPages
from headwater.web.destinations import DestinationPages
from headwater.web.engage import EngagePages
from headwater.web.filters import FilterPages
from headwater.web.flow import flow_diagram
from headwater.web.functions import FunctionPages
from headwater.web.inprocess import Answer, InProcessAPI
from headwater.web.mappings import MappingPages
from headwater.web.privacy import PrivacyPages
from headwater.web.protocols import ProtocolPages
from headwater.web.sessions import HIPAA_IDLE, LIFETIME, Session, Sessions
from headwater.web.settings import SettingsPages
from headwater.web.sources import SourcePages
from headwater.web.unify import UnifyPages
from headwater.web.warehouses import WarehousePages

HERE = Path(__file__).parent
COOKIE = "headwater_session"
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
}
# Each section with the area a person must be able to read to see it (iam/roles.py).
NAVIGATION: list[tuple[str, str, Area]] = [
    ("Home", "/", "sources"),
    ("Sources", "/sources", "sources"),
    ("Destinations", "/destinations", "sources"),
    ("Warehouses", "/warehouses", "warehouses"),
    ("Protocols", "/protocols", "tracking_plans"),
    ("Unify", "/unify", "unify"),
    ("Engage", "/engage", "engage"),
    ("Privacy", "/privacy", "privacy"),
    ("Functions", "/functions", "functions"),
    ("Settings", "/settings", "iam"),
]

Page = Callable[[Request, Session, Principal], Awaitable[Response]]
Endpoint = Callable[[Request], Awaitable[Response]]


class WebApp:
    def __init__(
        self,
        api: ASGIApp,
        store: WorkspaceStore,
        *,
        admin_token_hash: str,
        clock: Callable[[], float],
        public_url: str | None = None,
    ) -> None:
        """``public_url``: the address browsers and SDKs use (``server.public_url``); None: the
        address each request came to."""
        self.api = InProcessAPI(api)
        self.store = store
        self.sessions = Sessions(store.engine, clock=clock, idle_limit=self._idle_limit)
        self.admin_token_hash = admin_token_hash
        self._public_url = public_url
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        for name in self.templates.list_templates():  # compiled now, not on a first request
            self.templates.get_template(name)
        # Each signed-in page's area (None: any signed-in person's), for the tests' walk.
        self.areas: dict[Endpoint, Area | None] = {}
        self.account = AccountPages(self)
        self.app = Starlette(
            routes=[
                Route("/login", self.login_page, methods=["GET"]),
                Route("/login", self.login, methods=["POST"]),
                Route("/logout", self.logout, methods=["POST"]),
                Route("/", self.signed_in(self.home), methods=["GET"]),
                *SourcePages(self).routes(),
                *UnifyPages(self).routes(),
                *PrivacyPages(self).routes(),
                *EngagePages(self).routes(),
                *SettingsPages(self).routes(),
                *self.account.routes(),
                *DestinationPages(self).routes(),
                *WarehousePages(self).routes(),
                *ProtocolPages(self).routes(),
                *FunctionPages(self).routes(),
                *FilterPages(self).routes(),
                *MappingPages(self).routes(),
                Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
            ],
        )
        self.app.add_exception_handler(404, self._not_found)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    # --- rendering --------------------------------------------------------------------------

    def render(
        self, name: str, context: Mapping[str, Any], *, status: int = 200, session: Session | None
    ) -> HTMLResponse:
        principal = session.principal if session is not None else None
        page = self.templates.get_template(name).render(
            navigation=[
                (label, href)
                for label, href, area in NAVIGATION
                if principal is not None and principal.allows(area, False)
            ],
            csrf=session.csrf if session is not None else "",
            workspace=self._workspace_name(),
            **context,
        )
        return HTMLResponse(page, status_code=status, headers=SECURITY_HEADERS)

    def _idle_limit(self) -> float | None:
        workspace = self.store.workspace()
        return HIPAA_IDLE if workspace is not None and workspace.hipaa_eligible else None

    def _workspace_name(self) -> str:
        workspace = self.store.workspace()
        return workspace.name if workspace is not None else ""

    def see_other(self, path: str) -> Response:
        """After a form's change: the browser loads ``path`` with a GET."""
        return RedirectResponse(path, status_code=303, headers=SECURITY_HEADERS)

    def public_url(self, request: Request) -> str:
        """Where a website's analytics.js reaches this server."""
        if self._public_url:
            return self._public_url.rstrip("/")
        return f"{request.url.scheme}://{request.url.netloc}"

    async def _not_found(self, request: Request, _exc: Exception) -> Response:
        session = self.sessions.find(request.cookies.get(COOKIE))
        return self.render(
            "message.html",
            {"title": "Not found", "message": "There is no page at this address.", "path": "/"},
            status=404,
            session=session,
        )

    # --- signing in and out -----------------------------------------------------------------

    async def login_page(self, request: Request) -> Response:
        return self.render(
            "login.html",
            {"error": None, "next": _local(request.query_params.get("next"))},
            session=None,
        )

    async def login(self, request: Request) -> Response:
        """Email and password, or a token: the admin token (the owner) or an API token."""
        form = await request.form()
        target = _local(str(form.get("next", "/")))
        token = str(form.get("token", "")).strip()
        if token:
            principal = self._principal_of_token(token)
            error = (
                "That token is not valid. Use the admin token printed at the first start, or "
                "an API token (hwp_…)."
            )
        else:
            email, password = str(form.get("email", "")), str(form.get("password", ""))
            user = UserStore(self.store).verify_password(email, password) if email else None
            if user is not None and self.account.has_two_factor(user.id):
                return self.account.ask_code(user.id, target)
            principal = None if user is None else principal_of(self.store, "user", user.id)
            error = "The email or the password is wrong."
        if principal is None:
            return self.render(
                "login.html", {"error": error, "next": target}, status=401, session=None
            )
        return self.start_session(request, principal, target)

    def start_session(self, request: Request, principal: Principal, target: str) -> Response:
        """Sign ``principal`` in: a new session's cookie, and on to ``target``."""
        cookie, _session = self.sessions.start(principal.kind, principal.id)
        response = RedirectResponse(target, status_code=303, headers=SECURITY_HEADERS)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=LIFETIME,
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )
        return response

    async def logout(self, request: Request) -> Response:
        session = self.sessions.find(request.cookies.get(COOKIE))
        form = await request.form()
        if session is not None:
            if not session.csrf_matches(str(form.get("csrf", ""))):
                return self.forbidden(session)
            self.sessions.end(session)
        response = RedirectResponse("/login", status_code=303, headers=SECURITY_HEADERS)
        response.delete_cookie(COOKIE, path="/")
        return response

    def _principal_of_token(self, token: str) -> Principal | None:
        if hmac.compare_digest(hash_token(token), self.admin_token_hash):
            return ADMIN
        return token_principal(self.store, token)

    async def posted_form(self, request: Request, session: Session) -> FormData | None:
        """The form a page posted, or None when it lacks the session's CSRF token."""
        form = await request.form()
        return form if session.csrf_matches(str(form.get("csrf", ""))) else None

    def forbidden(self, session: Session | None) -> Response:
        return self.render(
            "message.html",
            {
                "title": "Not allowed",
                "message": "The form had expired or came from another site. Reload the page "
                "and try again.",
                "path": "/",
            },
            status=403,
            session=session,
        )

    # --- pages ------------------------------------------------------------------------------

    def signed_in(self, page: Page, area: Area | None = None) -> Endpoint:
        """``page`` for a signed-in person who may read ``area`` (a page whose reads all go
        through the API may leave it None: the API's 403 is the page's); everyone else is sent
        to sign in, or answered 403 with nothing of the page."""

        async def handle(request: Request) -> Response:
            session = self.sessions.find(request.cookies.get(COOKIE))
            principal = None
            if session is not None:
                principal = principal_of(self.store, session.principal_kind, session.principal_id)
            if session is None or principal is None:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                return RedirectResponse(
                    f"/login?next={quote(target)}", status_code=303, headers=SECURITY_HEADERS
                )
            session = replace(session, principal=principal)
            if area is not None and not principal.allows(area, False):
                return self.not_allowed(session)
            return await page(request, session, principal)

        self.areas[handle] = area
        return handle

    def not_allowed(self, session: Session) -> Response:
        return self.render(
            "message.html",
            {
                "title": "Not allowed",
                "message": "Your role does not give you access to this page. A Workspace "
                "Owner can change your access in Settings.",
                "path": "/",
            },
            status=403,
            session=session,
        )

    def refused(self, answer: Answer, session: Session) -> Response:
        # The API refusing what the browser sent is the browser's 4xx; anything else, ours.
        if answer.status == 403:
            return self.not_allowed(session)
        status = answer.status if 400 <= answer.status < 500 else 502
        return self.render(
            "message.html",
            {"title": "Not available", "message": answer.error, "path": "/"},
            status=status,
            session=session,
        )

    async def home(self, request: Request, session: Session, principal: Principal) -> Response:
        if not principal.allows("sources", False):  # the sections the role opens, no flow
            return self.render("home.html", {"limited": True, "current": "/"}, session=session)
        answer = await self.api.call("GET", "/api/v1/overview", principal, params={"hours": 24})
        if answer.status != 200:
            return self.refused(answer, session)
        data = answer.data
        return self.render(
            "home.html",
            {
                "sources": data["sources"],
                "destinations": data["destinations"],
                "flow": flow_diagram(data["sources"], data["destinations"]),
                "limited": False,
                "current": "/",
            },
            session=session,
        )

    def page_routes(self, area: Area | None, pages: list[tuple[str, str, Page]]) -> list[Route]:
        """A page module's routes, each ``(method, path, handler)``, for people who may read
        ``area``: one place says how every module's pages are guarded."""
        return [
            Route(path, self.signed_in(handler, area), methods=[method])
            for method, path, handler in pages
        ]


def _local(target: str | None) -> str:
    """Only a path on this server: a sign-in link must never send anyone elsewhere."""
    if not target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    if "\\" in target or any(ord(c) < 32 for c in target):
        return "/"
    return target
