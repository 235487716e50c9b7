"""Warehouses through the REST API: secrets redacted, options checked, sync now, history."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.client import api_with_destination
from tests.api.test_sources_api import assert_error

PG: dict[str, Any] = {
    "name": "analytics",
    "type": "postgres",
    "settings": {"host": "db", "database": "a", "user": "u", "password": "pw-secret"},
    "options": {"syncs_per_day": 12},
}


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with api_with_destination(
        engine, {"name": "hook", "type": "webhook", "settings": {"url": "http://127.0.0.1:9/"}}
    ) as http:
        yield http


def test_create_read_update_delete(client: TestClient) -> None:
    created = client.post("/api/v1/warehouses", json=PG)
    assert created.status_code == 201, created.text
    shown = created.json()["data"]["warehouse"]
    assert shown["settings"]["password"] == "[redacted]" and "pw-secret" not in created.text
    assert shown["options"] == {"syncs_per_day": 12}
    changed = client.patch(
        "/api/v1/warehouses/analytics",
        json={"settings": {**PG["settings"], "password": "[redacted]", "host": "db2"}},
    )
    assert (
        changed.status_code == 200
        and changed.json()["data"]["warehouse"]["settings"]["host"] == "db2"
    )
    assert_error(
        client.patch("/api/v1/warehouses/analytics", json={"enabled": None}), 422, "validation"
    )
    assert_error(
        client.patch("/api/v1/warehouses/analytics", json={"options": {"syncs_per_day": 48}}),
        422,
        "validation",
        "options.syncs_per_day",
    )
    assert client.delete("/api/v1/warehouses/analytics").json() == {"data": {"status": "SUCCESS"}}
    assert_error(client.get("/api/v1/warehouses/analytics"), 404, "not_found")


def test_sync_now_is_requested_and_followed(client: TestClient) -> None:
    assert (
        client.post("/api/v1/warehouses", json={"name": "wh", "type": "duckdb"}).status_code == 201
    )
    asked = client.post("/api/v1/warehouses/wh/syncs")
    assert asked.status_code == 202
    run = asked.json()["data"]["sync"]
    assert run["status"] == "requested" and run["trigger"] == "manual"
    again = client.post("/api/v1/warehouses/wh/syncs").json()["data"]["sync"]
    assert again["id"] == run["id"]  # one request waits at a time
    assert (
        client.get(f"/api/v1/warehouses/wh/syncs/{run['id']}").json()["data"]["sync"]["status"]
        == "requested"
    )
    assert [r["id"] for r in client.get("/api/v1/warehouses/wh/syncs").json()["data"]["syncs"]] == [
        run["id"]
    ]
    assert_error(client.get("/api/v1/warehouses/wh/syncs/999"), 404, "not_found")
