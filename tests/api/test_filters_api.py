"""Destination filters through the REST API: the Public API's filter object, limits, preview."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from tests.api.client import api_with_destination
from tests.api.test_sources_api import assert_error

DROP_ANONYMOUS = {
    "title": "Don't send event if userId is null",
    "description": "Drop event if there is no userId on the request",
    "if": "length( userId ) < 1",
    "actions": [{"type": "DROP"}],
    "enabled": True,
}


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with api_with_destination(
        engine, {"name": "hook", "type": "webhook", "settings": {"url": "http://127.0.0.1:9/hook"}}
    ) as http:
        yield http


def create(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/destinations/hook/filters", json=body)
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()["data"]["filter"]
    return found


def test_create_read_change_delete(client: TestClient) -> None:
    created = create(client, DROP_ANONYMOUS)
    destination = client.get("/api/v1/destinations/hook").json()["data"]["destination"]
    assert created == {
        **DROP_ANONYMOUS,
        "id": created["id"],
        "sourceId": destination["sourceId"],
        "destinationId": destination["id"],
    }
    path = f"/api/v1/destinations/hook/filters/{created['id']}"
    assert client.get(path).json()["data"]["filter"] == created
    changed = client.patch(path, json={"enabled": False, "title": "Off for now"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["filter"] == {**created, "enabled": False, "title": "Off for now"}
    assert [
        f["id"] for f in client.get("/api/v1/destinations/hook/filters").json()["data"]["filters"]
    ] == [created["id"]]
    assert client.delete(path).json() == {"data": {"status": "SUCCESS"}}
    assert_error(client.get(path), 404, "not_found")
    assert client.get("/api/v1/destinations/hook/filters").json()["data"]["filters"] == []


def test_ac066_an_eleventh_filter_is_refused(client: TestClient) -> None:
    for _ in range(10):
        create(client, DROP_ANONYMOUS)
    assert_error(
        client.post("/api/v1/destinations/hook/filters", json=DROP_ANONYMOUS),
        422,
        "validation",
        "filters",
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**DROP_ANONYMOUS, "if": 'userId = oops"'}, "filters.0.if"),
        ({**DROP_ANONYMOUS, "if": "event = '" + "x" * 5200 + "'"}, "filters.0.if"),
        (
            {**DROP_ANONYMOUS, "actions": [{"type": "SAMPLE", "percent": 1.5}]},
            "filters.0.actions.0.percent",
        ),
    ],
)
def test_bad_filters_get_a_clear_error(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/v1/destinations/hook/filters", json=body)
    assert_error(response, 422, "validation", field)
    if "oops" in body["if"]:
        assert "at position 13" in response.json()["errors"][0]["message"]


def test_preview_shows_what_a_filter_does(client: TestClient) -> None:
    payload = {
        "type": "track",
        "event": "Signed Up",
        "userId": "u1",
        "properties": {"email": "a@b.c", "plan": "pro"},
    }
    kept = client.post(
        "/api/v1/filters/preview",
        json={
            "filter": {
                "if": "all",
                "actions": [{"type": "DROP_PROPERTIES", "fields": {"properties": ["email"]}}],
            },
            "payload": payload,
        },
    ).json()["data"]
    assert kept["inputPayload"] == payload
    assert kept["result"]["properties"] == {"plan": "pro"} and not kept["dropped"]
    dropped = client.post(
        "/api/v1/filters/preview",
        json={
            "filter": {"if": "type = 'track'", "actions": [{"type": "DROP"}]},
            "payload": payload,
        },
    ).json()["data"]
    assert dropped["result"] is None and dropped["reason"] == "FILTERED_BY_RULES"
    bad = client.post(
        "/api/v1/filters/preview",
        json={"filter": {"if": "type = ", "actions": [{"type": "DROP"}]}, "payload": payload},
    )
    assert_error(bad, 422, "validation", "filter.if")
    assert "at position 7" in bad.json()["errors"][0]["message"]
