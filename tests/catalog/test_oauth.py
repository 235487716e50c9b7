"""``headwater catalog oauth NAME``: the authorization-code flow against an OAuth provider on
loopback that holds every request to RFC 6749 (and RFC 7636 where a challenge was sent), with
the test as the browser; what the token endpoint issues lands in the instance's oauth setting,
and nothing does when any step fails."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.config.apply import export_config
from headwater.destinations.oauth.flow import CallbackListener
from headwater.destinations.oauth.providers import PROVIDERS, provider
from headwater.destinations.store import DestinationStore
from headwater.errors import AuthorizationFailed
from headwater.store.admin_token import hash_token
from headwater.store.database import database_url, open_engine
from headwater.store.migrations import migrate
from headwater.store.workspace import WorkspaceStore

TOKEN = "test-admin-token"
CLIENT_ID = "the-client-id"
CLIENT_SECRET = "the-client-secret"
REDIRECT = re.compile(r"http://127\.0\.0\.1:\d+/callback")
APP = ("--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET)


@dataclass
class Issued:
    client_id: str
    redirect_uri: str
    challenge: str | None
    used: bool = False


@dataclass
class FakeProvider:
    """An authorization server on 127.0.0.1: ``/authorize`` redirects the browser back with a
    code (or with ``deny``'s error), ``/token`` exchanges it. Every departure from the RFCs is
    recorded in ``problems`` and refused with ``invalid_request``."""

    client_auth: str = "body"  # what the app is registered for (RFC 6749 §2.3.1)
    deny: bool = False
    token_status: int = 200
    problems: list[str] = field(default_factory=list)
    authorizations: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)
    codes: dict[str, Issued] = field(default_factory=dict)
    issued: dict[str, str] = field(default_factory=dict)
    base: str = ""

    @property
    def authorize_url(self) -> str:
        return f"{self.base}/authorize?tenant=acme"  # its own query is kept (§3.1)

    @property
    def token_url(self) -> str:
        return f"{self.base}/token"

    def authorize(self, query: dict[str, list[str]]) -> tuple[int, dict[str, str], str]:
        params = {k: v[0] for k, v in query.items()}
        self.authorizations.append(params)
        bad = [k for k, v in query.items() if len(v) != 1]  # §3.1: no repeated parameter
        bad += [k for k in ("response_type", "client_id", "redirect_uri") if k not in params]
        if params.get("tenant") != "acme":
            bad.append("tenant")
        if bad:
            return self._problem(f"authorization request: bad or missing {bad}")
        if params["response_type"] != "code":
            return self._problem("response_type is not code")
        if params["client_id"] != CLIENT_ID:
            return self._problem("unknown client_id")
        if not REDIRECT.fullmatch(params["redirect_uri"]):
            return self._problem(f"redirect_uri {params['redirect_uri']} is not loopback")
        if len(params.get("state", "")) < 16:
            return self._problem("no unguessable state (§10.12)")
        challenge = params.get("code_challenge")
        if challenge is not None and params.get("code_challenge_method") != "S256":
            return self._problem("code_challenge without S256 (RFC 7636 §4.3)")
        back: dict[str, str] = {"state": params["state"]}
        if self.deny:
            back["error"] = "access_denied"
        else:
            code = secrets.token_urlsafe(16)
            self.codes[code] = Issued(CLIENT_ID, params["redirect_uri"], challenge)
            back["code"] = code
        return 302, {"Location": f"{params['redirect_uri']}?{urlencode(back)}"}, ""

    def token(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], str]:
        if headers.get("content-type", "").split(";")[0] != "application/x-www-form-urlencoded":
            return self._problem("token request is not form-encoded (§4.1.3)")
        form = dict(parse_qsl(body.decode()))
        self.token_requests.append(form)
        basic = headers.get("authorization", "")
        in_body = "client_secret" in form
        if basic and in_body:
            return self._problem("two client authentication methods (§2.3.1)")
        if self.client_auth == "basic":
            expected = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
            if basic != f"Basic {expected}":
                return self._problem("no HTTP Basic client authentication")
            client_id = CLIENT_ID
        else:
            if form.get("client_secret") != CLIENT_SECRET:
                return self._problem("wrong or missing client_secret in the form")
            client_id = form.get("client_id", "")
        if form.get("grant_type") != "authorization_code":
            return self._problem("grant_type is not authorization_code")
        issued = self.codes.get(form.get("code", ""))
        if issued is None or issued.used or issued.client_id != client_id:
            return self._problem("unknown, reused or foreign code")
        issued.used = True
        if form.get("redirect_uri") != issued.redirect_uri:
            return self._problem("redirect_uri differs from the authorization request's")
        if issued.challenge is not None:
            verifier = form.get("code_verifier", "")
            digest = hashlib.sha256(verifier.encode()).digest()
            if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != issued.challenge:
                return self._problem("code_verifier does not match (RFC 7636 §4.6)")
        elif "code_verifier" in form:
            return self._problem("code_verifier without a challenge")
        if self.token_status != 200:
            refusal = {"error": "invalid_grant", "error_description": "the code expired"}
            return self.token_status, {"Content-Type": "application/json"}, json.dumps(refusal)
        self.issued = {"access_token": secrets.token_urlsafe(24)}
        self.issued["refresh_token"] = secrets.token_urlsafe(24)
        answer = {**self.issued, "token_type": "Bearer", "expires_in": 1800, "scope": "crm"}
        return (
            200,
            {"Content-Type": "application/json", "Cache-Control": "no-store"},  # §5.1
            json.dumps(answer),
        )

    def _problem(self, problem: str) -> tuple[int, dict[str, str], str]:
        self.problems.append(problem)
        document = {"error": "invalid_request", "error_description": problem}
        return 400, {"Content-Type": "application/json"}, json.dumps(document)


def flags(fake: FakeProvider) -> tuple[str, ...]:
    """The fake's endpoints in place of the provider's documented ones."""
    return ("--authorize-url", fake.authorize_url, "--token-url", fake.token_url)


@pytest.fixture
def oauth_provider() -> Iterator[FakeProvider]:
    fake = FakeProvider()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            if parts.path != "/authorize":
                self._send(404, {}, "")
                return
            self._send(*fake.authorize(parse_qs(parts.query, keep_blank_values=True)))

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if urlsplit(self.path).path != "/token":
                self._send(404, {}, "")
                return
            headers = {k.lower(): v for k, v in self.headers.items()}
            self._send(*fake.token(headers, body))

        def _send(self, status: int, headers: dict[str, str], body: str) -> None:
            data = body.encode()
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def engine(data_dir: Path) -> Iterator[Engine]:
    """The data directory's SQLite state database, which the command opens too."""
    data_dir.mkdir()
    db = open_engine(database_url(data_dir, None))
    migrate(db)
    yield db
    db.dispose()


@pytest.fixture
def http(engine: Engine, catalog: Path) -> TestClient:
    WorkspaceStore(engine).ensure_workspace("acme")
    client = TestClient(
        create_api(engine, admin_token_hash=hash_token(TOKEN)),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert client.post("/api/v1/sources", json={"name": "web"}).status_code == 201
    return client


def create(http: TestClient, name: str, kind: str, settings: dict[str, Any]) -> None:
    body = {"name": name, "type": kind, "source": "web", "settings": settings}
    created = http.post("/api/v1/destinations", json=body)
    assert created.status_code == 201, created.text


@dataclass
class Run:
    code: int
    out: str
    err: str
    authorization_url: str | None


def headwater_oauth(
    data_dir: Path, catalog: Path, *args: str, browse: str | None = "follow"
) -> Run:
    """The command in a process of its own; the test is its browser: it opens the printed
    authorization URL and follows the provider's redirect to the callback (``browse``:
    ``follow``, or ``forge`` to call the callback with a state of its own, or None)."""
    command = [sys.executable, "-m", "headwater", "catalog", "oauth", *args]
    command += ["--data-dir", str(data_dir), "--no-browser", "--timeout", "20"]
    env = {**os.environ, "HEADWATER_ACTIONS_DIR": str(catalog)}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    assert process.stdout is not None and process.stderr is not None
    lines: list[str] = []
    url = None
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith("http://127.0.0.1:") and "/authorize?" in line:
                url = line.strip()
                break
        if url is not None and browse is not None:
            _browse(url, browse)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return Run(process.returncode, "".join(lines) + out, err, url)


def _browse(url: str, how: str) -> None:
    with httpx.Client(timeout=10) as browser:
        at_provider = browser.get(url)
        assert at_provider.status_code == 302, at_provider.text
        callback = at_provider.headers["Location"]
        if how == "forge":
            parts = urlsplit(callback)
            query = dict(parse_qsl(parts.query))
            query["state"] = "a-state-of-someone-else"
            callback = parts._replace(query=urlencode(query)).geturl()
        page = browser.get(callback)
        assert page.status_code == 200
        assert "return to the terminal" in page.text


def stored_oauth(engine: Engine, name: str) -> dict[str, Any] | None:
    oauth = DestinationStore(WorkspaceStore(engine)).require(name).settings.get("oauth")
    return dict(oauth) if oauth is not None else None


def test_success_stores_the_tokens_and_shows_them_redacted(
    http: TestClient,
    engine: Engine,
    data_dir: Path,
    catalog: Path,
    oauth_provider: FakeProvider,
) -> None:
    create(http, "crm", "actions:hubspot", {"portalId": "123"})
    run = headwater_oauth(data_dir, catalog, "crm", *APP, *flags(oauth_provider))
    assert run.code == 0, run.err
    assert oauth_provider.problems == []
    [asked] = oauth_provider.authorizations
    assert asked["scope"].split() == list(PROVIDERS["hubspot"].scopes)  # the table's scopes
    assert "code_challenge" not in asked  # HubSpot documents no PKCE
    assert stored_oauth(engine, "crm") == {
        "access_token": oauth_provider.issued["access_token"],
        "refresh_token": oauth_provider.issued["refresh_token"],
        "refresh_token_url": oauth_provider.token_url,
        "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET,
    }
    [destination] = DestinationStore(WorkspaceStore(engine)).list()
    assert destination.settings["portalId"] == "123"  # the other settings kept
    for secret in (CLIENT_SECRET, *oauth_provider.issued.values()):
        assert secret not in run.out and secret not in run.err
    assert "Stored in crm's oauth setting: access_token, refresh_token" in run.out
    assert f"refresh_token_url {oauth_provider.token_url}" in run.out

    shown = http.get("/api/v1/destinations/crm").json()["data"]["destination"]
    assert shown["settings"] == {"portalId": "123", "oauth": "[redacted]"}
    exported = export_config(WorkspaceStore(engine))
    assert "oauth: '[redacted]'" in exported
    for secret in (CLIENT_SECRET, *oauth_provider.issued.values()):
        assert secret not in exported


def test_the_stored_app_pkce_and_http_basic_where_the_provider_wants_them(
    http: TestClient,
    engine: Engine,
    data_dir: Path,
    catalog: Path,
    oauth_provider: FakeProvider,
) -> None:
    """Salesforce documents PKCE; the app comes from a previous run's stored oauth setting;
    a second run replaces the tokens. Reddit's token endpoint takes the client by Basic."""
    create(http, "sf", "actions:salesforce", {"instanceUrl": "https://acme.my.salesforce.com"})
    endpoints = flags(oauth_provider)
    first = headwater_oauth(data_dir, catalog, "sf", *APP, *endpoints)
    assert first.code == 0, first.err
    again = headwater_oauth(data_dir, catalog, "sf", *endpoints, "--scope", "api refresh_token")
    assert again.code == 0, again.err
    assert oauth_provider.problems == []
    assert all(a["code_challenge_method"] == "S256" for a in oauth_provider.authorizations)
    assert oauth_provider.authorizations[1]["scope"] == "api refresh_token"
    assert all("code_verifier" in t for t in oauth_provider.token_requests)
    oauth = stored_oauth(engine, "sf")
    assert oauth is not None and oauth["access_token"] == oauth_provider.issued["access_token"]

    oauth_provider.client_auth = "basic"
    create(http, "reddit", "actions:reddit-audiences", {"ad_account_id": "a2_1"})
    run = headwater_oauth(data_dir, catalog, "reddit", *APP, *endpoints)
    assert run.code == 0, run.err
    assert oauth_provider.problems == []
    assert oauth_provider.authorizations[-1]["duration"] == "permanent"
    assert "client_secret" not in oauth_provider.token_requests[-1]
    reddit = stored_oauth(engine, "reddit")
    assert reddit is not None and reddit["refresh_token"] == oauth_provider.issued["refresh_token"]


@pytest.mark.parametrize(
    ("setup", "browse", "message"),
    [
        ("deny", "follow", "consent was refused at HubSpot"),
        ("none", "forge", "the callback's state does not match"),
        (
            "token 400",
            "follow",
            "HubSpot's token endpoint refused the code: invalid_grant (the code expired)",
        ),
    ],
)
def test_a_failed_authorization_stores_nothing(
    http: TestClient,
    engine: Engine,
    data_dir: Path,
    catalog: Path,
    oauth_provider: FakeProvider,
    setup: str,
    browse: str,
    message: str,
) -> None:
    oauth_provider.deny = setup == "deny"
    oauth_provider.token_status = 400 if setup == "token 400" else 200
    create(http, "crm", "actions:hubspot", {})
    endpoints = flags(oauth_provider)
    run = headwater_oauth(data_dir, catalog, "crm", *APP, *endpoints, browse=browse)
    assert run.code == 1
    assert f"headwater catalog oauth: {message}" in run.err
    assert "Stored" not in run.out
    assert stored_oauth(engine, "crm") is None
    assert oauth_provider.problems == []
    assert len(oauth_provider.token_requests) == (1 if setup == "token 400" else 0)


def test_a_destination_that_is_not_oauth(
    http: TestClient, engine: Engine, data_dir: Path, catalog: Path
) -> None:
    create(http, "cio", "actions:customerio", {"siteId": "s", "apiKey": "k"})
    run = headwater_oauth(data_dir, catalog, "cio", *APP, browse=None)
    assert run.code == 1 and run.authorization_url is None
    assert "cio is a actions:customerio destination, which does not authenticate with OAuth" in (
        run.err
    )
    nobody = headwater_oauth(data_dir, catalog, "nobody", *APP, browse=None)
    assert nobody.code == 1 and "nobody" in nobody.err and "headwater export" in nobody.err


def test_a_provider_headwater_does_not_know_needs_the_flags(
    http: TestClient,
    engine: Engine,
    data_dir: Path,
    catalog: Path,
    oauth_provider: FakeProvider,
) -> None:
    assert "tiktok-audiences" not in PROVIDERS
    create(http, "tiktok", "actions:tiktok-audiences", {})
    refused = headwater_oauth(data_dir, catalog, "tiktok", *APP, browse=None)
    assert refused.code == 1 and refused.authorization_url is None
    assert "give --authorize-url and --token-url" in refused.err
    assert "TikTok Audiences" in refused.err

    endpoints = (*flags(oauth_provider), "--scope", "audience.manage")
    run = headwater_oauth(data_dir, catalog, "tiktok", *APP, *endpoints)
    assert run.code == 0, run.err
    assert oauth_provider.problems == []
    assert oauth_provider.authorizations[0]["scope"] == "audience.manage"
    oauth = stored_oauth(engine, "tiktok")
    assert oauth is not None and oauth["refresh_token_url"] == oauth_provider.token_url


def test_no_app_given_nor_stored(
    http: TestClient, engine: Engine, data_dir: Path, catalog: Path
) -> None:
    create(http, "crm", "actions:hubspot", {})
    run = headwater_oauth(data_dir, catalog, "crm", browse=None)
    assert run.code == 1
    assert "give --client-id and --client-secret" in run.err


def test_salesforce_sandboxes_authorize_at_test_salesforce_com() -> None:
    production = provider("salesforce", {"isSandbox": False})
    sandbox = provider("actions-pardot", {"isSandbox": True})
    assert production is not None and sandbox is not None
    assert production.authorize_url.startswith("https://login.salesforce.com/")
    assert sandbox.authorize_url == "https://test.salesforce.com/services/oauth2/authorize"
    assert sandbox.token_url == "https://test.salesforce.com/services/oauth2/token"


def test_no_callback_in_time_says_so_and_how_to_wait_longer() -> None:
    heard: list[float] = []
    with CallbackListener() as listener:
        with pytest.raises(AuthorizationFailed, match=r"no callback within 1 s.*--timeout"):
            listener.wait(1.0, heard.append, every=0.1)
        answer = httpx.get(f"http://127.0.0.1:{listener.port}/callback?state=late&code=c")
    assert heard and all(0 < left < 1 for left in heard)  # progress while waiting
    assert answer.status_code == 200  # a late browser still gets a page
