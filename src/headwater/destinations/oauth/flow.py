"""The OAuth 2.0 authorization-code flow (RFC 6749 §4.1) with a loopback redirect.

The operator's browser signs in at the provider, which redirects it to a listener on
127.0.0.1 (RFC 8252 §7.3: a loopback redirect is how a program on the user's own machine takes
the code); the code is then exchanged at the token endpoint with the operator's own app's
client id and secret. ``state`` ties the callback to this run (§10.12) and PKCE (RFC 7636)
binds the code to it where the provider supports it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import httpx

from headwater.destinations.oauth.providers import Provider
from headwater.errors import AuthorizationFailed

CALLBACK_PATH = "/callback"
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class AuthorizationRequest:
    """One run's authorization request: what the browser is sent to and what the callback and
    the token request must match."""

    provider: Provider
    client_id: str
    redirect_uri: str
    state: str
    code_verifier: str | None

    @classmethod
    def new(cls, provider: Provider, client_id: str, redirect_uri: str) -> AuthorizationRequest:
        verifier = secrets.token_urlsafe(48) if provider.pkce else None  # 64 chars (§4.1)
        return cls(provider, client_id, redirect_uri, secrets.token_urlsafe(24), verifier)

    def url(self) -> str:
        """The authorization URL (§4.1.1), the provider's own query parameters kept."""
        query: dict[str, str] = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "state": self.state,
        }
        if self.provider.scopes:
            query["scope"] = self.provider.scope_separator.join(self.provider.scopes)
        if self.code_verifier is not None:
            query["code_challenge"] = code_challenge(self.code_verifier)
            query["code_challenge_method"] = "S256"
        query.update(self.provider.extra)
        parts = urlsplit(self.provider.authorize_url)
        given = parse_qsl(parts.query, keep_blank_values=True)
        # %20 between scopes, not "+": what the providers' own examples show
        encoded = urlencode([*given, *query.items()], quote_via=quote)
        return urlunsplit(parts._replace(query=encoded))

    def code_from(self, callback: Mapping[str, str]) -> str:
        """The authorization code of the callback (§4.1.2), or why there is none (§4.1.2.1)."""
        if "error" in callback:
            described = callback.get("error_description")
            detail = f" ({described})" if described else ""
            if callback["error"] == "access_denied":
                raise AuthorizationFailed(f"consent was refused at {self.provider.name}{detail}")
            raise AuthorizationFailed(
                f"{self.provider.name} refused the authorization: {callback['error']}{detail}"
            )
        if not hmac.compare_digest(callback.get("state", ""), self.state):
            raise AuthorizationFailed(
                "the callback's state does not match this authorization request; it did not "
                "come from this run (a stale browser tab, or a forged request)"
            )
        code = callback.get("code")
        if not code:
            raise AuthorizationFailed("the callback carries no authorization code")
        return code


def code_challenge(verifier: str) -> str:
    """RFC 7636 §4.2, S256."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class CallbackListener:
    """An HTTP listener on 127.0.0.1 that takes the provider's redirect once."""

    def __init__(self, port: int = 0) -> None:
        self._received = threading.Event()
        self._lock = threading.Lock()
        self._taken = False
        self._query: dict[str, str] = {}
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = dict(parse_qsl(parts.query, keep_blank_values=True))
                if parts.path != CALLBACK_PATH or not ({"code", "error"} & query.keys()):
                    self.send_error(404)  # a favicon, a probe: not the redirect
                    return
                first = listener._take(query)
                self._answer(_page(query) if first else _page({"error": "already_answered"}))
                if first:
                    listener._received.set()  # once answered: the process may exit next

            def _answer(self, body: str) -> None:
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the code is in the request line: never printed

        try:
            self._server = ThreadingHTTPServer((LOOPBACK, port), Handler)
        except OSError as exc:
            raise AuthorizationFailed(f"cannot listen on {LOOPBACK}:{port}: {exc}") from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="oauth-callback", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def redirect_uri(self) -> str:
        return f"http://{LOOPBACK}:{self.port}{CALLBACK_PATH}"

    def _take(self, query: dict[str, str]) -> bool:
        with self._lock:
            if self._taken:
                return False
            self._query = query
            self._taken = True
            return True

    def wait(
        self, timeout: float, progress: Callable[[float], None], every: float = 30.0
    ) -> dict[str, str]:
        """The callback's query parameters; ``progress`` hears the seconds left now and then."""
        deadline = time.monotonic() + timeout
        while not self._received.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AuthorizationFailed(
                    f"no callback within {timeout:g} s; run the command again "
                    "(--timeout gives more time)"
                )
            if not self._received.wait(min(every, left)):
                left = deadline - time.monotonic()
                if left > 0:
                    progress(left)
        return dict(self._query)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> CallbackListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _page(query: Mapping[str, str]) -> str:
    if "error" in query:
        text = f"Headwater got no authorization ({escape(query['error'])})."
    else:
        text = "Headwater received the authorization."
    return (
        "<!doctype html><title>Headwater</title>"
        f"<p>{text} You can close this window and return to the terminal.</p>"
    )


def exchange(
    request: AuthorizationRequest, code: str, client_secret: str, timeout: float = 30.0
) -> dict[str, Any]:
    """The token response (§5.1) for the code (§4.1.3), or the endpoint's refusal (§5.2)."""
    provider = request.provider
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": request.redirect_uri,
    }
    auth: tuple[str, str] | None = None
    if provider.client_auth == "basic":
        auth = (request.client_id, client_secret)
    else:
        form["client_id"] = request.client_id
        form["client_secret"] = client_secret
    if request.code_verifier is not None:
        form["code_verifier"] = request.code_verifier
    try:
        answer = httpx.post(
            provider.token_url,
            data=form,
            auth=auth,
            headers={"Accept": "application/json"},
            timeout=timeout,
        )
    except httpx.HTTPError as exc:
        raise AuthorizationFailed(
            f"cannot reach {provider.name}'s token endpoint {provider.token_url}: {exc}"
        ) from None
    document = _json(answer)
    if answer.status_code >= 400 or "error" in document:
        error = document.get("error") or f"HTTP {answer.status_code}"
        described = document.get("error_description")
        raise AuthorizationFailed(
            f"{provider.name}'s token endpoint refused the code: {error}"
            + (f" ({described})" if described else "")
        )
    if not isinstance(document.get("access_token"), str) or not document["access_token"]:
        raise AuthorizationFailed(f"{provider.name}'s token endpoint gave no access_token")
    return document


def _json(answer: httpx.Response) -> dict[str, Any]:
    try:
        document = answer.json()
    except ValueError:
        # a provider answering form-encoded (RFC 6749 asks for JSON; some older ones do not)
        document = dict(parse_qsl(answer.text))
    return document if isinstance(document, dict) else {}
