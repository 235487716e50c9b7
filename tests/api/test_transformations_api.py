"""Transformations through the REST API (SQLite and PostgreSQL): the Public API's shapes,
uniqueness, immutable fields, refusals that change nothing, preview, the config version."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.store.workspace import WorkspaceStore
from tests.api.client import api_with_destination
from tests.api.test_sources_api import assert_error


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with api_with_destination(
        engine, {"name": "hook", "type": "webhook", "settings": {"url": "http://127.0.0.1:9/hook"}}
    ) as http:
        yield http


def source_id(client: TestClient) -> str:
    found: str = client.get("/api/v1/sources/web").json()["data"]["source"]["id"]
    return found


def rename(client: TestClient, **extra: Any) -> dict[str, Any]:
    return {
        "name": "Fix order_completed",
        "sourceId": source_id(client),
        "enabled": True,
        "if": "event = 'order_completed'",
        "newEventName": "Order Completed",
        **extra,
    }


def listed(client: TestClient) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.get("/api/v1/transformations").json()["data"][
        "transformations"
    ]
    return found


def test_create_read_change_delete(client: TestClient, engine: Engine) -> None:
    workspace = WorkspaceStore(engine)
    before = workspace.config_version()
    created = client.post("/api/v1/transformations", json=rename(client))
    assert created.status_code == 201, created.text
    shown = created.json()["data"]["transformation"]
    assert shown["id"].startswith("tfm_")
    assert shown["newEventName"] == "Order Completed" and shown["sourceId"] == source_id(client)
    assert workspace.config_version() > before
    path = f"/api/v1/transformations/{shown['id']}"
    assert client.get(path).json() == {"data": {"transformation": shown}}
    changed = client.patch(path, json={"name": "Renamed", "enabled": False})
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["transformation"] == {
        **shown,
        "name": "Renamed",
        "enabled": False,
    }
    assert listed(client) == [changed.json()["data"]["transformation"]]
    version = workspace.config_version()
    assert client.delete(path).json() == {"data": {"status": "SUCCESS"}}
    assert workspace.config_version() > version
    assert_error(client.get(path), 404, "not_found")
    assert listed(client) == []


def test_a_tr_2_one_per_source_event_and_destination(client: TestClient) -> None:
    assert client.post("/api/v1/transformations", json=rename(client)).status_code == 201
    again = client.post("/api/v1/transformations", json=rename(client, newEventName="Other"))
    assert_error(again, 409, "conflict")
    # Another scope of the same event is another transformation.
    scoped = client.post(
        "/api/v1/transformations", json=rename(client, destinationMetadataId="webhook")
    )
    assert scoped.status_code == 201, scoped.text
    assert len(listed(client)) == 2


def test_source_and_event_cannot_change(client: TestClient) -> None:
    """A-TR-2."""
    shown = client.post("/api/v1/transformations", json=rename(client)).json()["data"][
        "transformation"
    ]
    path = f"/api/v1/transformations/{shown['id']}"
    for field, value in (("if", "event = 'other'"), ("sourceId", "src_x")):
        response = client.patch(path, json={field: value})
        assert response.status_code == 400, response.text
        assert response.json()["errors"][0]["field"] == field
    assert client.get(path).json()["data"]["transformation"] == shown


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        (
            {"propertyRenames": [{"oldName": "properties.a.$.b", "newName": "properties.c"}]},
            "propertyRenames[0].oldName",
        ),
        ({"newEventName": 5}, "newEventName"),
        ({"destinationMetadataId": "no-such-type"}, "destinationMetadataId"),
        ({"sourceId": "no-such-source"}, "sourceId"),
        ({"colour": "red"}, "colour"),
        ({"if": "event = "}, "if"),
    ],
)
def test_bad_bodies_name_the_field_and_change_nothing(
    client: TestClient, engine: Engine, extra: dict[str, Any], field: str
) -> None:
    version = WorkspaceStore(engine).config_version()
    response = client.post("/api/v1/transformations", json=rename(client, **extra))
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["errors"][0]["field"] == field
    assert listed(client) == []
    assert WorkspaceStore(engine).config_version() == version


def test_preview(client: TestClient) -> None:
    event = {"type": "track", "event": "order_completed", "properties": {"currency": "usd"}}
    body = {
        "transformation": {
            "if": "event = 'order_completed'",
            "newEventName": "Order Completed",
            "propertyValueTransformations": [
                {"propertyPaths": ["properties.currency"], "propertyValue": "USD"}
            ],
        },
        "event": event,
    }
    response = client.post("/api/v1/transformations/preview", json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "data": {
            "event": {
                "type": "track",
                "event": "Order Completed",
                "properties": {"currency": "USD"},
            }
        }
    }
    dropped = client.post(
        "/api/v1/transformations/preview",
        json={"transformation": {"if": "event = 'order_completed'", "drop": True}, "event": event},
    )
    assert dropped.json() == {"data": {"event": None}}
    stored = client.post("/api/v1/transformations", json=rename(client)).json()["data"][
        "transformation"
    ]
    by_id = client.post(
        "/api/v1/transformations/preview", json={"id": stored["id"], "event": event}
    )
    assert by_id.json()["data"]["event"]["event"] == "Order Completed"
    bad = client.post(
        "/api/v1/transformations/preview",
        json={"transformation": {"if": "event = 'x'", "fqlDefinedProperties": 1}, "event": event},
    )
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "transformation.fqlDefinedProperties"


def test_deleting_the_source_deletes_its_transformations(client: TestClient) -> None:
    assert client.post("/api/v1/transformations", json=rename(client)).status_code == 201
    assert client.delete("/api/v1/sources/web").status_code == 200
    assert listed(client) == []
