"""The Warehouses pages (SQLite and PostgreSQL) through the web app and the REST API in
process: the list with sources and last sync, adding a warehouse (the API's refusals by their
field), settings whose secrets never reach the page and are kept when left empty, "Sync now",
the sync history with rows per table and notices, and 403 for a role without warehouses."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.store import schema
from headwater.store.admin_token import hash_token
from headwater.store.database import write_transaction
from headwater.store.workspace import WorkspaceStore
from headwater.warehouse.store import WarehouseStore
from headwater.web.app import WebApp
from tests.support.clock import Clock
from tests.web.conftest import TOKEN, api_token, csrf_of

SECRET = "hunter2-very-secret"


@pytest.fixture
def api(engine: Engine, clock: Clock) -> FastAPI:
    store = WorkspaceStore(engine, clock=clock)
    store.ensure_workspace("acme")
    store.create_source("web")
    return create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)


def add_postgres(web: TestClient, name: str = "analytics", **settings: str) -> str:
    csrf = csrf_of(web.get("/warehouses?type=postgres").text)
    fields = {"setting.host": "db.internal", "setting.database": "dw", "setting.user": "loader"}
    fields.update(settings)
    answer = web.post(
        "/warehouses", data={"csrf": csrf, "type": "postgres", "name": name, **fields}
    )
    assert answer.status_code == 303, answer.text
    location: str = answer.headers["location"]
    return location.removeprefix("/warehouses/")


def test_adding_a_warehouse_never_shows_its_secret(web: TestClient, engine: Engine) -> None:
    form = web.get("/warehouses?type=postgres").text
    assert 'name="setting.password" type="password"' in form
    assert 'Host <span class="required">(required)</span>' in form
    warehouse_id = add_postgres(web, **{"setting.password": SECRET})
    page = web.get(f"/warehouses/{warehouse_id}")
    assert page.status_code == 200
    assert "<h1>analytics</h1>" in page.text and "db.internal" in page.text
    assert SECRET not in page.text and "[redacted]" not in page.text
    assert "Set — enter a new value to replace it; leave blank to keep it." in page.text
    listing = web.get("/warehouses").text
    assert f'<a href="/warehouses/{warehouse_id}">analytics</a>' in listing
    assert "All sources" in listing and "Never synced" in listing and SECRET not in listing

    # Saving with the secret left empty keeps it; a new value replaces it.
    csrf = csrf_of(page.text)
    fields = {
        "setting.host": "db2.internal",
        "setting.database": "dw",
        "setting.user": "loader",
        "enabled": "on",
    }
    saved = web.post(f"/warehouses/{warehouse_id}/settings", data={"csrf": csrf, **fields})
    assert saved.status_code == 303 and saved.headers["location"].endswith("?saved=1")
    stored = WarehouseStore(WorkspaceStore(engine)).require(warehouse_id)
    assert stored.settings["password"] == SECRET and stored.settings["host"] == "db2.internal"
    again = {**fields, "setting.password": "new-secret-value"}
    web.post(f"/warehouses/{warehouse_id}/settings", data={"csrf": csrf, **again})
    stored = WarehouseStore(WorkspaceStore(engine)).require(warehouse_id)
    assert stored.settings["password"] == "new-secret-value"
    after = web.get(f"/warehouses/{warehouse_id}?saved=1").text
    assert "new-secret-value" not in after and "The settings were saved" in after


def test_refused_warehouses_show_the_error_by_the_field(web: TestClient) -> None:
    csrf = csrf_of(web.get("/warehouses").text)
    form = {
        "csrf": csrf,
        "type": "postgres",
        "name": "pg",
        "setting.host": "h",
        "setting.password": SECRET,
    }
    missing = web.post("/warehouses", data=form)
    assert missing.status_code == 422, missing.text
    assert re.search(r'<p id="setting-database-error" class="error">[^<]*database', missing.text)
    assert 'value="h"' in missing.text  # what was typed stays, but never a secret
    assert SECRET not in missing.text
    nameless = web.post("/warehouses", data={"csrf": csrf, "type": "duckdb", "name": " "})
    assert nameless.status_code == 400 and 'id="name-error"' in nameless.text
    odd = web.post("/warehouses", data={"csrf": csrf, "type": "oracle", "name": "x"})
    assert odd.status_code == 400 and 'id="type-error"' in odd.text
    assert (
        web.post("/warehouses", data={"csrf": csrf, "type": "duckdb", "name": "lake"}).status_code
        == 303
    )
    twice = web.post("/warehouses", data={"csrf": csrf, "type": "duckdb", "name": "lake"})
    assert twice.status_code == 409
    assert re.search(r'<p id="name-error" class="error" role="alert">[^<]*already', twice.text)
    forged = web.post("/warehouses", data={"csrf": "forged", "type": "duckdb", "name": "x"})
    assert forged.status_code == 403


def test_a_bad_setting_on_save_shows_by_its_field(web: TestClient) -> None:
    warehouse_id = add_postgres(web)
    csrf = csrf_of(web.get(f"/warehouses/{warehouse_id}").text)
    fields = {
        "setting.host": "db",
        "setting.database": "dw",
        "setting.user": "u",
        "setting.port": "seventy",
    }
    answer = web.post(f"/warehouses/{warehouse_id}/settings", data={"csrf": csrf, **fields})
    assert answer.status_code == 422, answer.text
    assert re.search(r'<p id="setting-port-error" class="error">Enter a whole number', answer.text)
    assert 'value="seventy"' in answer.text


def test_the_schedule_and_the_sources_synced(web: TestClient, engine: Engine) -> None:
    warehouse_id = add_postgres(web, **{"setting.password": SECRET})
    page = web.get(f"/warehouses/{warehouse_id}").text
    assert '<option value="24" selected>24 (every 1 h)</option>' in page
    assert '<option value="8">8 (every 3 h)</option>' in page
    assert 'name="sources_all" checked' in page
    web_id = WorkspaceStore(engine).get_source("web")
    assert web_id is not None
    fields = {"setting.host": "db", "setting.database": "dw", "setting.user": "u", "enabled": "on"}
    answer = web.post(
        f"/warehouses/{warehouse_id}/settings",
        data={
            "csrf": csrf_of(page),
            **fields,
            "syncs_per_day": "6",
            "sources_shown": "1",
            "source": web_id.id,
        },
    )
    assert answer.status_code == 303, answer.text
    stored = WarehouseStore(WorkspaceStore(engine)).require(warehouse_id)
    assert stored.options.syncs_per_day == 6 and stored.options.sources == [web_id.id]
    assert stored.settings["password"] == SECRET
    page = web.get(f"/warehouses/{warehouse_id}").text
    assert f'value="{web_id.id}" checked' in page and 'name="sources_all" checked' not in page
    assert "<dd>6</dd>" in page
    listing = web.get("/warehouses").text
    assert "<td>web</td>" in listing
    refused = web.post(
        f"/warehouses/{warehouse_id}/settings",
        data={"csrf": csrf_of(page), **fields, "syncs_per_day": "48", "sources_shown": "1"},
    )
    assert refused.status_code == 422, refused.text
    assert 'id="syncs_per_day-error"' in refused.text


def test_sync_now_and_the_sync_history(web: TestClient, engine: Engine, clock: Clock) -> None:
    warehouse_id = add_postgres(web, **{"setting.password": SECRET})
    page = web.get(f"/warehouses/{warehouse_id}").text
    assert "No syncs yet." in page
    answer = web.post(f"/warehouses/{warehouse_id}/syncs", data={"csrf": csrf_of(page)})
    assert answer.status_code == 303
    assert re.fullmatch(rf"/warehouses/{warehouse_id}\?synced=\d+", answer.headers["location"])
    requested = web.get(answer.headers["location"]).text
    assert "was requested" in requested and "Requested (sync now)" in requested
    assert web.post(f"/warehouses/{warehouse_id}/syncs", data={"csrf": "x"}).status_code == 403

    now = int(clock())
    with write_transaction(engine) as conn:
        conn.execute(
            schema.warehouse_syncs.insert().values(
                warehouse_id=warehouse_id,
                trigger="schedule",
                status="partial",
                started_at=now,
                finished_at=now + 75,
                heartbeat_at=now + 75,
                rows={"web": {"tracks": 1200, "order_completed": 34}},
                notices=["web.pages: UndefinedTable: <relation> missing"],
                error=None,
            )
        )
    history = web.get(f"/warehouses/{warehouse_id}").text
    assert "Partial" in history and "1 min 15 s" in history and "1,234" in history
    assert '<td>order_completed</td><td class="num">34</td>' in history
    assert "&lt;relation&gt; missing" in history and "<relation>" not in history
    listing = web.get("/warehouses").text
    assert "Partial" in listing  # the newest run is the last sync


def test_roles_without_warehouses_are_refused_and_readers_cannot_change(
    web: TestClient, app: WebApp, api: FastAPI
) -> None:
    warehouse_id = add_postgres(web, **{"setting.password": SECRET})
    for role, status in (("source-read-only", 403), ("warehouse-destination-read-only", 200)):
        with TestClient(app, follow_redirects=False) as other:
            token = api_token(api, role)
            assert other.post("/login", data={"token": token, "next": "/"}).status_code == 303
            listing = other.get("/warehouses")
            page = other.get(f"/warehouses/{warehouse_id}")
            assert listing.status_code == status and page.status_code == status
            if status == 403:
                assert "analytics" not in listing.text and "db.internal" not in page.text
                continue
            assert "Sync now" not in page.text and "Save settings" not in page.text
            assert "Set (never shown)" in page.text and SECRET not in page.text
            csrf = csrf_of(page.text)
            refused = other.post(f"/warehouses/{warehouse_id}/syncs", data={"csrf": csrf})
            assert refused.status_code == 403


@pytest.mark.parametrize("ref", ["nope", "%2E%2E", "x" * 3000, "%00"])
def test_unknown_warehouses_are_4xx_pages(web: TestClient, ref: str) -> None:
    csrf = csrf_of(web.get("/warehouses").text)
    assert web.get(f"/warehouses/{ref}").status_code in (400, 404)
    for action in ("syncs", "settings"):
        answer = web.post(f"/warehouses/{ref}/{action}", data={"csrf": csrf})
        assert answer.status_code in (400, 404), answer.text
