"""Segment's Public API under ``/segment/v1``, part 2, through FastAPI's TestClient on SQLite and
PostgreSQL: destination filters, tracking plans, regulations, transformations and warehouses,
in Segment's bodies, on the same objects ``/api/v1`` shows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.delivery.functions import FunctionCatalog
from headwater.destinations import registry
from headwater.functions.logs import FunctionLogs
from headwater.functions.store import FunctionStore
from headwater.privacy.runner import DeletionRunner
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.api.test_segment_public_api import (
    AUTH,
    BASE,
    TOKEN,
    assert_error,
    new_destination,
    new_source,
    ok,
    walk,
)

DROP_TRACKS = {"if": 'type = "track"', "actions": [{"type": "DROP"}]}


@pytest.fixture
def engine(engine: Engine) -> Engine:
    WorkspaceStore(engine).ensure_workspace("acme")
    return engine


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    app = create_api(engine, admin_token_hash=hash_token(TOKEN))
    with TestClient(app, headers=AUTH) as http:
        yield http


@pytest.fixture
def hook(client: TestClient) -> dict[str, Any]:
    """A destination on a source of its own."""
    return new_destination(client, new_source(client, "site")["id"])


def new_filter(client: TestClient, destination: dict[str, Any], **extra: Any) -> dict[str, Any]:
    body = {
        "sourceId": destination["sourceId"],
        "title": "No tracks",
        "enabled": True,
        **DROP_TRACKS,
        **extra,
    }
    path = f"{BASE}/destination/{destination['id']}/filters"
    made: dict[str, Any] = ok(client.post(path, json=body))["filter"]
    return made


def test_every_new_operation_needs_the_token(client: TestClient) -> None:
    for method, path in [
        ("GET", "/destination/x/filters"),
        ("POST", "/destination/filters/preview"),
        ("GET", "/tracking-plans"),
        ("POST", "/regulations"),
        ("GET", "/suppressions"),
        ("GET", "/transformations"),
        ("GET", "/warehouses"),
        ("GET", "/functions"),
        ("GET", "/spaces"),
        ("GET", "/spaces/x/audiences"),
        ("PATCH", "/sources/x/settings"),
    ]:
        response = client.request(method, f"{BASE}{path}", headers={"Authorization": ""})
        assert_error(response, 401, "unauthorized")


def test_segment_media_types_hold_for_the_new_operations(client: TestClient) -> None:
    response = client.get(f"{BASE}/warehouses", headers={"Accept": "text/html"})
    assert_error(response, 406, "not_acceptable")
    body = b'{"name": "x"}'
    response = client.post(
        f"{BASE}/tracking-plans", content=body, headers={"Content-Type": "text/plain"}
    )
    assert_error(response, 415, "unsupported_media_type")
    response = client.post(
        f"{BASE}/tracking-plans",
        content=body,
        headers={"Content-Type": "application/vnd.segment.v1+json"},
    )
    assert ok(response)["trackingPlan"]["name"] == "x"


# --- destination filters ---------------------------------------------------------------------


def test_filter_crud(client: TestClient, hook: dict[str, Any]) -> None:
    made = new_filter(client, hook, description="drop every track")
    assert made == {
        "id": made["id"],
        "sourceId": hook["sourceId"],
        "destinationId": hook["id"],
        "title": "No tracks",
        "description": "drop every track",
        "enabled": True,
        **DROP_TRACKS,
    }
    one = f"{BASE}/destination/{hook['id']}/filters/{made['id']}"
    assert ok(client.get(one))["filter"] == made
    # The same filter, through /api/v1.
    v1 = client.get(f"/api/v1/destinations/{hook['id']}/filters").json()["data"]["filters"]
    assert v1 == [made]

    changed = ok(client.patch(one, json={"enabled": False, "description": None}))["filter"]
    assert changed == {**made, "enabled": False, "description": ""}
    assert ok(client.delete(one)) == {"status": "SUCCESS"}
    assert_error(client.get(one), 404, "not_found")
    assert ok(client.get(f"{BASE}/destination/{hook['id']}/filters"))["filters"] == []


def test_filters_page(client: TestClient, hook: dict[str, Any]) -> None:
    made = [new_filter(client, hook, title=f"f{i}") for i in range(5)]
    for spelling in (".", "["):
        found = walk(client, f"/destination/{hook['id']}/filters", "filters", 2, spelling)
        assert [f["id"] for f in found] == [f["id"] for f in made]


def test_filter_refusals(client: TestClient, hook: dict[str, Any]) -> None:
    path = f"{BASE}/destination/{hook['id']}/filters"
    other = new_source(client, "other")
    body = {"sourceId": hook["sourceId"], "title": "t", "enabled": True, **DROP_TRACKS}
    assert_error(client.post(path, json={**body, "sourceId": other["id"]}), 422, "validation")
    assert_error(client.post(path, json={**body, "sourceId": "\x00"}), 422, "validation")
    assert_error(client.post(path, json={**body, "if": "type = = 1"}), 422, "validation")
    assert_error(
        client.post(path, json={**body, "actions": [{"type": "SAMPLE"}]}), 422, "validation"
    )
    assert_error(client.post(path, json={**body, "bogus": 1}), 422, "validation")
    left_out = {k: v for k, v in body.items() if k != "sourceId"}
    assert_error(client.post(path, json=left_out), 422, "validation")
    assert_error(client.post(f"{BASE}/destination/nope/filters", json=body), 404, "not_found")
    made = new_filter(client, hook)
    one = f"{path}/{made['id']}"
    assert_error(client.patch(one, json={"title": None}), 422, "validation", "title")
    assert_error(client.patch(f"{path}/nope", json={"enabled": False}), 404, "not_found")
    assert_error(client.delete(f"{path}/nope"), 404, "not_found")
    assert ok(client.get(one))["filter"] == made  # nothing changed


def test_filter_preview(client: TestClient) -> None:
    path = f"{BASE}/destination/filters/preview"
    event = {"type": "track", "event": "E", "properties": {"a": 1, "b": 2}}
    dropped = ok(client.post(path, json={"filter": DROP_TRACKS, "payload": event}))
    assert dropped["inputPayload"] == event
    assert dropped["result"] is None
    kept = {
        "if": "all",
        "actions": [{"type": "DROP_PROPERTIES", "fields": {"properties": ["b"]}}],
    }
    answer = ok(client.post(path, json={"filter": kept, "payload": event}))
    assert answer["result"] == {**event, "properties": {"a": 1}}
    assert_error(
        client.post(path, json={"filter": {"if": "all", "actions": []}, "payload": event}),
        422,
        "validation",
    )


# --- tracking plans --------------------------------------------------------------------------


def _rule(event: str, version: int = 1) -> dict[str, Any]:
    return {
        "type": "TRACK",
        "key": event,
        "version": version,
        "jsonSchema": {"type": "object", "properties": {"properties": {"type": "object"}}},
    }


def test_tracking_plan_crud_rules_and_sources(client: TestClient) -> None:
    plans = f"{BASE}/tracking-plans"
    plan = ok(client.post(plans, json={"name": "Web", "type": "LIVE"}))["trackingPlan"]
    assert plan["name"] == "Web" and plan["type"] == "LIVE"
    one = f"{plans}/{plan['id']}"
    assert ok(client.get(one))["trackingPlan"] == plan
    assert client.get(f"/api/v1/tracking-plans/{plan['id']}").json()["data"]["trackingPlan"] == (
        plan
    )
    renamed = ok(client.patch(one, json={"name": "Website"}))["trackingPlan"]
    assert renamed["name"] == "Website"

    rules = [_rule(f"Event {i}") for i in range(3)]
    assert ok(client.put(f"{one}/rules", json={"rules": rules})) == {"status": "SUCCESS"}
    ok(client.patch(f"{one}/rules", json={"rules": [_rule("Event 3")]}))
    found = walk(client, f"/tracking-plans/{plan['id']}/rules", "rules", 2, "[")
    assert sorted(r["key"] for r in found) == [f"Event {i}" for i in range(4)]
    gone = {"rules": [{"type": "TRACK", "key": "Event 0", "version": 1}]}
    ok(client.request("DELETE", f"{one}/rules", json=gone))
    left = ok(client.get(f"{one}/rules"))["rules"]
    assert sorted(r["key"] for r in left) == ["Event 1", "Event 2", "Event 3"]

    source = new_source(client, "app")
    ok(client.post(f"{one}/sources", json={"sourceId": source["id"]}))
    connected = ok(client.get(f"{one}/sources"))
    assert connected["sources"] == [source]  # Segment's SourceV1
    assert ok(client.get(f"{BASE}/sources/{source['id']}"))["trackingPlanId"] == plan["id"]
    ok(client.delete(f"{one}/sources", params={"sourceId": source["id"]}))
    assert ok(client.get(f"{one}/sources"))["sources"] == []

    assert [p["id"] for p in ok(client.get(plans))["trackingPlans"]] == [plan["id"]]
    assert ok(client.delete(one)) == {"status": "SUCCESS"}
    assert_error(client.get(one), 404, "not_found")


def test_tracking_plans_page_and_refuse(client: TestClient) -> None:
    plans = f"{BASE}/tracking-plans"
    for i in range(5):
        ok(client.post(plans, json={"name": f"Plan {i}"}))
    assert len(walk(client, "/tracking-plans", "trackingPlans", 2, ".")) == 5
    assert_error(client.get(plans, params={"pagination.cursor": "nope"}), 400, "validation")
    assert_error(client.get(plans, params={"pagination.count": "0"}), 400, "validation")
    assert_error(client.post(plans, json={"name": 1}), 422, "validation", "name")
    assert_error(client.get(f"{plans}/nope"), 404, "not_found")
    first = ok(client.get(plans))["trackingPlans"][0]["id"]
    bad_rule = {"rules": [{"type": "NOPE", "key": "a", "jsonSchema": {}}]}
    assert client.put(f"{plans}/{first}/rules", json=bad_rule).status_code == 422


# --- regulations -----------------------------------------------------------------------------


def test_regulations(client: TestClient, engine: Engine) -> None:
    source = new_source(client, "web")
    body = {"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID", "subjectIds": ["u1"]}
    workspace_wide = ok(client.post(f"{BASE}/regulations", json=body))["regulateId"]
    sourced = f"{BASE}/regulations/sources/{source['id']}"
    one_source = ok(client.post(sourced, json={**body, "subjectIds": ["u2"]}))["regulateId"]
    got = ok(client.get(f"{BASE}/regulations/{workspace_wide}"))["regulation"]
    assert got["id"] == workspace_wide and got["subjects"] == ["u1"]
    listed = ok(client.get(f"{BASE}/regulations"))["regulations"]
    assert {r["id"] for r in listed} == {workspace_wide, one_source}
    assert [r["id"] for r in ok(client.get(sourced))["regulations"]] == [one_source]
    assert ok(client.get(f"{BASE}/suppressions"))["subjectIds"] == []  # not yet processed
    DeletionRunner(engine, [], []).run_due()
    assert ok(client.get(f"{BASE}/suppressions"))["subjectIds"] == ["u1"]
    only_web = client.get(f"{BASE}/suppressions", params={"sourceId": source["id"]})
    assert ok(only_web)["subjectIds"] == ["u2"]
    assert len(walk(client, "/regulations", "regulations", 1, "[")) == 2
    assert_error(
        client.get(f"{BASE}/regulations", params={"pagination.cursor": "nope"}), 400, "validation"
    )
    assert_error(client.get(f"{BASE}/regulations/nope"), 404, "not_found")
    refused = client.post(f"{BASE}/regulations", json={**body, "subjectType": "NOPE"})
    assert refused.status_code == 400 and refused.json()["errors"][0]["message"]


# --- transformations -------------------------------------------------------------------------


def test_transformations(client: TestClient) -> None:
    source = new_source(client, "web")
    body = {
        "name": "rename",
        "sourceId": source["id"],
        "enabled": True,
        "if": "event = 'Old'",
        "newEventName": "New",
    }
    made = ok(client.post(f"{BASE}/transformations", json=body))["transformation"]
    assert made["name"] == "rename" and made["newEventName"] == "New"
    one = f"{BASE}/transformations/{made['id']}"
    assert ok(client.get(one))["transformation"] == made
    v1 = client.get(f"/api/v1/transformations/{made['id']}").json()["data"]["transformation"]
    assert v1 == made
    changed = ok(client.patch(one, json={"enabled": False}))["transformation"]
    assert changed["enabled"] is False
    for i in range(3):
        ok(
            client.post(
                f"{BASE}/transformations", json={**body, "name": f"t{i}", "if": f"event = 'E{i}'"}
            )
        )
    assert len(walk(client, "/transformations", "transformations", 3, ".")) == 4
    assert ok(client.delete(one)) == {"status": "SUCCESS"}
    assert_error(client.get(one), 404, "not_found")
    assert client.post(f"{BASE}/transformations", json={"name": 1}).status_code in (400, 422)


# --- warehouses ------------------------------------------------------------------------------


def test_warehouse_crud(client: TestClient) -> None:
    made = ok(
        client.post(
            f"{BASE}/warehouses",
            json={"metadataId": "duckdb", "settings": {"name": "Lake"}, "enabled": False},
        ),
        201,
    )["warehouse"]
    assert made["metadata"]["id"] == "duckdb"
    assert made["enabled"] is False and made["settings"]["name"] == "Lake"
    one = f"{BASE}/warehouses/{made['id']}"
    assert ok(client.get(one))["warehouse"] == made
    v1 = client.get(f"/api/v1/warehouses/{made['id']}").json()["data"]["warehouse"]
    assert v1["name"] == "Lake" and v1["type"] == "duckdb"
    changed = ok(client.patch(one, json={"enabled": True, "settings": {"name": "Pond"}}))
    assert changed["warehouse"]["enabled"] is True
    assert changed["warehouse"]["settings"]["name"] == "Pond"
    # Without a name, the catalog's, kept unique.
    second = ok(
        client.post(f"{BASE}/warehouses", json={"metadataId": "duckdb", "settings": {}}), 201
    )
    third = ok(
        client.post(f"{BASE}/warehouses", json={"metadataId": "duckdb", "settings": {}}), 201
    )
    assert second["warehouse"]["settings"]["name"] == "DuckDB"
    assert third["warehouse"]["settings"]["name"] == "DuckDB (2)"
    assert len(walk(client, "/warehouses", "warehouses", 2, "[")) == 3
    assert ok(client.delete(one)) == {"status": "SUCCESS"}
    assert_error(client.get(one), 404, "not_found")


def test_warehouse_refusals(client: TestClient) -> None:
    path = f"{BASE}/warehouses"
    assert_error(client.post(path, json={"metadataId": "nope", "settings": {}}), 404, "not_found")
    assert_error(client.post(path, json={"metadataId": "duckdb"}), 422, "validation")
    bad_name = {"metadataId": "duckdb", "settings": {"name": 3}}
    assert_error(client.post(path, json=bad_name), 422, "validation", "settings.name")
    assert_error(client.patch(f"{path}/nope", json={"enabled": True}), 404, "not_found")
    assert ok(client.get(path))["warehouses"] == []  # nothing was made


def test_warehouse_connected_sources(client: TestClient) -> None:
    web, app = new_source(client, "web"), new_source(client, "app")
    every = ok(
        client.post(f"{BASE}/warehouses", json={"metadataId": "duckdb", "settings": {}}), 201
    )["warehouse"]
    none = ok(
        client.post(
            f"{BASE}/warehouses",
            json={
                "metadataId": "duckdb",
                "settings": {"name": "Empty"},
                "disconnectAllSources": True,
            },
        ),
        201,
    )["warehouse"]

    def connected(warehouse: dict[str, Any]) -> list[str]:
        found = ok(client.get(f"{BASE}/warehouses/{warehouse['id']}/connected-sources"))
        return sorted(s["slug"] for s in found["sources"])

    assert connected(every) == ["app", "web"]
    assert connected(none) == []
    link = f"{BASE}/warehouses/{none['id']}/connected-sources/{web['id']}"
    assert ok(client.post(link), 201) == {"status": "SUCCESS"}
    ok(client.post(link), 201)  # again: nothing changes
    assert connected(none) == ["web"]
    warehouses = ok(client.get(f"{BASE}/sources/{web['id']}/connected-warehouses"))["warehouses"]
    assert {w["id"] for w in warehouses} == {every["id"], none["id"]}
    ok(client.delete(f"{BASE}/warehouses/{every['id']}/connected-sources/{app['id']}"))
    assert connected(every) == ["web"]
    new_source(client, "later")
    assert connected(every) == ["web"]  # it names its sources now
    assert_error(
        client.post(f"{BASE}/warehouses/{none['id']}/connected-sources/nope"), 404, "not_found"
    )


# --- source schema settings ------------------------------------------------------------------


def test_source_schema_settings(client: TestClient) -> None:
    """A-API-3 under /segment/v1: a PATCH without ``forwardingViolationsTo`` turns it off."""
    web, quarantine = new_source(client, "web"), new_source(client, "quarantine")
    url = f"{BASE}/sources/{web['id']}/settings"
    assert ok(client.get(url)) == {"sourceId": web["id"], "settings": {}}
    body = {"track": {"allowUnplannedEvents": False}, "forwardingViolationsTo": quarantine["id"]}
    first = ok(client.patch(url, json=body))["settings"]
    assert first == {**body, "forwardingViolationsTo": quarantine["id"]}
    second = ok(client.patch(url, json={"track": {"allowEventOnViolations": False}}))["settings"]
    assert second == {"track": {"allowUnplannedEvents": False, "allowEventOnViolations": False}}
    assert ok(client.get(url))["settings"] == second
    assert client.get(f"/api/v1/sources/{web['id']}/settings").json()["data"]["settings"] == second
    assert_error(client.patch(url, json={"colour": 1}), 422, "validation")
    assert_error(client.patch(url, json=[1]), 422, "validation")
    assert_error(client.get(f"{BASE}/sources/nope/settings"), 404, "not_found")


# --- functions -------------------------------------------------------------------------------

SEND = "async function onTrack(event, settings) { await fetch(settings.url) }"


def new_function(client: TestClient, **extra: Any) -> dict[str, Any]:
    body = {
        "displayName": "Sender",
        "resourceType": "DESTINATION",
        "code": SEND,
        "settings": [
            {
                "name": "url",
                "label": "URL",
                "description": "where to send",
                "type": "STRING",
                "required": True,
                "sensitive": False,
            },
            {
                "name": "apiKey",
                "label": "API key",
                "description": "",
                "type": "STRING",
                "required": False,
                "sensitive": True,
            },
        ],
        **extra,
    }
    made: dict[str, Any] = ok(client.post(f"{BASE}/functions", json=body))["function"]
    return made


@pytest.fixture
def function_catalog(engine: Engine) -> Iterator[None]:
    """Destination functions in the destination catalog, as the server wires them."""
    workspace = WorkspaceStore(engine)
    registry.use_functions(FunctionCatalog(FunctionStore(workspace), FunctionLogs(workspace)))
    try:
        yield
    finally:
        registry.use_functions(None)


@pytest.mark.usefixtures("function_catalog")
def test_function_crud_in_segment_shapes(client: TestClient) -> None:
    made = new_function(client, description="sends")
    assert made["displayName"] == "Sender" and made["resourceType"] == "DESTINATION"
    assert made["code"] == SEND and made["description"] == "sends"
    assert made["settings"][1] == {
        "name": "apiKey",
        "label": "API key",
        "description": "",
        "type": "STRING",
        "required": False,
        "sensitive": True,
    }
    assert made["catalogId"] == "function:Sender"
    one = f"{BASE}/functions/{made['id']}"
    assert ok(client.get(one))["function"] == made
    v1 = client.get(f"/api/v1/functions/{made['id']}").json()["data"]["function"]
    assert v1["name"] == "Sender" and v1["kind"] == "destination"
    assert v1["settings"][1]["secret"] is True

    # The catalog id makes an instance, as in Segment.
    source = new_source(client, "web")
    instance = ok(
        client.post(
            f"{BASE}/destinations",
            json={
                "sourceId": source["id"],
                "metadataId": made["catalogId"],
                "settings": {"url": "http://127.0.0.1:9/"},
            },
        )
    )["destination"]
    assert instance["metadata"]["id"] == "function:Sender"

    newer = "async function onTrack(event, settings) { await fetch(settings.url + '/v2') }"
    changed = ok(client.patch(one, json={"code": newer, "description": "v2"}))["function"]
    assert changed["code"] == newer and changed["description"] == "v2"
    deployed = client.get(f"/api/v1/functions/{made['id']}").json()["data"]["function"]
    assert deployed["deployedVersion"] == deployed["latestVersion"] == 2

    versions = ok(client.get(f"{one}/versions"))["versions"]
    assert [(v["id"], v["isDeployed"]) for v in versions] == [("2", True), ("1", False)]
    assert ok(client.get(f"{one}/versions/1"))["version"]["code"] == SEND
    restored = ok(client.post(f"{one}/versions", json={"versionId": "1"}))["version"]
    assert restored == {**restored, "id": "3", "code": SEND, "isDeployed": True}
    assert_error(client.get(f"{one}/versions/9"), 404, "not_found")
    assert_error(client.get(f"{one}/versions/x"), 404, "not_found")

    assert_error(client.delete(one), 409, "conflict")  # an instance runs it
    client.delete(f"{BASE}/destinations/{instance['id']}")
    assert ok(client.delete(one)) == {"status": "SUCCESS"}
    assert_error(client.get(one), 404, "not_found")


def test_functions_list_by_resource_type_and_refusals(client: TestClient) -> None:
    new_function(client)
    new_function(
        client,
        displayName="Incoming",
        resourceType="SOURCE",
        code="async function onRequest() {}",
        settings=[],
    )
    path = f"{BASE}/functions"
    both = walk(client, "/functions", "functions", 1, "[")
    assert sorted(f["displayName"] for f in both) == ["Incoming", "Sender"]
    sources = ok(client.get(path, params={"resourceType": "SOURCE"}))["functions"]
    assert [f["displayName"] for f in sources] == ["Incoming"]
    assert_error(client.get(path, params={"resourceType": "NOPE"}), 422, "validation")
    body = {"displayName": "x", "resourceType": "INSERT_SOURCE", "code": "x"}
    assert_error(client.post(path, json=body), 422, "validation", "resourceType")
    bad_setting = {
        "displayName": "y",
        "resourceType": "DESTINATION",
        "code": SEND,
        "settings": [{"name": "a", "label": "A", "type": "NUMBER"}],
    }
    assert client.post(path, json=bad_setting).status_code == 422
    assert_error(
        client.post(path, json={**body, "resourceType": "SOURCE", "bogus": 1}), 422, "validation"
    )
    nul = {**bad_setting, "settings": [], "description": "a\x00b"}  # PostgreSQL holds no NUL
    assert_error(client.post(path, json=nul), 422, "validation", "description")
    nul_label = {**bad_setting, "settings": [{"name": "a", "label": "\x00", "type": "STRING"}]}
    assert_error(client.post(path, json=nul_label), 422, "validation", "settings[0].label")
    sender = ok(client.get(path, params={"resourceType": "DESTINATION"}))["functions"][0]
    nul_change = {"description": "\x00"}
    assert_error(
        client.patch(f"{path}/{sender['id']}", json=nul_change), 422, "validation", "description"
    )
    assert len(ok(client.get(path))["functions"]) == 2  # nothing was made


# --- spaces and audiences --------------------------------------------------------------------


def new_space(client: TestClient, name: str) -> dict[str, Any]:
    source = new_source(client, f"{name}_src")
    response = client.post("/api/v1/spaces", json={"name": name, "sourceIds": [source["id"]]})
    assert response.status_code == 201, response.text
    space: dict[str, Any] = response.json()["data"]["space"]
    return space


def test_spaces(client: TestClient) -> None:
    made = [new_space(client, f"space{i}") for i in range(3)]
    found = walk(client, "/spaces", "spaces", 2, ".")
    shown = [{"id": s["id"], "slug": s["slug"], "name": s["name"]} for s in made]
    assert found == shown
    assert ok(client.get(f"{BASE}/spaces/{made[0]['id']}"))["space"] == shown[0]
    assert_error(client.get(f"{BASE}/spaces/nope"), 404, "not_found")


def test_audience_crud(client: TestClient) -> None:
    space = new_space(client, "main")
    path = f"{BASE}/spaces/{space['id']}/audiences"
    query = "event('Order Completed').count() >= 1"
    body = {"name": "Buyers", "definition": {"query": query}, "audienceType": "USERS"}
    made = ok(client.post(path, json=body))["audience"]
    assert made["key"] == "buyers" and made["spaceId"] == space["id"]
    assert made["definition"]["query"] == query and made["audienceType"] == "USERS"
    assert made["enabled"] is True
    one = f"{path}/{made['id']}"
    assert ok(client.get(one))["audience"] == made
    v1 = client.get(f"/api/v1/spaces/{space['id']}/audiences/buyers").json()["data"]["audience"]
    assert v1["id"] == made["id"]

    newer = "event('Order Completed').count() >= 2"
    changed = ok(client.patch(one, json={"definition": {"query": newer}, "description": "2+"}))
    assert changed["audience"]["definition"]["query"] == newer
    assert changed["audience"]["description"] == "2+"
    for i in range(3):
        ok(client.post(path, json={**body, "name": f"Buyers {i}"}))
    assert len(walk(client, f"/spaces/{space['id']}/audiences", "audiences", 2, "[")) == 4
    assert ok(client.delete(one)) == {"status": "SUCCESS"}
    assert_error(client.get(one), 404, "not_found")


def test_audience_refusals(client: TestClient) -> None:
    space = new_space(client, "main")
    path = f"{BASE}/spaces/{space['id']}/audiences"
    query = "event('Order').count() >= 1"
    body: dict[str, Any] = {"name": "Buyers", "definition": {"query": query}}
    assert_error(client.post(path, json={**body, "enabled": False}), 422, "validation", "enabled")
    mixed = {**body, "audienceType": "ACCOUNTS", "definition": {"query": query, "type": "USERS"}}
    assert_error(client.post(path, json=mixed), 422, "validation", "audienceType")
    bad_query = {**body, "definition": {"query": "event(("}}
    assert client.post(path, json=bad_query).status_code == 422
    assert_error(client.post(path, json={**body, "bogus": 1}), 422, "validation")
    assert_error(client.post(f"{BASE}/spaces/nope/audiences", json=body), 404, "not_found")
    assert ok(client.get(path))["audiences"] == []  # nothing was made
    made = ok(client.post(path, json=body))["audience"]
    one = f"{path}/{made['id']}"
    assert_error(client.patch(one, json={"enabled": False}), 422, "validation", "enabled")
    accounts = {"definition": {"query": "event('Order').count() >= 1", "type": "ACCOUNTS"}}
    assert_error(client.patch(one, json=accounts), 422, "validation")
    assert ok(client.get(one))["audience"] == made


def test_destination_subscriptions_are_the_mappings(client: TestClient) -> None:
    source = new_source(client, "shop")
    body = {"sourceId": source["id"], "metadataId": "614a3c7d791c91c41bae7599", "settings": {}}
    hook = ok(client.post(f"{BASE}/destinations", json=body))["destination"]
    path = f"{BASE}/destinations/{hook['id']}/subscriptions"
    settings = {
        "url": "http://127.0.0.1:9/orders",
        "data": {"order": {"@path": "$.properties.order_id"}},
    }
    created = ok(
        client.post(
            path,
            json={
                "name": "Orders",
                "actionId": "send",
                "trigger": 'type = "track" and event = "Order Completed"',
                "enabled": True,
                "settings": settings,
            },
        )
    )["destinationSubscription"]
    assert created == {
        "id": created["id"],
        "name": "Orders",
        "actionId": "send",
        "actionSlug": "send",
        "destinationId": hook["id"],
        "enabled": True,
        "trigger": 'type = "track" and event = "Order Completed"',
        "settings": settings,
    }
    one = f"{path}/{created['id']}"
    assert ok(client.get(one))["subscription"] == created
    assert ok(client.get(path))["subscriptions"] == [created]
    # The same mapping through /api/v1.
    [mapping] = client.get(f"/api/v1/destinations/{hook['id']}/mappings").json()["data"]["mappings"]
    assert (mapping["id"], mapping["action"], mapping["fields"]) == (
        created["id"],
        "send",
        settings,
    )
    changed = ok(client.patch(one, json={"input": {"enabled": False, "name": "Paid"}}))
    assert changed["subscription"] == {**created, "enabled": False, "name": "Paid"}
    # Refusals name the field; nothing changes.
    assert_error(
        client.post(
            path,
            json={"name": "x", "actionId": "explode", "trigger": 'type = "track"', "enabled": True},
        ),
        422,
        "validation",
    )
    assert_error(
        client.patch(one, json={"input": {"reverseETLModelId": "m1"}}),
        422,
        "validation",
        "input.reverseETLModelId",
    )
    assert_error(client.patch(one, json={"enabled": True}), 422, "validation")
    assert_error(client.get(f"{path}/nope"), 404, "not_found")
    assert ok(client.delete(one)) == {"status": "SUCCESS"}
    assert ok(client.get(path))["subscriptions"] == []
    assert_error(client.get(f"{BASE}/destinations/nope/subscriptions"), 404, "not_found")
