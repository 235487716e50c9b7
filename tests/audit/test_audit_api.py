"""The audit trail through the REST API (SQLite and PostgreSQL): each change recorded once with
Segment's event names, its before and after with secrets redacted, a route's change by its
name without its body, 90 days, filters and pagination, forwarding's settings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.api.audit import use_audit
from headwater.audit.trail import KEEP_SECONDS, AuditTrail
from headwater.config.audit_view import workspace_view
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock

TOKEN = "test-admin-token"


@pytest.fixture
def client(engine: Engine, clock: Clock) -> Iterator[TestClient]:
    store = WorkspaceStore(engine, clock=clock)
    store.ensure_workspace("acme")
    app = create_api(engine, admin_token_hash=hash_token(TOKEN), clock=clock)
    use_audit(app, lambda: workspace_view(store))
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield http


def trail(client: TestClient, **params: str | int) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/audit-events", params=params)
    assert answer.status_code == 200, answer.text
    events: list[dict[str, Any]] = answer.json()["data"]["auditEvents"]
    return events


def test_changes_are_recorded_with_segments_names_and_secrets_redacted(
    client: TestClient,
) -> None:
    created = client.post("/api/v1/sources", json={"name": "web"})
    assert created.status_code == 201
    source_id = created.json()["data"]["source"]["id"]
    hook = {
        "source": "web",
        "name": "amp",
        "type": "amplitude",
        "settings": {"api_key": "amp-secret-123456"},
    }
    assert client.post("/api/v1/destinations", json=hook).status_code == 201
    changed = client.patch(
        "/api/v1/destinations/amp", json={"settings": {"api_key": "amp-secret-789012"}}
    )
    assert changed.status_code == 200, changed.text
    assert client.patch("/api/v1/sources/web", json={"enabled": False}).status_code == 200
    assert client.delete("/api/v1/destinations/amp").status_code in (200, 204)
    refused = client.post("/api/v1/sources", json={"name": "web"})  # a conflict changes nothing
    assert refused.status_code == 409

    events = trail(client)
    assert [e["type"] for e in events] == [
        "Destination Deleted",
        "Source Disabled",
        "Destination Modified",  # a secret changed: the export shows none, the route names it
        "Destination Created",
        "Source Created",
    ]
    first = events[-1]
    assert first["resourceId"] == source_id and first["resourceName"] == "web"
    assert first["resourceType"] == "source" and first["actor"] == "admin"
    assert first["after"]["name"] == "web" and "before" not in first
    modified = events[2]
    assert modified["resourceType"] == "destination" and modified["resourceName"] == "amp"
    assert modified["resourceId"] == events[3]["resourceId"] != "amp"  # the id, not the name
    assert events[3]["after"]["settings"]["api_key"] == "[redacted]"
    assert "amp-secret" not in json.dumps(events)
    # Filters: by resource, by type, by actor.
    assert [e["type"] for e in trail(client, resourceId=source_id)] == [
        "Source Disabled",
        "Source Created",
    ]
    assert len(trail(client, type="Destination Created")) == 1
    assert trail(client, actor="someone-else") == []


def test_a_change_outside_the_configuration_is_named_by_its_route_without_its_body(
    client: TestClient,
) -> None:
    assert client.post("/api/v1/sources", json={"name": "web"}).status_code == 201
    body = {
        "regulationType": "SUPPRESS_ONLY",
        "subjectType": "USER_ID",
        "subjectIds": ["subject-marker-42"],
    }
    made = client.post("/api/v1/regulations", json=body)
    assert made.status_code == 200, made.text
    regulation_id = made.json()["data"]["regulateId"]
    event = trail(client)[0]
    assert event["type"] == "Regulation Created"
    assert event["resourceId"] == regulation_id
    assert "subject-marker-42" not in json.dumps(trail(client))
    # A preview or a bad request is not a change.
    before = len(trail(client))
    preview = {"if": "type = 'track'", "actions": [], "payload": {"type": "track"}}
    client.post("/api/v1/destinations/filters/preview", json=preview)
    client.post("/api/v1/regulations", json={**body, "regulationType": "NOPE"})
    assert len(trail(client)) == before


def test_pages_newest_first_and_ninety_days(
    client: TestClient, engine: Engine, clock: Clock
) -> None:
    for i in range(7):
        assert client.post("/api/v1/sources", json={"name": f"s{i}"}).status_code == 201
    seen: list[str] = []
    params: dict[str, str | int] = {"pagination.count": 3}
    while True:
        answer = client.get("/api/v1/audit-events", params=params).json()["data"]
        assert len(answer["auditEvents"]) <= 3
        seen += [e["resourceName"] for e in answer["auditEvents"]]
        if "next" not in answer["pagination"]:
            break
        params["pagination.cursor"] = answer["pagination"]["next"]
    assert seen == [f"s{i}" for i in reversed(range(7))]

    clock.advance(KEEP_SECONDS + 1)
    assert trail(client) == []  # older than 90 days is never shown
    assert trail(client, startTime="2000-01-01T00:00:00Z") == []
    assert AuditTrail(engine, clock=clock).prune() == 7

    bad = client.get("/api/v1/audit-events", params={"startTime": "yesterday"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "startTime"
    bad = client.get("/api/v1/audit-events", params={"pagination.cursor": "nope"})
    assert bad.status_code in (400, 422)


def test_forwarding_settings(client: TestClient) -> None:
    assert client.post("/api/v1/sources", json={"name": "audit"}).status_code == 201
    off = client.get("/api/v1/audit-forwarding").json()["data"]["auditForwarding"]
    assert off == {"enabled": False, "sourceId": None}
    on = client.put("/api/v1/audit-forwarding", json={"enabled": True, "sourceId": "audit"})
    assert on.status_code == 200, on.text
    assert on.json()["data"]["auditForwarding"]["enabled"] is True
    assert trail(client)[0]["type"] == "Audit Forwarding Modified"
    for body, field in [
        ({"enabled": True}, "sourceId"),
        ({"enabled": "yes", "sourceId": "audit"}, "enabled"),
        ({"enabled": True, "sourceId": "nope"}, "sourceId"),
        ({"enabled": True, "sourceId": "audit", "extra": 1}, "extra"),
    ]:
        refused = client.put("/api/v1/audit-forwarding", json=body)
        assert 400 <= refused.status_code < 500, refused.text
        assert refused.json()["errors"][0]["field"] == field
