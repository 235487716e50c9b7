"""The REST API's sources routes, through FastAPI's TestClient."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def engine(engine: Engine) -> Engine:
    """The shared engine (SQLite, then PostgreSQL) with the workspace the tests expect."""
    WorkspaceStore(engine).ensure_workspace("acme")
    return engine


@pytest.fixture
def client(engine: Engine, clock: Clock) -> Iterator[TestClient]:
    extra = APIRouter()

    @extra.get("/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    app = create_api(engine, admin_token_hash=hash_token(TOKEN), extra_routers=[extra], clock=clock)
    with TestClient(app, headers=AUTH) as http:
        yield http


def create(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post("/api/v1/sources", json=body)
    assert response.status_code == 201, response.text
    source: dict[str, Any] = response.json()["data"]["source"]
    return source


def assert_error(response: Any, status: int, type_: str, field: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"errors"}
    assert body["errors"], body
    error = body["errors"][0]
    assert error["type"] == type_
    assert isinstance(error["message"], str) and error["message"]
    if field is not None:
        assert error.get("field") == field, body


# --- app basics ------------------------------------------------------------------------------


def test_app_state_and_openapi(client: TestClient, engine: Engine) -> None:
    app: Any = client.app
    assert app.state.engine is engine
    assert app.state.admin_token_hash == hash_token(TOKEN)
    spec = client.get("/api/v1/openapi.json", headers={"Authorization": ""}).json()
    assert "/api/v1/sources" in spec["paths"]
    assert "/api/v1/sources/{idOrName}/write-keys" in spec["paths"]
    assert client.get("/api/v1/docs", headers={"Authorization": ""}).status_code == 200


def test_extra_routers_are_mounted_under_the_prefix_and_need_the_token(
    client: TestClient,
) -> None:
    assert client.get("/api/v1/ping").json() == {"pong": "yes"}
    assert_error(client.get("/api/v1/ping", headers={"Authorization": ""}), 401, "unauthorized")


@pytest.mark.parametrize(
    "headers",
    [{"Authorization": ""}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic eDp5"}],
)
def test_missing_or_wrong_token(client: TestClient, headers: dict[str, str]) -> None:
    assert_error(client.get("/api/v1/sources", headers=headers), 401, "unauthorized")
    # Even a bad body is answered 401 first.
    response = client.post("/api/v1/sources", headers=headers, content=b"{not json")
    assert_error(response, 401, "unauthorized")
    response = client.post("/api/v1/sources", headers=headers, json={"nope": 1})
    assert_error(response, 401, "unauthorized")


def test_unknown_route_and_method_use_the_error_shape(client: TestClient) -> None:
    assert_error(client.get("/api/v1/nothing-here"), 404, "not_found")
    response = client.put("/api/v1/sources")
    assert_error(response, 405, "method_not_allowed")
    assert "allow" in response.headers


# --- CRUD ------------------------------------------------------------------------------------


def test_create_and_get(client: TestClient) -> None:
    source = create(client, name="Marketing Site", settings={"a": 1})
    assert set(source) == {
        "id",
        "name",
        "slug",
        "workspaceId",
        "enabled",
        "writeKeys",
        "settings",
        "createdAt",
        "updatedAt",
    }
    assert source["slug"] == "marketing_site"
    assert source["enabled"] is True
    assert source["settings"] == {"a": 1}
    assert len(source["writeKeys"]) == 1 and len(source["writeKeys"][0]) == 32
    assert source["createdAt"] == "2023-11-14T22:13:20.000Z"
    by_id = client.get(f"/api/v1/sources/{source['id']}").json()["data"]["source"]
    by_name = client.get("/api/v1/sources/Marketing Site").json()["data"]["source"]
    assert by_id == by_name == source


def test_create_with_everything(client: TestClient) -> None:
    source = create(client, name="web", slug="site", enabled=False, writeKey="WK_web")
    assert (source["slug"], source["enabled"], source["writeKeys"]) == ("site", False, ["WK_web"])


def test_get_unknown_source(client: TestClient) -> None:
    assert_error(client.get("/api/v1/sources/nope"), 404, "not_found")
    assert_error(client.delete("/api/v1/sources/nope"), 404, "not_found")
    assert_error(client.patch("/api/v1/sources/nope", json={"enabled": False}), 404, "not_found")


def test_conflicts_are_409(client: TestClient) -> None:
    create(client, name="web", slug="site", writeKey="WK_web")
    assert_error(client.post("/api/v1/sources", json={"name": "web"}), 409, "conflict", "name")
    response = client.post("/api/v1/sources", json={"name": "b", "slug": "site"})
    assert_error(response, 409, "conflict", "slug")
    response = client.post("/api/v1/sources", json={"name": "b", "writeKey": "WK_web"})
    assert_error(response, 409, "conflict", "writeKey")
    create(client, name="other")
    response = client.patch("/api/v1/sources/other", json={"name": "web"})
    assert_error(response, 409, "conflict", "name")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": 5}, "name"),
        ({"name": "web", "enabled": "yes"}, "enabled"),
        ({"name": "web", "settings": [1]}, "settings"),
        ({"name": "web", "colour": "red"}, "colour"),
        ({"name": "web", "write_key": "x"}, "write_key"),
        ({"name": ""}, "name"),
        ({"name": "web", "slug": "Not A Slug"}, "slug"),
        ({"name": "web", "writeKey": "has space"}, "writeKey"),
    ],
)
def test_bad_bodies_are_422(client: TestClient, body: dict[str, Any], field: str) -> None:
    assert_error(client.post("/api/v1/sources", json=body), 422, "validation", field)


def test_unparsable_bodies(client: TestClient) -> None:
    response = client.post(
        "/api/v1/sources", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "bad_request")
    assert_error(client.post("/api/v1/sources", json=["a"]), 422, "validation")
    assert_error(client.post("/api/v1/sources"), 422, "validation")


def test_patch(client: TestClient, clock: Clock) -> None:
    source = create(client, name="web", settings={"a": 1})
    clock.now += 60
    response = client.patch("/api/v1/sources/web", json={"name": "website", "enabled": False})
    assert response.status_code == 200, response.text
    updated = response.json()["data"]["source"]
    assert (updated["id"], updated["name"], updated["slug"]) == (source["id"], "website", "web")
    assert updated["enabled"] is False
    assert updated["settings"] == {"a": 1}  # not given, kept
    assert updated["updatedAt"] == "2023-11-14T22:14:20.000Z"
    updated = client.patch(f"/api/v1/sources/{source['id']}", json={"settings": {}}).json()
    assert updated["data"]["source"]["settings"] == {}
    assert client.patch("/api/v1/sources/website", json={}).status_code == 200


def test_patch_refuses_nulls_and_unknown_fields(client: TestClient) -> None:
    create(client, name="web")
    response = client.patch("/api/v1/sources/web", json={"name": None})
    assert_error(response, 422, "validation", "name")
    response = client.patch("/api/v1/sources/web", json={"writeKeys": ["x"]})
    assert_error(response, 422, "validation", "writeKeys")


def test_delete(client: TestClient) -> None:
    create(client, name="web")
    response = client.delete("/api/v1/sources/web")
    assert response.status_code == 200
    assert response.json() == {"data": {"status": "SUCCESS"}}
    assert_error(client.get("/api/v1/sources/web"), 404, "not_found")


# --- pagination ------------------------------------------------------------------------------


def test_pagination_across_pages(client: TestClient) -> None:
    names = [f"s{i:02d}" for i in range(5)]
    for name in names:
        create(client, name=name)
    first = client.get("/api/v1/sources", params={"pagination.count": 2}).json()["data"]
    assert [s["name"] for s in first["sources"]] == names[:2]
    assert first["pagination"]["totalEntries"] == 5
    assert "previous" not in first["pagination"]
    assert first["pagination"]["current"]

    second = client.get(
        "/api/v1/sources",
        params={"pagination.count": 2, "pagination.cursor": first["pagination"]["next"]},
    ).json()["data"]
    assert [s["name"] for s in second["sources"]] == names[2:4]
    assert second["pagination"]["current"] == first["pagination"]["next"]

    # The bracket spelling some clients use works too.
    third = client.get(
        "/api/v1/sources",
        params={"pagination[count]": 2, "pagination[cursor]": second["pagination"]["next"]},
    ).json()["data"]
    assert [s["name"] for s in third["sources"]] == names[4:]
    assert "next" not in third["pagination"]

    back = client.get(
        "/api/v1/sources",
        params={"pagination.count": 2, "pagination.cursor": third["pagination"]["previous"]},
    ).json()["data"]
    assert back["sources"] == second["sources"]
    back = client.get(
        "/api/v1/sources",
        params={"pagination.count": 2, "pagination.cursor": second["pagination"]["previous"]},
    ).json()["data"]
    assert back["sources"] == first["sources"]


def test_default_page_and_empty_list(client: TestClient) -> None:
    data = client.get("/api/v1/sources").json()["data"]
    assert data["sources"] == []
    assert data["pagination"]["totalEntries"] == 0
    assert "next" not in data["pagination"] and "previous" not in data["pagination"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"pagination.count": 0}, "pagination.count"),
        ({"pagination.count": 1001}, "pagination.count"),
        ({"pagination.count": "many"}, "pagination.count"),
        ({"pagination[count]": "x"}, "pagination.count"),
        ({"pagination.cursor": "garbage!"}, "pagination.cursor"),
    ],
)
def test_bad_pagination(client: TestClient, params: dict[str, Any], field: str) -> None:
    assert_error(client.get("/api/v1/sources", params=params), 422, "validation", field)


# --- write keys ------------------------------------------------------------------------------


def test_rotation_then_expiry(client: TestClient, clock: Clock, engine: Engine) -> None:
    create(client, name="web", writeKey="WK_old")
    response = client.post("/api/v1/sources/web/write-keys", json={"graceSeconds": 120})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    new_key = data["writeKey"]
    assert data["writeKeys"] == [new_key, "WK_old"]
    assert data["expiresAt"] == {"WK_old": "2023-11-14T22:15:20.000Z"}
    assert data["source"]["writeKeys"] == [new_key, "WK_old"]
    store = WorkspaceStore(engine, clock=clock)
    assert set(store.write_key_index()) == {new_key, "WK_old"}

    clock.now += 120
    source = client.get("/api/v1/sources/web").json()["data"]["source"]
    assert source["writeKeys"] == [new_key]
    assert set(store.write_key_index()) == {new_key}


def test_rotation_defaults_to_a_day(client: TestClient) -> None:
    create(client, name="web", writeKey="WK_old")
    data = client.post("/api/v1/sources/web/write-keys").json()["data"]
    assert data["expiresAt"] == {"WK_old": "2023-11-15T22:13:20.000Z"}
    data = client.post(
        "/api/v1/sources/web/write-keys", json={"graceSeconds": 0, "writeKey": "WK_mine"}
    ).json()["data"]
    assert data["writeKey"] == "WK_mine"
    assert data["writeKeys"] == ["WK_mine"]


def test_rotation_bad_input(client: TestClient) -> None:
    create(client, name="web", writeKey="WK_web")
    response = client.post("/api/v1/sources/web/write-keys", json={"graceSeconds": -1})
    assert_error(response, 422, "validation", "graceSeconds")
    response = client.post("/api/v1/sources/web/write-keys", json={"graceSeconds": "soon"})
    assert_error(response, 422, "validation", "graceSeconds")
    response = client.post("/api/v1/sources/web/write-keys", json={"writeKey": "WK_web"})
    assert_error(response, 409, "conflict", "writeKey")
    assert_error(client.post("/api/v1/sources/nope/write-keys"), 404, "not_found")


def test_revoke_write_key(client: TestClient) -> None:
    create(client, name="web", writeKey="WK_1")
    client.post("/api/v1/sources/web/write-keys", json={"writeKey": "WK_2"})
    response = client.delete("/api/v1/sources/web/write-keys/WK_1")
    assert response.status_code == 200, response.text
    assert response.json()["data"]["source"]["writeKeys"] == ["WK_2"]
    assert_error(client.delete("/api/v1/sources/web/write-keys/WK_1"), 404, "not_found")
    # The last key cannot go: a source without a key could never send again.
    assert_error(client.delete("/api/v1/sources/web/write-keys/WK_2"), 409, "conflict")


def test_api_changes_bump_the_config_version(client: TestClient, engine: Engine) -> None:
    store = WorkspaceStore(engine)
    before = store.config_version()
    create(client, name="web")
    after_create = store.config_version()
    assert after_create > before
    client.patch("/api/v1/sources/web", json={"enabled": False})
    assert store.config_version() > after_create
