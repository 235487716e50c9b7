"""A member's own account: two-factor authentication with an authenticator app (TOTP, §20.7),
its second sign-in step, and the public page where an invited person joins.

These act on the signed-in person's own credentials, or on a person not signed in yet, so they
use the IAM stores directly, as signing in does: the REST API's ``iam`` routes are for
Workspace Owners managing others. A TOTP code counts once (a code seen signing in cannot be
replayed), and the second step allows a few wrong codes before the password is asked again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import pyotp
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from headwater.audit.trail import Actor, AuditEvent, AuditTrail
from headwater.errors import InputError, NotFoundError
from headwater.iam.access import Principal
from headwater.iam.invites import InviteInfo, InviteStore
from headwater.iam.principals import user_principal
from headwater.iam.users import MIN_PASSWORD, UserStore
from headwater.web.sessions import Session
from headwater.web.settings import visible_tabs

if TYPE_CHECKING:
    from headwater.web.app import WebApp

STEP: Final = 30  # seconds a TOTP code stands for (RFC 6238's default)
DRIFT: Final = 1  # steps either side accepted: an authenticator's clock may be off a little
CODE_WAIT: Final = 300  # seconds the second step waits for a code after the password
MAX_WRONG_CODES: Final = 5  # then the password is asked again
_CODE = re.compile(r"[0-9]{6}")
_SECRET = re.compile(r"[A-Z2-7]{32}")


class AccountPages:
    def __init__(self, web: WebApp) -> None:
        self.web = web
        self.users = UserStore(web.store)
        self._key = hashlib.sha256(
            b"headwater two-factor:" + web.admin_token_hash.encode()
        ).digest()
        # Changes made here, not through the API, are recorded in the audit trail here.
        self.trail = AuditTrail(web.store.engine, clock=web.sessions.clock)
        self._wrong: dict[str, int] = {}  # a pending sign-in's wrong codes (this process's)
        self._used: dict[str, int] = {}  # each member's last accepted TOTP step

    def routes(self) -> list[Route]:
        return [
            Route("/login/code", self.code, methods=["POST"]),
            Route("/settings/account", self.web.signed_in(self.account_page), methods=["GET"]),
            Route(
                "/settings/account/two-factor",
                self.web.signed_in(self.change_two_factor),
                methods=["POST"],
            ),
            Route("/invite/{token}", self.invite_page, methods=["GET"]),
            Route("/invite/{token}", self.join, methods=["POST"]),
        ]

    # --- checking codes ---------------------------------------------------------------------

    def has_two_factor(self, user_id: str) -> bool:
        return self.users.totp_secret(user_id) is not None

    def _now(self) -> float:
        return self.web.sessions.clock()

    def _step_of(self, secret: str, code: str) -> int | None:
        """The time step whose code ``code`` is, near now; None for a wrong code."""
        code = code.replace(" ", "")
        if not _CODE.fullmatch(code):
            return None
        totp = pyotp.TOTP(secret, interval=STEP)
        now = int(self._now() // STEP)
        for step in range(now - DRIFT, now + DRIFT + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                return step
        return None

    def _accept_code(self, user_id: str, secret: str, code: str) -> bool:
        """Whether ``code`` is the member's current code, not used before."""
        step = self._step_of(secret, code)
        if step is None or step <= self._used.get(user_id, -1):
            return False
        self._used[user_id] = step
        return True

    # --- the second sign-in step ------------------------------------------------------------

    def ask_code(self, user_id: str, target: str) -> Response:
        """The password was right: ask for the authenticator's code."""
        payload = {"u": user_id, "e": self._now() + CODE_WAIT, "n": target, "r": _nonce()}
        return self._code_page(self._sign(payload), error=None, status=200)

    def _code_page(self, pending: str, *, error: str | None, status: int) -> Response:
        return self.web.render(
            "login_code.html", {"pending": pending, "error": error}, status=status, session=None
        )

    def _sign(self, payload: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
        return f"{body}.{hmac.new(self._key, body.encode(), 'sha256').hexdigest()}"

    def _pending(self, signed: str) -> dict[str, Any] | None:
        body, _, signature = signed.partition(".")
        expected = hmac.new(self._key, body.encode(), "sha256").hexdigest()
        if len(signed) > 1000 or not hmac.compare_digest(signature, expected):
            return None
        try:
            payload = json.loads(base64.urlsafe_b64decode(body.encode()))
        except (ValueError, binascii.Error):
            return None
        if not isinstance(payload, dict) or payload.get("e", 0) <= self._now():
            return None
        return payload

    async def code(self, request: Request) -> Response:
        form = await request.form()
        signed = str(form.get("pending", ""))
        payload = self._pending(signed)
        self._forget_expired()
        if payload is None or self._wrong.get(signed, 0) >= MAX_WRONG_CODES:
            return self.web.render(
                "login.html",
                {
                    "error": "Signing in took too long or had too many wrong codes. Enter your "
                    "email and password again.",
                    "next": "/",
                },
                status=401,
                session=None,
            )
        user_id = str(payload["u"])
        secret = self.users.totp_secret(user_id)
        principal = user_principal(self.web.store, user_id)
        if secret is None or principal is None:  # two-factor turned off, or member removed
            return self.web.render(
                "login.html",
                {"error": "Enter your email and password again.", "next": "/"},
                status=401,
                session=None,
            )
        if not self._accept_code(user_id, secret, str(form.get("code", ""))):
            self._wrong[signed] = self._wrong.get(signed, 0) + 1
            left = MAX_WRONG_CODES - self._wrong[signed]
            return self._code_page(
                signed,
                error="That code is not the current one. Codes change every 30 seconds: enter "
                f"the one your authenticator app shows now ({left} tries left, then you sign "
                "in again).",
                status=401,
            )
        self._wrong.pop(signed, None)
        return self.web.start_session(request, principal, str(payload["n"]))

    def _forget_expired(self) -> None:
        for signed in [s for s in self._wrong if self._pending(s) is None]:
            del self._wrong[signed]

    # --- enrolling --------------------------------------------------------------------------

    async def account_page(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        done = request.query_params.get("done", "")
        return self._account(session, principal, notice=_NOTICES.get(done))

    def _account(
        self,
        session: Session,
        principal: Principal,
        *,
        secret: str | None = None,
        error: str | None = None,
        notice: str | None = None,
        status: int = 200,
    ) -> Response:
        member = principal.kind == "user"
        enrolled = member and self.has_two_factor(principal.id)
        uri = None
        if secret is not None:
            uri = pyotp.TOTP(secret, interval=STEP).provisioning_uri(
                name=principal.email or principal.name,
                issuer_name="Headwater",
            )
        return self.web.render(
            "settings_account.html",
            {
                "principal": principal,
                "member": member,
                "enrolled": enrolled,
                "secret": secret,
                "uri": uri,
                "error": error,
                "notice": notice,
                "tabs": visible_tabs(principal),
                "current": "/settings",
                "tab": "account",
            },
            status=status,
            session=session,
        )

    async def change_two_factor(
        self, request: Request, session: Session, principal: Principal
    ) -> Response:
        """``start`` shows a new secret; ``confirm`` turns it on with a code it generated;
        ``disable`` turns it off with a current code."""
        form = await self.web.posted_form(request, session)
        if form is None:
            return self.web.forbidden(session)
        if principal.kind != "user":
            return self._account(
                session,
                principal,
                error="Two-factor authentication is for members who sign in with a password.",
                status=400,
            )
        action = str(form.get("action", ""))
        code = str(form.get("code", ""))
        if action == "start":
            return self._account(session, principal, secret=pyotp.random_base32())
        if action == "confirm":
            secret = str(form.get("secret", ""))
            if not _SECRET.fullmatch(secret):
                return self._account(session, principal, error="Start the setup again.", status=400)
            if not self._accept_code(principal.id, secret, code):
                return self._account(
                    session,
                    principal,
                    secret=secret,
                    error="That code does not match. Enter the 6 digits your authenticator "
                    "app shows now for this account.",
                    status=400,
                )
            self.users.set_totp_secret(principal.id, secret)
            self._record(principal, "Two-Factor Authentication Enabled")
            return self.web.see_other("/settings/account?done=on")
        if action == "disable":
            current = self.users.totp_secret(principal.id)
            if current is None:
                return self.web.see_other("/settings/account")
            if not self._accept_code(principal.id, current, code):
                return self._account(
                    session,
                    principal,
                    error="That code is not the current one: two-factor authentication stays on.",
                    status=400,
                )
            self.users.set_totp_secret(principal.id, None)
            self._record(principal, "Two-Factor Authentication Disabled")
            return self.web.see_other("/settings/account?done=off")
        return self._account(session, principal, error="Unknown action.", status=400)

    def _record(self, principal: Principal, event: str) -> None:
        self.trail.record(
            Actor("user", principal.id, principal.email),
            [AuditEvent(event, "user", principal.id, principal.email)],
        )

    # --- joining by invite ------------------------------------------------------------------

    async def invite_page(self, request: Request) -> Response:
        token = request.path_params["token"]
        invite = InviteStore(self.web.store).find(token)
        refused = self._refused(invite)
        if refused is not None:
            return refused
        assert invite is not None
        return self._invite_form(token, invite, name="", error=None, status=200)

    def _refused(self, invite: InviteInfo | None) -> Response | None:
        """A page saying why a link no longer works, or None for a usable one."""
        now = self.web.store.now()
        if invite is None:
            message = (
                "This invite link is not valid: it was revoked, or replaced by a newer invite. "
                "Ask a Workspace Owner for a new one."
            )
        elif invite.status(now) == "accepted":
            message = "This invite link was used already. Sign in with your email and password."
        elif invite.status(now) == "expired":
            when = datetime.fromtimestamp(invite.expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
            message = (
                f"This invite link expired on {when}. Ask a Workspace Owner to invite you again."
            )
        else:
            return None
        return self.web.render(
            "message.html",
            {"title": "Invite link not valid", "message": message, "path": "/login"},
            status=404 if invite is None else 410,
            session=None,
        )

    def _invite_form(
        self, token: str, invite: InviteInfo, *, name: str, error: str | None, status: int
    ) -> Response:
        return self.web.render(
            "invite.html",
            {
                "token": token,
                "invite": invite,
                "name": name,
                "error": error,
                "min_password": MIN_PASSWORD,
            },
            status=status,
            session=None,
        )

    async def join(self, request: Request) -> Response:
        token = request.path_params["token"]
        invites = InviteStore(self.web.store)
        invite = invites.find(token)
        refused = self._refused(invite)
        if refused is not None:
            return refused
        assert invite is not None
        form = await request.form()
        name = str(form.get("name", "")).strip()
        password = str(form.get("password", ""))
        if not name:
            return self._invite_form(token, invite, name=name, error="Enter your name.", status=400)
        try:
            user = invites.accept(token, name, password)
        except NotFoundError:
            return self._refused(None) or self.web.forbidden(None)
        except InputError as exc:
            field = {"password": "The password", "name": "The name"}.get(exc.field or "", "")
            message = f"{field} {exc.message}." if field else f"{exc.message}."
            return self._invite_form(token, invite, name=name, error=message, status=422)
        self.trail.record(
            Actor("user", user.id, user.email),
            [
                AuditEvent("Invite Accepted", "invite", invite.id, invite.email),
                AuditEvent("User Created", "user", user.id, user.email),
            ],
        )
        principal = user_principal(self.web.store, user.id)
        if principal is None:  # removed the same instant
            return self._refused(None) or self.web.forbidden(None)
        return self.web.start_session(request, principal, "/")


_NOTICES: Final = {
    "on": "Two-factor authentication is on: signing in now asks for a code.",
    "off": "Two-factor authentication is off.",
}


def _nonce() -> str:
    """Makes each pending sign-in its own (its wrong codes are counted apart)."""
    return f"{secrets.token_hex(8)}{int(time.time())}"
