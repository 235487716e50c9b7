"""Segment's Public API shapes under ``/segment/v1``, through FastAPI's TestClient, on SQLite
and PostgreSQL: the same sources and destinations as ``/api/v1``, in Segment's bodies
(A-API-1's token and pagination, A-API-2's error bodies)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.api.segment.catalog import destination_metadata
from headwater.destinations.runtime.definitions import build
from headwater.destinations.store import DestinationStore
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE = "/segment/v1"
JAVASCRIPT = "IqDTy1TpoU"  # Segment's catalog ids
HTTP_API = "iUM16Md8P2"
WEBHOOKS = "54521fdc25e721e32a72ef04"
HOOK_SETTINGS = {"url": "http://127.0.0.1:9/hook"}


@pytest.fixture
def engine(engine: Engine) -> Engine:
    WorkspaceStore(engine).ensure_workspace("acme")
    return engine


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    app = create_api(engine, admin_token_hash=hash_token(TOKEN))
    with TestClient(app, headers=AUTH) as http:
        yield http


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"data"}, body
    data: dict[str, Any] = body["data"]
    return data


def assert_error(response: Any, status: int, type_: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors"}
    error = body["errors"][0]
    assert error["type"] == type_
    assert isinstance(error["message"], str) and error["message"]
    if field is not None:
        assert error.get("field") == field, body


def new_source(client: TestClient, slug: str, **extra: Any) -> dict[str, Any]:
    body = {"slug": slug, "enabled": True, "metadataId": JAVASCRIPT, **extra}
    source: dict[str, Any] = ok(client.post(f"{BASE}/sources", json=body), 201)["source"]
    return source


def new_destination(client: TestClient, source_id: str, **extra: Any) -> dict[str, Any]:
    body = {"sourceId": source_id, "metadataId": WEBHOOKS, "settings": HOOK_SETTINGS, **extra}
    destination: dict[str, Any] = ok(client.post(f"{BASE}/destinations", json=body))["destination"]
    return destination


def _param(name: str, spelling: str) -> str:
    return f"pagination.{name}" if spelling == "." else f"pagination[{name}]"


def walk(client: TestClient, path: str, key: str, count: int, spelling: str) -> list[Any]:
    """Every item of a list, page after page of ``count``, checking each page's pagination."""
    items: list[Any] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {_param("count", spelling): str(count)}
        if cursor is not None:
            params[_param("cursor", spelling)] = cursor
        data = ok(client.get(f"{BASE}{path}", params=params))
        page, pagination = data[key], data["pagination"]
        pages += 1
        assert len(page) <= count
        assert isinstance(pagination["current"], str)
        assert ("previous" in pagination) == (pages > 1), pagination
        items += page
        if "next" not in pagination:
            assert pagination["totalEntries"] == len(items)
            return items
        assert len(page) == count
        cursor = pagination["next"]


# --- authentication, media types, the envelope -----------------------------------------------


def test_every_operation_needs_the_token(client: TestClient) -> None:
    for method, path in [
        ("GET", "/"),
        ("GET", "/sources"),
        ("POST", "/sources"),
        ("DELETE", "/sources/x"),
        ("GET", "/destinations"),
        ("GET", "/catalog/destinations"),
    ]:
        response = client.request(method, f"{BASE}{path}", headers={"Authorization": ""})
        assert_error(response, 401, "unauthorized")
    assert_error(
        client.get(f"{BASE}/", headers={"Authorization": "Bearer wrong"}), 401, "unauthorized"
    )


def test_get_workspace(client: TestClient, engine: Engine) -> None:
    workspace = WorkspaceStore(engine).workspace()
    assert workspace is not None
    assert ok(client.get(f"{BASE}/")) == {
        "workspace": {"id": workspace.id, "slug": "acme", "name": "acme"}
    }


@pytest.mark.parametrize(
    "accept",
    [
        "application/json",
        "application/vnd.segment.v1+json",
        "application/vnd.segment.v1beta+json",
        "application/vnd.segment.v1alpha+json",
        "application/vnd.segment.v1+json,application/json",
        "*/*",
    ],
)
def test_segment_media_types_are_accepted(client: TestClient, accept: str) -> None:
    assert "workspace" in ok(client.get(f"{BASE}/", headers={"Accept": accept}))


def test_other_media_types_are_refused(client: TestClient) -> None:
    assert_error(client.get(f"{BASE}/", headers={"Accept": "text/html"}), 406, "not_acceptable")
    assert_error(
        client.get(f"{BASE}/", headers={"Accept": "application/json;q=0"}), 406, "not_acceptable"
    )
    response = client.post(
        f"{BASE}/sources",
        content=b'{"slug": "web", "enabled": true, "metadataId": "IqDTy1TpoU"}',
        headers={"Content-Type": "text/plain"},
    )
    assert_error(response, 415, "unsupported_media_type")
    assert ok(client.get(f"{BASE}/sources"))["sources"] == []


def test_a_versioned_content_type_carries_a_body(client: TestClient) -> None:
    response = client.post(
        f"{BASE}/sources",
        content=b'{"slug": "web", "enabled": true, "metadataId": "IqDTy1TpoU"}',
        headers={"Content-Type": "application/vnd.segment.v1+json"},
    )
    assert ok(response, 201)["source"]["slug"] == "web"


def test_unknown_path_and_bad_json_are_errors_in_the_envelope(client: TestClient) -> None:
    assert_error(client.get(f"{BASE}/nothing-here"), 404, "not_found")
    response = client.post(
        f"{BASE}/sources", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "bad_request")


# --- sources ---------------------------------------------------------------------------------


def test_source_crud(client: TestClient, engine: Engine) -> None:
    created = new_source(client, "web", settings={"site": "example.com"})
    workspace = WorkspaceStore(engine).workspace()
    assert workspace is not None
    assert created["slug"] == created["name"] == "web"
    assert created["workspaceId"] == workspace.id
    assert created["enabled"] is True
    assert created["settings"] == {"site": "example.com"}
    assert created["labels"] == []
    assert created["metadata"]["id"] == JAVASCRIPT
    assert created["metadata"]["slug"] == "javascript"
    assert len(created["writeKeys"]) == 1
    # The same source, seen through /api/v1: one store behind both.
    same = client.get(f"/api/v1/sources/{created['id']}").json()["data"]["source"]
    assert (same["name"], same["writeKeys"]) == ("web", created["writeKeys"])

    got = ok(client.get(f"{BASE}/sources/{created['id']}"))
    assert got == {"source": created, "trackingPlanId": None}

    updated = ok(
        client.patch(f"{BASE}/sources/{created['id']}", json={"name": "Web", "enabled": False})
    )["source"]
    assert (updated["name"], updated["slug"], updated["enabled"]) == ("Web", "web", False)
    assert updated["metadata"]["id"] == JAVASCRIPT  # remembered

    assert ok(client.delete(f"{BASE}/sources/{created['id']}")) == {"status": "SUCCESS"}
    assert_error(client.get(f"{BASE}/sources/{created['id']}"), 404, "not_found")
    assert_error(client.delete(f"{BASE}/sources/{created['id']}"), 404, "not_found")


def test_a_source_made_elsewhere_shows_the_http_api_entry(
    client: TestClient, engine: Engine
) -> None:
    made = WorkspaceStore(engine).create_source("server", slug="server")
    got = ok(client.get(f"{BASE}/sources/{made.id}"))["source"]
    assert got["metadata"]["id"] == HTTP_API
    assert got["name"] == "server"


def test_source_name_may_be_given(client: TestClient) -> None:
    assert new_source(client, "web", name="Website")["name"] == "Website"


def test_source_create_refusals(client: TestClient) -> None:
    def post(body: Any) -> Any:
        return client.post(f"{BASE}/sources", json=body)

    good = {"slug": "web", "enabled": True, "metadataId": JAVASCRIPT}
    assert_error(post({**good, "metadataId": "nope"}), 404, "not_found", "metadataId")
    assert_error(post({**good, "color": "red"}), 422, "validation", "color")
    assert_error(post({"slug": "web", "enabled": True}), 422, "validation", "metadataId")
    assert_error(post({**good, "slug": "Not A Slug"}), 422, "validation", "slug")
    assert_error(post({**good, "enabled": "yes"}), 422, "validation", "enabled")
    assert_error(
        post({**good, "disconnectAllWarehouses": True}),
        422,
        "validation",
        "disconnectAllWarehouses",
    )
    assert_error(post([good]), 422, "validation")
    new_source(client, "web")
    assert_error(post(good), 409, "conflict")
    assert len(ok(client.get(f"{BASE}/sources"))["sources"]) == 1


def test_source_update_refusals(client: TestClient) -> None:
    source = new_source(client, "web")

    def patch(body: Any) -> Any:
        return client.patch(f"{BASE}/sources/{source['id']}", json=body)

    assert_error(patch({"metadataId": HTTP_API}), 422, "validation", "metadataId")
    assert_error(patch({"name": None}), 422, "validation", "name")
    assert_error(patch({"slug": "a b"}), 422, "validation", "slug")
    assert_error(
        client.patch(f"{BASE}/sources/nope", json={"name": "x"}),
        404,
        "not_found",
    )
    assert ok(patch({}))["source"] == source


def test_write_keys(client: TestClient) -> None:
    source = new_source(client, "web")
    first = source["writeKeys"][0]
    added = ok(client.post(f"{BASE}/sources/{source['id']}/writekey"))["source"]
    assert len(added["writeKeys"]) == 2 and first in added["writeKeys"]
    second = next(k for k in added["writeKeys"] if k != first)
    removed = client.delete(f"{BASE}/sources/{source['id']}/writekey/{first}")
    assert ok(removed) == {"status": "SUCCESS"}
    after = ok(client.get(f"{BASE}/sources/{source['id']}"))["source"]
    assert after["writeKeys"] == [second]
    assert_error(client.delete(f"{BASE}/sources/{source['id']}/writekey/{first}"), 404, "not_found")
    # The last key stays: a source without one could take no events.
    assert_error(client.delete(f"{BASE}/sources/{source['id']}/writekey/{second}"), 409, "conflict")
    assert_error(client.post(f"{BASE}/sources/nope/writekey"), 404, "not_found")


@pytest.mark.parametrize("spelling", [".", "[]"])
def test_sources_page_by_count_until_the_last_page(
    client: TestClient, engine: Engine, spelling: str
) -> None:
    store = WorkspaceStore(engine)
    with store.atomic():
        made = {store.create_source(f"s{n:03}").id for n in range(120)}
    found = walk(client, "/sources", "sources", 50, spelling)
    assert len(found) == 120
    assert {s["id"] for s in found} == made


@pytest.mark.parametrize("count", ["0", "1001", "-1", "x", "1.5", "", "١"])
def test_count_out_of_range_is_a_400(client: TestClient, count: str) -> None:
    for path in ("/sources", "/destinations", "/catalog/destinations", "/catalog/sources"):
        for name in ("pagination.count", "pagination[count]"):
            response = client.get(f"{BASE}{path}", params={name: count})
            assert_error(response, 400, "validation", "pagination.count")


def test_a_cursor_not_given_out_is_a_400(client: TestClient) -> None:
    for path in ("/sources", "/destinations", "/catalog/warehouses"):
        for cursor in ("nope", "eyJvZmZzZXQiOi0xfQ", "e30"):
            response = client.get(f"{BASE}{path}", params={"pagination.cursor": cursor})
            assert_error(response, 400, "validation", "pagination.cursor")


# --- destinations ----------------------------------------------------------------------------


def test_destination_crud(client: TestClient, engine: Engine) -> None:
    source = new_source(client, "web")
    created = new_destination(
        client, source["id"], settings={**HOOK_SETTINGS, "shared_secret": "s3cret"}
    )
    assert created["name"] == "Webhooks"  # the catalog's name when none is given
    assert created["enabled"] is False
    assert created["sourceId"] == source["id"]
    assert created["workspaceId"] == source["workspaceId"]
    assert created["settings"] == {"url": HOOK_SETTINGS["url"], "shared_secret": "[redacted]"}
    assert created["metadata"]["id"] == WEBHOOKS
    assert created["metadata"]["slug"] == "webhooks"
    stored = DestinationStore(WorkspaceStore(engine)).require(created["id"])
    assert (stored.type, stored.settings["shared_secret"]) == ("webhook", "s3cret")

    assert ok(client.get(f"{BASE}/destinations/{created['id']}")) == {"destination": created}

    # settings: the keys sent change, the others (the secret) stay; null clears one.
    updated = ok(
        client.patch(
            f"{BASE}/destinations/{created['id']}",
            json={"name": "Hook", "enabled": True, "settings": {"urls": ["http://127.0.0.1:9/2"]}},
        )
    )["destination"]
    assert (updated["name"], updated["enabled"]) == ("Hook", True)
    assert updated["settings"]["urls"] == ["http://127.0.0.1:9/2"]
    assert updated["settings"]["shared_secret"] == "[redacted]"
    stored = DestinationStore(WorkspaceStore(engine)).require(created["id"])
    assert stored.settings["shared_secret"] == "s3cret"
    cleared = ok(
        client.patch(
            f"{BASE}/destinations/{created['id']}",
            json={"name": None, "settings": {"shared_secret": None}},
        )
    )["destination"]
    assert cleared["name"] == "Hook"
    assert cleared["settings"].get("shared_secret") is None
    stored = DestinationStore(WorkspaceStore(engine)).require(created["id"])
    assert stored.settings.get("shared_secret") is None

    assert ok(client.delete(f"{BASE}/destinations/{created['id']}")) == {"status": "SUCCESS"}
    assert_error(client.get(f"{BASE}/destinations/{created['id']}"), 404, "not_found")
    assert_error(client.delete(f"{BASE}/destinations/{created['id']}"), 404, "not_found")


def test_destination_names_default_to_the_catalog_name_and_stay_unique(
    client: TestClient,
) -> None:
    source = new_source(client, "web")
    names = [new_destination(client, source["id"])["name"] for _ in range(3)]
    assert names == ["Webhooks", "Webhooks (2)", "Webhooks (3)"]
    assert new_destination(client, source["id"], name="Mine", enabled=True)["enabled"] is True


def test_destination_create_refusals(client: TestClient) -> None:
    source = new_source(client, "web")
    good = {"sourceId": source["id"], "metadataId": WEBHOOKS, "settings": HOOK_SETTINGS}

    def post(body: Any) -> Any:
        return client.post(f"{BASE}/destinations", json=body)

    assert_error(post({**good, "metadataId": "nope"}), 404, "not_found", "metadataId")
    assert_error(post({**good, "sourceId": "nope"}), 404, "not_found", "sourceId")
    for unusable in ("a\x00b", "\ud800"):  # ids no database can look up
        response = client.post(
            f"{BASE}/destinations",
            content=json.dumps({**good, "sourceId": unusable}).encode(),
            headers={"Content-Type": "application/json"},
        )
        assert_error(response, 404, "not_found", "sourceId")
    assert_error(post({**good, "type": "webhook"}), 422, "validation", "type")
    assert_error(post({**good, "settings": {"url": "not a url"}}), 422, "validation")
    assert_error(post({k: v for k, v in good.items() if k != "settings"}), 422, "validation")
    assert ok(client.get(f"{BASE}/destinations"))["destinations"] == []


def test_destinations_page_and_connected_destinations(client: TestClient, engine: Engine) -> None:
    web = new_source(client, "web")
    app = new_source(client, "app")
    store = DestinationStore(WorkspaceStore(engine))
    for n in range(55):
        store.create(f"hook {n:02}", "webhook", web["id"], settings=HOOK_SETTINGS)
    store.create("app hook", "webhook", app["id"], settings=HOOK_SETTINGS)
    everything = walk(client, "/destinations", "destinations", 50, ".")
    assert len(everything) == 56
    connected = walk(
        client, f"/sources/{web['id']}/connected-destinations", "destinations", 50, "[]"
    )
    assert len(connected) == 55
    assert {d["sourceId"] for d in connected} == {web["id"]}
    assert_error(client.get(f"{BASE}/sources/nope/connected-destinations"), 404, "not_found")


def test_connected_warehouses(client: TestClient) -> None:
    web = new_source(client, "web")
    app = new_source(client, "app")
    for name, options in [("all", {}), ("web-only", {"sources": ["web"]})]:
        response = client.post(
            "/api/v1/warehouses", json={"name": name, "type": "duckdb", "options": options}
        )
        assert response.status_code == 201, response.text
    web_side = ok(client.get(f"{BASE}/sources/{web['id']}/connected-warehouses"))
    app_side = ok(client.get(f"{BASE}/sources/{app['id']}/connected-warehouses"))
    assert sorted(w["settings"]["name"] for w in web_side["warehouses"]) == ["all", "web-only"]
    assert [w["settings"]["name"] for w in app_side["warehouses"]] == ["all"]
    warehouse = app_side["warehouses"][0]
    assert warehouse["metadata"]["id"] == "duckdb"
    assert warehouse["workspaceId"] == web["workspaceId"]
    assert app_side["pagination"]["totalEntries"] == 1


# --- catalog ---------------------------------------------------------------------------------


def test_destination_catalog(client: TestClient) -> None:
    entries = walk(client, "/catalog/destinations", "destinationsCatalog", 50, ".")
    ids = [e["id"] for e in entries]
    assert len(ids) == len(set(ids)) >= 11
    assert WEBHOOKS in ids
    webhooks = ok(client.get(f"{BASE}/catalog/destinations/{WEBHOOKS}"))["destinationMetadata"]
    assert webhooks == next(e for e in entries if e["id"] == WEBHOOKS)
    assert webhooks["name"] == "Webhooks"
    assert webhooks["previousNames"] == ["Webhook"]
    options = {o["name"]: o for o in webhooks["options"]}
    assert options["shared_secret"]["type"] == "password"
    assert options["url"]["required"] is False
    actions = ok(client.get(f"{BASE}/catalog/destinations/614a3c7d791c91c41bae7599"))[
        "destinationMetadata"
    ]
    assert actions["name"] == "Webhooks (Actions)"
    assert {a["slug"] for a in actions["actions"]} >= {"send"}
    assert_error(client.get(f"{BASE}/catalog/destinations/nope"), 404, "not_found")


def test_source_and_warehouse_catalogs(client: TestClient) -> None:
    sources = ok(client.get(f"{BASE}/catalog/sources"))
    assert {s["id"] for s in sources["sourcesCatalog"]} == {JAVASCRIPT, HTTP_API}
    assert sources["pagination"]["totalEntries"] == 2
    javascript = ok(client.get(f"{BASE}/catalog/sources/{JAVASCRIPT}"))["sourceMetadata"]
    assert (javascript["slug"], javascript["isCloudEventSource"]) == ("javascript", False)
    assert_error(client.get(f"{BASE}/catalog/sources/nope"), 404, "not_found")

    warehouses = walk(client, "/catalog/warehouses", "warehousesCatalog", 1, "[]")
    assert {w["id"] for w in warehouses} == {"duckdb", "postgres", "data-lake"}
    postgres = ok(client.get(f"{BASE}/catalog/warehouses/postgres"))["warehouseMetadata"]
    assert {o["name"]: o["type"] for o in postgres["options"]}["password"] == "password"
    assert_error(client.get(f"{BASE}/catalog/warehouses/nope"), 404, "not_found")


def test_a_package_definition_keeps_segment_s_id_and_slug() -> None:
    built = build(
        {"id": "5f7dd78fe27ce7ff2b8bfa37", "slug": "actions-x", "directory": "x", "name": "X"}
    )
    assert (built.metadata_id, built.slug, built.type) == (
        "5f7dd78fe27ce7ff2b8bfa37",
        "actions-x",
        "actions:x",
    )
    assert destination_metadata(built)["id"] == "5f7dd78fe27ce7ff2b8bfa37"
