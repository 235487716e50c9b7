"""Actions mappings through the REST API: create disabled, change, duplicate, limits, catalog."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.client import api_with_destination
from tests.api.test_sources_api import assert_error

ORDERS = {
    "name": "Orders",
    "trigger": 'type = "track" and event = "Order Completed"',
    "action": "send",
    "fields": {
        "url": "http://127.0.0.1:9/orders",
        "data": {"order": {"@path": "$.properties.order_id"}},
    },
}


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with api_with_destination(engine, {"name": "orders-hook", "type": "webhook-actions"}) as http:
        yield http


BASE = "/api/v1/destinations/orders-hook/mappings"


def create(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post(BASE, json=body)
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()["data"]["mapping"]
    return found


def test_ac072_created_disabled_then_enabled_and_duplicated(client: TestClient) -> None:
    created = create(client, ORDERS)
    assert created == {**ORDERS, "id": created["id"], "enabled": False}
    path = f"{BASE}/{created['id']}"
    enabled = client.patch(path, json={"enabled": True}).json()["data"]["mapping"]
    assert enabled["enabled"] is True
    copy = client.post(f"{path}/duplicate")
    assert copy.status_code == 201, copy.text
    duplicate = copy.json()["data"]["mapping"]
    assert duplicate["name"] == "Orders (Copy)" and duplicate["enabled"] is False
    assert duplicate["id"] != created["id"]
    assert {k: v for k, v in duplicate.items() if k not in ("id", "name", "enabled")} == {
        k: v for k, v in created.items() if k not in ("id", "name", "enabled")
    }
    assert [m["name"] for m in client.get(BASE).json()["data"]["mappings"]] == [
        "Orders",
        "Orders (Copy)",
    ]
    assert client.delete(path).json() == {"data": {"status": "SUCCESS"}}
    assert_error(client.get(path), 404, "not_found")


def test_ac077_a_51st_mapping_is_refused(client: TestClient) -> None:
    for _ in range(50):
        create(client, ORDERS)
    assert_error(client.post(BASE, json=ORDERS), 422, "validation", "mappings")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"trigger": 'event = "x" and (type = "a" and (type = "b"))'}, "mappings.0.trigger"),
        ({"action": "explode"}, "mappings.0.action"),
        ({"fields": {"data": {"a": 1}}}, "mappings.0.fields"),
    ],
)
def test_bad_mappings_get_a_clear_error(
    client: TestClient, change: dict[str, Any], field: str
) -> None:
    assert_error(client.post(BASE, json={**ORDERS, **change}), 422, "validation", field)


def test_the_catalog_lists_actions_and_their_fields(client: TestClient) -> None:
    catalog = client.get("/api/v1/catalog/destinations").json()["data"]["destinations"]
    [entry] = [d for d in catalog if d["type"] == "webhook-actions"]
    actions = {a["name"]: a for a in entry["actions"]}
    assert set(actions) == {"send", "send-batch"}
    assert actions["send"]["fields"]["url"]["required"] is True
    assert actions["send-batch"]["fields"]["batch_size"]["type"] == "integer"
