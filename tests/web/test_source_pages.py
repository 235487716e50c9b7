"""The Sources pages (SQLite and PostgreSQL) through the web app's routes and the REST API in
process: adding a source (and the API's refusals shown by the field), its overview with write
keys and the analytics.js snippet, rotating a key, the debugger with search, and the debugger's
stream passed on from the API."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.api.debugger import router as debugger_router
from headwater.iam.principals import ADMIN
from headwater.store.admin_token import hash_token
from headwater.store.database import write_transaction
from headwater.store.debugger import append_entries
from headwater.store.workspace import WorkspaceStore
from headwater.web.app import WebApp
from headwater.web.inprocess import InProcessAPI
from tests.support.clock import Clock
from tests.web.conftest import csrf_of

TOKEN = "test-admin-token"


@pytest.fixture
def api(engine: Engine, clock: Clock) -> FastAPI:
    WorkspaceStore(engine, clock=clock).ensure_workspace("acme")
    return create_api(
        engine, admin_token_hash=hash_token(TOKEN), extra_routers=[debugger_router], clock=clock
    )


@pytest.fixture
def web(api: FastAPI, engine: Engine, clock: Clock) -> Iterator[TestClient]:
    app = WebApp(
        api,
        WorkspaceStore(engine, clock=clock),
        admin_token_hash=hash_token(TOKEN),
        clock=clock,
        public_url="https://collect.example.com/",
    )
    with TestClient(app, follow_redirects=False) as http:
        answer = http.post("/login", data={"token": TOKEN, "next": "/"})
        assert answer.status_code == 303
        yield http


def add_source(web: TestClient, name: str) -> str:
    csrf = csrf_of(web.get("/sources").text)
    answer = web.post("/sources", data={"csrf": csrf, "name": name})
    assert answer.status_code == 303, answer.text
    location: str = answer.headers["location"]
    assert location.startswith("/sources/")
    return location.removeprefix("/sources/")


def debugger_entry(source_id: str, event: str, email: str = "") -> dict[str, object]:
    message = {"type": "track", "event": event, "userId": "u1", "properties": {"email": email}}
    return {
        "source_id": source_id,
        "received_at": "2023-11-14T22:13:20.000Z",
        "status": "accepted",
        "reason": None,
        "entry": {"message": message},
    }


def test_adding_a_source_leads_to_its_page_with_key_and_snippet(web: TestClient) -> None:
    source_id = add_source(web, "Marketing site")
    page = web.get(f"/sources/{source_id}")
    assert page.status_code == 200, page.text
    assert "<h1>Marketing site</h1>" in page.text
    key = re.search(r'<code id="key-1">([^<]+)</code>', page.text)
    assert key is not None and len(key.group(1)) == 32
    # The snippet, escaped into the page, names this key and sends settings to this server.
    assert f"analytics.load(&#34;{key.group(1)}&#34;)" in page.text
    assert "analytics._cdn=&#34;https://collect.example.com&#34;" in page.text
    assert 'data-copy="snippet"' in page.text
    listing = web.get("/sources").text
    assert f'<a href="/sources/{source_id}">Marketing site</a>' in listing


@pytest.mark.parametrize(
    ("name", "status", "message"),
    [
        ("", 400, "Enter a name."),
        ("Marketing site", 409, "already"),  # the API's refusal, by the field
        ("x" * 300, 422, "name"),
    ],
)
def test_a_refused_source_shows_the_apis_error_by_the_field(
    web: TestClient, name: str, status: int, message: str
) -> None:
    add_source(web, "Marketing site")
    csrf = csrf_of(web.get("/sources").text)
    answer = web.post("/sources", data={"csrf": csrf, "name": name})
    assert answer.status_code == status, answer.text
    shown = re.search(r'<p id="name-error" class="error" role="alert">([^<]+)</p>', answer.text)
    assert shown is not None and message in shown.group(1)
    assert 'aria-invalid="true"' in answer.text


def test_forms_need_the_sessions_csrf_token(web: TestClient) -> None:
    assert web.post("/sources", data={"csrf": "forged", "name": "x"}).status_code == 403
    source_id = add_source(web, "web")
    rotate = web.post(f"/sources/{source_id}/write-keys", data={"csrf": "forged"})
    assert rotate.status_code == 403
    assert web.get(f"/sources/{source_id}").text.count('<code id="key-') == 1


def test_rotating_adds_a_key_and_keeps_the_old_one(web: TestClient) -> None:
    source_id = add_source(web, "web")
    page = web.get(f"/sources/{source_id}").text
    old = re.findall(r'<code id="key-\d+">([^<]+)</code>', page)
    answer = web.post(f"/sources/{source_id}/write-keys", data={"csrf": csrf_of(page)})
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/sources/{source_id}?rotated=1"
    after = web.get(answer.headers["location"]).text
    keys = re.findall(r'<code id="key-\d+">([^<]+)</code>', after)
    assert len(keys) == 2 and keys[1] == old[0]  # newest first
    assert f"analytics.load(&#34;{keys[0]}&#34;)" in after  # the snippet takes the new key
    assert "keep working for 24 hours" in after


def test_unknown_sources_are_404_pages(web: TestClient) -> None:
    for path in ("/sources/nope", "/sources/nope/debugger", "/sources/nope/debugger/stream"):
        assert web.get(path).status_code == 404, path
    csrf = csrf_of(web.get("/sources").text)
    assert web.post("/sources/nope/write-keys", data={"csrf": csrf}).status_code == 404


def test_the_debugger_shows_entries_as_json_and_searches(web: TestClient, engine: Engine) -> None:
    source_id = add_source(web, "web")
    with write_transaction(engine) as conn:
        append_entries(
            conn,
            [
                debugger_entry(source_id, "Order Completed", "a@example.com"),
                debugger_entry(source_id, "<b>Signed Up</b>"),
            ],
        )
    page = web.get(f"/sources/{source_id}/debugger")
    assert page.status_code == 200
    text = page.text
    assert text.index("&lt;b&gt;Signed Up&lt;/b&gt;") < text.index(
        "Order Completed"
    )  # newest first
    assert "<b>Signed" not in text
    assert "&#34;email&#34;: &#34;a@example.com&#34;" in text  # pretty JSON; admin sees PII
    assert "/debugger/stream?after=" in text
    found = web.get(f"/sources/{source_id}/debugger", params={"q": "order"}).text
    assert "Order Completed" in found and "Signed Up" not in found
    none = web.get(f"/sources/{source_id}/debugger", params={"q": "refund"}).text
    assert "No events match" in none
    odd = web.get(f"/sources/{source_id}/debugger", params={"q": "\x00" + "x" * 5000})
    assert odd.status_code in (200, 400), odd.text
    bad = web.get(f"/sources/{source_id}/debugger/stream", params={"after": "soon"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "after"


def test_the_stream_passes_on_the_apis_events_and_stops_when_read_no_more(
    api: FastAPI, engine: Engine
) -> None:
    source = WorkspaceStore(engine).create_source("web")

    async def scenario() -> bytes:
        async with asyncio.timeout(20):
            return await read_until_an_entry()

    async def read_until_an_entry() -> bytes:
        stream = await InProcessAPI(api).stream(
            f"/api/v1/sources/{source.id}/debugger/stream", ADMIN
        )
        assert stream.status == 200
        assert (b"content-type", b"text/event-stream; charset=utf-8") in stream.headers
        received = b""
        async for chunk in stream.chunks:
            received += chunk
            if b"retry:" in received and b"data:" not in received:
                await asyncio.to_thread(add_entry)
            if b"data:" in received:
                break
        await stream.chunks.aclose()
        # Reading no more ends the route's task, as a browser leaving ends its connection.
        assert asyncio.all_tasks() == {asyncio.current_task()}
        return received

    def add_entry() -> None:
        with write_transaction(engine) as conn:
            append_entries(conn, [debugger_entry(source.id, "Live Event")])

    received = asyncio.run(scenario())
    assert b": connected" in received
    assert b"Live Event" in received and b"id: " in received


@pytest.mark.parametrize("ref", ["%2E%2E", "a%3Fb=1", "%00", "x" * 3000, "%F0%9F%92%A9", "%25"])
def test_hostile_source_references_are_4xx_pages(web: TestClient, ref: str) -> None:
    csrf = csrf_of(web.get("/sources").text)
    for path in (f"/sources/{ref}", f"/sources/{ref}/debugger?q=%00"):
        answer = web.get(path)
        assert answer.status_code in (400, 404), (path, answer.text)
        assert "Back to Home" in answer.text
    rotate = web.post(f"/sources/{ref}/write-keys", data={"csrf": csrf})
    assert rotate.status_code in (400, 404)
    stream = web.get(f"/sources/{ref}/debugger/stream", params={"after": "-1"})
    assert stream.status_code in (400, 404)
