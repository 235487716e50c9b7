"""A function's usage (``GET /api/v1/functions/{idOrName}/usage``, §11.1) and an insert
function's Enable Function toggle (``enabled`` on ``…/insert-function``, §11.4) through the
REST API (SQLite and PostgreSQL); the test runner is not billed (real sandbox)."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.functions.usage import FunctionUsage, Tally
from headwater.store.workspace import WorkspaceStore
from tests.api.test_functions_api import client, create, runner  # noqa: F401  (fixtures)
from tests.api.test_sources_api import assert_error

INSERT = "/api/v1/destinations/hook/insert-function"


def test_usage_by_month_the_most_recent_first(client: TestClient, engine: Engine) -> None:  # noqa: F811
    made = create(client)
    assert client.get("/api/v1/functions/enrich/usage").json() == {"data": {"usage": []}}
    now = time.time()
    FunctionUsage(WorkspaceStore(engine), clock=lambda: now - 40 * 86400).add(
        {made["id"]: Tally(invocations=2, execution_ms=30, errors=1)}
    )
    usage = FunctionUsage(WorkspaceStore(engine), clock=lambda: now)
    usage.add({made["id"]: Tally(invocations=3, execution_ms=12)})
    usage.add({made["id"]: Tally(invocations=1, execution_ms=5, errors=1)})
    found = client.get(f"/api/v1/functions/{made['id']}/usage")
    assert found.status_code == 200, found.text
    months = found.json()["data"]["usage"]
    assert [m["month"] for m in months] == sorted((m["month"] for m in months), reverse=True)
    assert [(m["invocations"], m["executionMs"], m["errors"]) for m in months] == [
        (4, 17, 1),
        (2, 30, 1),
    ]
    assert client.get("/api/v1/functions/enrich/usage").json()["data"]["usage"] == months
    assert_error(client.get("/api/v1/functions/nope/usage"), 404, "not_found")


def test_the_enable_function_toggle(client: TestClient) -> None:  # noqa: F811
    create(client)
    attached = client.put(INSERT, json={"function": "enrich"})
    assert attached.status_code == 200, attached.text
    assert attached.json()["data"]["function"]["enabled"] is True
    off = client.put(INSERT, json={"function": "enrich", "enabled": False})
    assert off.status_code == 200, off.text
    assert off.json()["data"]["function"]["enabled"] is False
    assert client.get(INSERT).json()["data"]["function"]["enabled"] is False
    assert_error(
        client.put(INSERT, json={"function": "enrich", "enabled": "no"}), 422, "validation"
    )
    assert client.get(INSERT).json()["data"]["function"]["enabled"] is False
    on = client.put(INSERT, json={"function": "enrich", "enabled": True})
    assert on.json()["data"]["function"]["enabled"] is True
    # A source function has no toggle.
    create(client, "stripe", kind="source", code="async function onRequest() {}")
    source = client.put("/api/v1/sources/web/function", json={"function": "stripe"})
    assert "enabled" not in source.json()["data"]["function"]
    assert_error(
        client.put("/api/v1/sources/web/function", json={"function": "stripe", "enabled": False}),
        422,
        "validation",
    )


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_the_test_runner_is_not_billed(runner: TestClient) -> None:  # noqa: F811
    create(runner)
    event = {"type": "track", "event": "Signed Up", "userId": "u1", "properties": {}}
    ran = runner.post("/api/v1/functions/enrich/test", json={"event": event})
    assert ran.status_code == 200, ran.text
    assert ran.json()["data"]["output"]["properties"] == {"message": "Enriched"}
    assert runner.get("/api/v1/functions/enrich/usage").json()["data"]["usage"] == []
