"""Whatever a client sends to the filter, mapping and warehouse routes, the answer is a clear
4xx, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.client import api_with_destination

ODD: list[Any] = [
    None, 1, "x", [], {}, {"if": None}, {"if": 5, "actions": "DROP"},
    {"if": "all", "actions": [{"type": "DROP_PROPERTIES", "fields": {"": "userId"}}]},
    {"if": "all", "actions": [{"type": "SAMPLE", "percent": "half", "path": 3}]},
    {"if": "x" * 6000, "actions": [{"type": "DROP"}]},
    {"name": "m", "trigger": 'type = "track"', "action": "send", "fields": {"url": []}},
    {"name": "m", "trigger": "(((", "action": "send", "fields": {}},
    {"name": "m", "trigger": 'type = "track"', "action": "send",
     "fields": {"url": {"@template": 5}, "data": {"@arrayPath": [1, 2, 3]}}},
    {"name": "w", "type": "postgres", "settings": {"port": "many"}},
    {"name": "w", "type": "duckdb", "options": {"sources": [1], "selective_sync": {"x": 1}}},
    {"name": "w", "type": "duckdb", "options": {"schema_names": {"nope": "a"}}},
    {"filter": {"if": "all"}, "payload": []},
    {"filter": {"if": "length(properties) > 0", "actions": [{"type": "DROP"}]},
     "payload": {"properties": {"a": 1}}},
]
ROUTES = [
    ("POST", "/api/v1/destinations/hook/filters"),
    ("PATCH", "/api/v1/destinations/hook/filters/df_missing"),
    ("POST", "/api/v1/filters/preview"),
    ("POST", "/api/v1/destinations/actions/mappings"),
    ("POST", "/api/v1/destinations/hook/mappings"),
    ("POST", "/api/v1/warehouses"),
    ("PATCH", "/api/v1/warehouses/missing"),
    ("POST", "/api/v1/warehouses/missing/syncs"),
]


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with api_with_destination(engine, {"name": "hook", "type": "webhook",
                                         "settings": {"url": "http://127.0.0.1:9/"}}) as http:
        assert http.post("/api/v1/destinations", json={
            "name": "actions", "type": "webhook-actions", "source": "web"}).status_code == 201
        yield http


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_odd_bodies_get_a_4xx(client: TestClient, method: str, path: str) -> None:
    for body in ODD:
        response = client.request(method, path, json=body)
        assert response.status_code < 500, (path, body, response.text)
        if response.status_code >= 400:
            assert response.json()["errors"][0]["message"], (path, body)
    raw = client.request(method, path, content=b"{not json", headers={
        "content-type": "application/json"})
    assert 400 <= raw.status_code < 500
