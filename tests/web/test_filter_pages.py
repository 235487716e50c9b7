"""A destination's filters pages (SQLite and PostgreSQL) through the web app's routes and the
REST API in process: the list, creating and editing a filter with each action, the FQL
parser's error by the field, the preview on the source's recent debugger events (the page's
and the live one's JSON), enabling, deleting, CSRF, and 403 for a role without Sources."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.api.debugger import router as debugger_router
from headwater.store.admin_token import hash_token
from headwater.store.database import write_transaction
from headwater.store.debugger import append_entries
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock
from tests.web.conftest import TOKEN, csrf_of
from tests.web.test_web_app import api_token


@pytest.fixture
def api(engine: Engine, clock: Clock) -> FastAPI:
    WorkspaceStore(engine, clock=clock).ensure_workspace("acme")
    app = create_api(
        engine, admin_token_hash=hash_token(TOKEN), extra_routers=[debugger_router], clock=clock
    )
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as rest:
        assert rest.post("/api/v1/sources", json={"name": "web"}).status_code == 201
        hook = {"source": "web", "name": "hook", "type": "webhook"}
        made = rest.post("/api/v1/destinations", json={**hook, "settings": {"url": "http://x/"}})
        assert made.status_code == 201, made.text
    return app


@pytest.fixture
def destination_id(api: FastAPI, engine: Engine) -> str:
    with TestClient(api, headers={"Authorization": f"Bearer {TOKEN}"}) as rest:
        found = rest.get("/api/v1/destinations/hook").json()["data"]["destination"]
    events: list[tuple[str, dict[str, Any]]] = [
        ("track", {"event": "Order Completed", "properties": {"email": "a@x.com", "total": 5}}),
        ("track", {"event": "Page Scrolled", "properties": {"depth": 50}}),
        ("identify", {"traits": {"plan": "pro"}}),
    ]
    with write_transaction(engine) as conn:
        append_entries(conn, [entry(found["sourceId"], kind, f) for kind, f in events])
    destination_id: str = found["id"]
    return destination_id


def entry(source_id: str, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {
        "source_id": source_id,
        "received_at": "2023-11-14T22:13:20.000Z",
        "status": "accepted",
        "reason": None,
        "entry": {"message": {"type": kind, "userId": "u1", **fields}},
    }


def form(csrf: str, statement: str, **extra: str) -> dict[str, str]:
    return {"csrf": csrf, "title": "No scrolls", "if": statement, "enabled": "1", **extra}


def rows(page: str) -> list[tuple[str, str]]:
    """Each previewed event's label and result."""
    found = re.findall(
        r"<summary>\w+ ([^<]*)</summary>.*?class=\"preview-result \w+\">([^<]+)</td>", page, re.S
    )
    return [(label.strip(), result.strip()) for label, result in found]


def test_a_new_filter_previews_then_saves_and_lists(web: TestClient, destination_id: str) -> None:
    base = f"/destinations/{destination_id}/filters"
    empty = web.get(base)
    assert empty.status_code == 200 and "No filters" in empty.text
    assert f'href="/destinations/{destination_id}">Overview' in empty.text
    new = web.get(base + "/new")
    assert new.status_code == 200 and 'id="if"' in new.text and "filters.js" in new.text
    csrf = csrf_of(new.text)
    shown = web.post(
        base, data=form(csrf, 'event = "Page Scrolled"', action_drop="1", action="preview")
    )
    assert shown.status_code == 200, shown.text
    assert "this filter drops 1" in shown.text
    assert rows(shown.text) == [
        ("", "Sent"),  # the identify (newest first)
        ("Page Scrolled", "Dropped"),
        ("Order Completed", "Sent"),
    ]
    assert "event = &#34;Page Scrolled&#34;" in shown.text  # the form keeps what was typed
    saved = web.post(base, data=form(csrf, 'event = "Page Scrolled"', action_drop="1"))
    assert saved.status_code == 303 and saved.headers["location"] == base + "?saved=1"
    listing = web.get(base + "?saved=1").text
    assert "Filter saved." in listing and "No scrolls" in listing and "Drop the event" in listing
    filter_id = re.search(rf'href="{base}/([^"]+)">No scrolls', listing)
    assert filter_id is not None
    edit = web.get(f"{base}/{filter_id.group(1)}")
    assert edit.status_code == 200 and "this filter drops 1" in edit.text  # previewed at once


def test_invalid_fql_shows_the_parsers_error_by_the_field(
    web: TestClient, destination_id: str
) -> None:
    base = f"/destinations/{destination_id}/filters"
    csrf = csrf_of(web.get(base + "/new").text)
    for action in ("preview", "save"):
        answer = web.post(base, data=form(csrf, "event = ", action_drop="1", action=action))
        assert answer.status_code in (400, 422), answer.text
        error = re.search(r'<p id="if-error" class="error" role="alert">([^<]+)</p>', answer.text)
        assert error is not None and "not valid FQL" in error.group(1), answer.text
        assert 'aria-invalid="true">event = </textarea>' in answer.text
    live = web.post(base + "/preview", data=form(csrf, 'event = "x" and', action_drop="1"))
    assert live.status_code == 200
    assert "not valid FQL" in live.json()["errors"]["if"]
    missing = web.post(base, data=form(csrf, "", action="save"))
    assert missing.status_code == 400
    assert "Enter an FQL statement" in missing.text and "Choose at least one action" in missing.text


def test_the_live_preview_answers_json_with_the_previews_html(
    web: TestClient, destination_id: str
) -> None:
    base = f"/destinations/{destination_id}/filters"
    csrf = csrf_of(web.get(base + "/new").text)
    live = web.post(
        base + "/preview",
        data=form(
            csrf, 'type = "track"', action_drop_properties="1", drop_properties="properties.email"
        ),
    )
    assert live.status_code == 200, live.text
    body = live.json()
    assert body["errors"] == {}
    assert rows(body["html"]) == [
        ("", "Sent"),
        ("Page Scrolled", "Sent"),
        ("Order Completed", "Sent without properties.email"),
    ]
    allowed = web.post(
        base + "/preview",
        data=form(
            csrf,
            "all",
            action_allow_properties="1",
            allow_properties="properties.total",
        ),
    ).json()
    assert rows(allowed["html"]) == [
        ("", "Sent"),
        ("Page Scrolled", "Sent without properties.depth"),
        ("Order Completed", "Sent without properties.email"),
    ]
    sampled = web.post(
        base + "/preview", data=form(csrf, "all", action_sample="1", sample_percent="0")
    ).json()
    assert "this filter drops 3" in sampled["html"]
    bad = web.post(base + "/preview", data=form(csrf, "all", action_sample="1", sample_percent="x"))
    assert "from 0 to 100" in bad.json()["errors"]["sample"]
    forged = web.post(base + "/preview", data=form("forged", "all", action_drop="1"))
    assert forged.status_code == 403


def test_editing_enabling_and_deleting_a_filter(web: TestClient, destination_id: str) -> None:
    base = f"/destinations/{destination_id}/filters"
    csrf = csrf_of(web.get(base + "/new").text)
    web.post(
        base, data=form(csrf, "all", action_sample="1", sample_percent="25", sample_path="userId")
    )
    listing = web.get(base).text
    found = re.search(rf'href="{base}/([^"]+)">No scrolls', listing)
    assert found is not None and "Sample 25%" in listing
    path = f"{base}/{found.group(1)}"
    edit = web.get(path).text
    assert 'value="25"' in edit and 'value="userId"' in edit
    changed = web.post(
        path,
        data=form(
            csrf, 'type = "identify"', action_drop_properties="1", drop_properties="traits.plan"
        ),
    )
    assert changed.status_code == 303
    listing = web.get(base).text
    assert "Drop traits.plan" in listing and "Sample" not in listing
    disabled = web.post(f"{path}/enabled", data={"csrf": csrf, "enabled": "0"})
    assert disabled.status_code == 303
    assert "<td>Disabled</td>" in web.get(base).text
    assert web.post(f"{path}/delete", data={"csrf": "forged"}).status_code == 403
    deleted = web.post(f"{path}/delete", data={"csrf": csrf})
    assert deleted.headers["location"] == base + "?deleted=1"
    assert "No filters" in web.get(base).text
    assert web.get(path).status_code == 404


def test_unknown_destinations_and_filters_are_404(web: TestClient, destination_id: str) -> None:
    assert web.get("/destinations/nope/filters").status_code == 404
    assert web.get("/destinations/nope/filters/new").status_code == 404
    assert web.get(f"/destinations/{destination_id}/filters/nope").status_code == 404
    csrf = csrf_of(web.get(f"/destinations/{destination_id}/filters/new").text)
    posted = web.post("/destinations/nope/filters", data=form(csrf, "all", action_drop="1"))
    assert posted.status_code == 404


def test_a_role_without_sources_gets_403(
    web: TestClient, engine: Engine, destination_id: str
) -> None:
    web.cookies.clear()
    assert (
        web.post("/login", data={"token": api_token(engine, "function-admin")}).status_code == 303
    )
    base = f"/destinations/{destination_id}/filters"
    for path in (base, base + "/new"):
        refused = web.get(path)
        assert refused.status_code == 403 and "hook" not in refused.text, path
    web.cookies.clear()
    reader = api_token(engine, "source-read-only")
    assert web.post("/login", data={"token": reader}).status_code == 303
    page = web.get(base + "/new")
    assert page.status_code == 200
    saved = web.post(base, data=form(csrf_of(page.text), "all", action_drop="1"))
    assert saved.status_code == 403 and "Not allowed" in saved.text


@pytest.mark.parametrize("ref", ["%2E%2E", "a%3Fb=1", "%00", "x" * 3000, "%F0%9F%92%A9", "%25"])
def test_hostile_references_are_4xx_pages(web: TestClient, destination_id: str, ref: str) -> None:
    csrf = csrf_of(web.get(f"/destinations/{destination_id}/filters/new").text)
    for path in (
        f"/destinations/{ref}/filters",
        f"/destinations/{ref}/filters/new",
        f"/destinations/{destination_id}/filters/{ref}",
    ):
        answer = web.get(path)
        assert answer.status_code in (400, 404), (path, answer.text)
        assert "Back to Home" in answer.text
    for path in (
        f"/destinations/{ref}/filters",
        f"/destinations/{destination_id}/filters/{ref}",
        f"/destinations/{destination_id}/filters/{ref}/enabled",
        f"/destinations/{destination_id}/filters/{ref}/delete",
    ):
        posted = web.post(path, data=form(csrf, "all", action_drop="1"))
        assert posted.status_code in (400, 404), (path, posted.text)
    live = web.post(f"/destinations/{ref}/filters/preview", data=form(csrf, "all", action_drop="1"))
    assert live.status_code in (400, 404)
