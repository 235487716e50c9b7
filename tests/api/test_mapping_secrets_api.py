"""Webhooks (Actions) header values are secrets in the REST API: shown as ``[redacted]``, kept
when ``[redacted]`` comes back, refused when there is nothing to keep (issue 10)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.destinations.store import DestinationStore
from headwater.store.workspace import WorkspaceStore
from tests.api.client import api_with_destination
from tests.api.test_sources_api import assert_error

BASE = "/api/v1/destinations/orders-hook/mappings"
HEADERS = {
    "X-Api-Key": "abc-key-123",
    "X-Tenant": "t9",
    "X-Trace": {"@template": "Bearer {{messageId}}-zz9"},
}
ORDERS: dict[str, Any] = {
    "name": "Orders",
    "trigger": 'type = "track"',
    "action": "send",
    "fields": {
        "url": "http://127.0.0.1:9/orders",
        "headers": HEADERS,
        "data": {"order": {"@path": "$.properties.order_id"}},
    },
}
SHOWN_HEADERS = {"X-Api-Key": "[redacted]", "X-Tenant": "[redacted]", "X-Trace": "[redacted]"}


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with api_with_destination(engine, {"name": "orders-hook", "type": "webhook-actions"}) as http:
        yield http


def stored_headers(engine: Engine, position: int = 0) -> Any:
    destination = DestinationStore(WorkspaceStore(engine)).require("orders-hook")
    return destination.mappings[position].fields.get("headers")


def assert_no_secret(text: str) -> None:
    for secret in ("abc-key-123", "t9", "zz9"):
        assert secret not in text


def test_header_values_are_shown_redacted_everywhere(client: TestClient, engine: Engine) -> None:
    created = client.post(BASE, json=ORDERS)
    assert created.status_code == 201, created.text
    mapping = created.json()["data"]["mapping"]
    assert mapping["fields"]["headers"] == SHOWN_HEADERS
    assert mapping["fields"]["url"] == ORDERS["fields"]["url"]  # other fields are not secret
    assert mapping["fields"]["data"] == ORDERS["fields"]["data"]
    path = f"{BASE}/{mapping['id']}"
    responses = [
        created,
        client.get(BASE),
        client.get(path),
        client.patch(path, json={"enabled": True}),
        client.post(f"{path}/duplicate"),
    ]
    for response in responses:
        assert response.status_code in (200, 201), response.text
        assert_no_secret(response.text)
        assert "[redacted]" in response.text
    assert stored_headers(engine) == HEADERS
    assert stored_headers(engine, 1) == HEADERS  # the duplicate keeps the real values


def test_redacted_values_sent_back_keep_the_stored_ones(client: TestClient, engine: Engine) -> None:
    shown = client.post(BASE, json=ORDERS).json()["data"]["mapping"]
    path = f"{BASE}/{shown['id']}"
    changed_fields = {**shown["fields"], "url": "http://127.0.0.1:9/elsewhere"}
    response = client.patch(path, json={"fields": changed_fields, "name": "Renamed"})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["mapping"]["fields"]["headers"] == SHOWN_HEADERS
    assert stored_headers(engine) == HEADERS

    one_new = {**shown["fields"]["headers"], "X-Tenant": "t10", "X-New": "fresh-value"}
    response = client.patch(path, json={"fields": {**shown["fields"], "headers": one_new}})
    assert response.status_code == 200, response.text
    assert stored_headers(engine) == {**HEADERS, "X-Tenant": "t10", "X-New": "fresh-value"}


def test_a_redacted_value_with_nothing_stored_is_a_clear_422(
    client: TestClient, engine: Engine
) -> None:
    fresh = {**ORDERS, "fields": {**ORDERS["fields"], "headers": {"X-Api-Key": "[redacted]"}}}
    response = client.post(BASE, json=fresh)
    assert_error(response, 422, "validation", "mappings.0.fields.headers.X-Api-Key")
    assert "secret" in response.json()["errors"][0]["message"]

    shown = client.post(BASE, json=ORDERS).json()["data"]["mapping"]
    unknown = {**shown["fields"]["headers"], "X-Other": "[redacted]"}
    response = client.patch(
        f"{BASE}/{shown['id']}", json={"fields": {**shown["fields"], "headers": unknown}}
    )
    assert_error(response, 422, "validation", "mappings.0.fields.headers.X-Other")
    assert stored_headers(engine) == HEADERS


def test_a_directive_building_all_headers_is_one_secret(client: TestClient, engine: Engine) -> None:
    whole = {"@path": "$.properties.headers"}
    created = client.post(BASE, json={**ORDERS, "fields": {**ORDERS["fields"], "headers": whole}})
    assert created.status_code == 201, created.text
    shown = created.json()["data"]["mapping"]
    assert shown["fields"]["headers"] == "[redacted]"
    assert (
        client.patch(f"{BASE}/{shown['id']}", json={"fields": shown["fields"]}).status_code == 200
    )
    assert stored_headers(engine) == whole


def test_the_catalog_marks_headers_secret(client: TestClient) -> None:
    catalog = client.get("/api/v1/catalog/destinations").json()["data"]["destinations"]
    [hooks] = [d for d in catalog if d["type"] == "webhook-actions"]
    for action in hooks["actions"]:
        assert action["fields"]["headers"]["secret"] is True
        assert action["fields"]["url"]["secret"] is False
