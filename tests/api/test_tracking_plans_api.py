"""The tracking-plan routes and the source schema settings route, through FastAPI's TestClient
on SQLite and PostgreSQL (A-TP-11, 13, 17, 18, 19, A-API-3)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.protocols.plans import load_source_protocols
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.api.test_sources_api import assert_error
from tests.support.hostile import deep_object

TOKEN = "test-admin-token"
PLANS = "/api/v1/tracking-plans"


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    WorkspaceStore(engine).ensure_workspace("acme")
    app = create_api(engine, admin_token_hash=hash_token(TOKEN))
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for name in ("web", "ios", "quarantine"):
            assert http.post("/api/v1/sources", json={"name": name}).status_code == 201
        yield http


def track_rule(event: str, properties: dict[str, Any], version: int = 1) -> dict[str, Any]:
    return {
        "type": "TRACK",
        "key": event,
        "version": version,
        "jsonSchema": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"properties": {"type": "object", "properties": properties}},
        },
    }


def create_plan(client: TestClient, **body: Any) -> dict[str, Any]:
    response = client.post(PLANS, json={"type": "LIVE", **body})
    assert response.status_code == 201, response.text
    plan: dict[str, Any] = response.json()["data"]["trackingPlan"]
    return plan


def rules_of(client: TestClient, plan_id: str) -> list[dict[str, Any]]:
    response = client.get(f"{PLANS}/{plan_id}/rules", params={"pagination.count": 1000})
    assert response.status_code == 200, response.text
    rules: list[dict[str, Any]] = response.json()["data"]["rules"]
    return rules


def source_id(client: TestClient, name: str) -> str:
    value: str = client.get(f"/api/v1/sources/{name}").json()["data"]["source"]["id"]
    return value


def test_plan_crud_in_segment_shapes_and_404_after_delete(client: TestClient) -> None:
    plan = create_plan(client, name="Web Plan", description="the web")
    assert plan["id"].startswith("tp_")
    assert plan["slug"] == "web_plan"
    assert (plan["name"], plan["type"], plan["description"]) == ("Web Plan", "LIVE", "the web")
    got = client.get(f"{PLANS}/{plan['id']}").json()["data"]["trackingPlan"]
    assert got == plan
    renamed = client.patch(f"{PLANS}/{plan['id']}", json={"name": "Site Plan"})
    assert renamed.json()["data"]["trackingPlan"]["name"] == "Site Plan"
    listed = client.get(PLANS).json()["data"]
    assert [p["id"] for p in listed["trackingPlans"]] == [plan["id"]]
    assert listed["pagination"]["totalEntries"] == 1
    assert client.delete(f"{PLANS}/{plan['id']}").json() == {"data": {"status": "SUCCESS"}}
    # A-TP-18: gone for good
    assert_error(client.get(f"{PLANS}/{plan['id']}"), 404, "not_found")
    assert_error(client.get(f"{PLANS}/{plan['id']}/rules"), 404, "not_found")


def test_rules_upsert_replace_remove_and_pagination(client: TestClient) -> None:
    plan = create_plan(client, name="Web Plan")
    url = f"{PLANS}/{plan['id']}/rules"
    rules = [track_rule(f"Event {i:02}", {"n": {"type": "integer"}}) for i in range(5)]
    assert client.patch(url, json={"rules": rules}).json() == {"data": {"status": "SUCCESS"}}
    first = client.get(url, params={"pagination.count": 2}).json()["data"]
    assert [r["key"] for r in first["rules"]] == ["Event 00", "Event 01"]
    assert first["pagination"]["totalEntries"] == 5
    second = client.get(
        url, params={"pagination.count": 2, "pagination.cursor": first["pagination"]["next"]}
    ).json()["data"]
    assert [r["key"] for r in second["rules"]] == ["Event 02", "Event 03"]
    # upsert with newKey renames; other rules stay
    renamed = {**rules[0], "newKey": "Order Completed"}
    assert client.patch(url, json={"rules": [renamed]}).status_code == 200
    keys = [r["key"] for r in rules_of(client, plan["id"])]
    assert "Order Completed" in keys and "Event 00" not in keys and len(keys) == 5
    # replace: exactly these
    assert client.put(url, json={"rules": [track_rule("Signed Up", {})]}).status_code == 200
    assert [r["key"] for r in rules_of(client, plan["id"])] == ["Signed Up"]
    # remove by (type, key, version)
    gone = client.request(
        "DELETE", url, json={"rules": [{"type": "TRACK", "key": "Signed Up", "version": 1}]}
    )
    assert gone.status_code == 200, gone.text
    assert rules_of(client, plan["id"]) == []
    assert_error(
        client.request("DELETE", url, json={"rules": [{"type": "TRACK", "key": "Nope"}]}),
        404,
        "not_found",
    )


def test_201_rules_refused_with_segments_message_200_accepted(client: TestClient) -> None:
    """A-TP-17."""
    plan = create_plan(client, name="Web Plan")
    url = f"{PLANS}/{plan['id']}/rules"
    too_many = [track_rule(f"Event {i}", {}) for i in range(201)]
    response = client.patch(url, json={"rules": too_many})
    assert_error(response, 400, "validation", "rules")
    assert response.json()["errors"][0]["message"] == (
        "rules must contain less than or equal to 200 items"
    )
    assert rules_of(client, plan["id"]) == []
    assert client.patch(url, json={"rules": too_many[:200]}).status_code == 200
    assert len(rules_of(client, plan["id"])) == 200


@pytest.mark.parametrize(
    ("schema", "words"),
    [
        ({"properties": {"properties": {"properties": {"a": {"pattern": "^(?!test).*"}}}}},
         "lookaround"),
        ({"$schema": "http://json-schema.org/draft-03/schema#"}, "unsupported $schema"),
        ({"definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"$ref": "#/definitions/a"}},
          "$ref": "#/definitions/a"}, "$ref cycle"),
        ({"type": "no-such-type"}, "invalid JSON Schema"),
    ],
)  # fmt: skip
def test_a_bad_rule_is_refused_naming_it_and_nothing_changes(
    client: TestClient, schema: dict[str, Any], words: str
) -> None:
    """A-TP-11 (lookahead), unknown draft, $ref cycle, invalid schema: 4xx naming the rule."""
    plan = create_plan(client, name="Web Plan")
    url = f"{PLANS}/{plan['id']}/rules"
    good = track_rule("Good", {})
    assert client.patch(url, json={"rules": [good]}).status_code == 200
    before = client.get(f"{PLANS}/{plan['id']}/changelog").json()["data"]["changelog"]
    bad = {"type": "TRACK", "key": "Bad Event", "version": 1, "jsonSchema": schema}
    response = client.patch(url, json={"rules": [track_rule("Other", {}), bad]})
    assert_error(response, 422, "validation", "rules")
    message = response.json()["errors"][0]["message"]
    assert "'Bad Event'" in message and words in message
    assert [r["key"] for r in rules_of(client, plan["id"])] == ["Good"]
    after = client.get(f"{PLANS}/{plan['id']}/changelog").json()["data"]["changelog"]
    assert after == before
    # the RE2-compatible way to say "does not start with test" is accepted
    negated = {"properties": {"properties": {"properties": {"a": {"not": {"pattern": "^test"}}}}}}
    fixed = {**bad, "jsonSchema": negated}
    assert client.patch(url, json={"rules": [fixed]}).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"rules": "x"},
        {"rules": [1]},
        {"rules": [{"type": "NOPE", "key": "a", "jsonSchema": {}}]},
        {"rules": [{"type": "TRACK", "key": "a"}]},
        {"rules": [{"type": "TRACK", "key": "a", "jsonSchema": {}, "version": "1"}]},
        {"rules": [{"type": "TRACK", "key": "", "jsonSchema": {}}]},
        {"rules": [{"type": "TRACK", "key": "a", "jsonSchema": []}]},
        {"rules": [{"type": "TRACK", "key": "a", "jsonSchema": {}}] * 2},
        {"rules": [], "extra": 1},
    ],
)
def test_bodies_a_client_can_send_get_4xx(client: TestClient, body: Any) -> None:
    plan = create_plan(client, name="Web Plan")
    response = client.patch(f"{PLANS}/{plan['id']}/rules", json=body)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["errors"][0]["message"]


def test_a_source_has_at_most_one_plan(client: TestClient) -> None:
    """A-TP-13."""
    one = create_plan(client, name="Plan One")
    two = create_plan(client, name="Plan Two")
    web = source_id(client, "web")
    ok = client.post(f"{PLANS}/{one['id']}/sources", json={"sourceId": web})
    assert ok.json() == {"data": {"status": "SUCCESS"}}
    refused = client.post(f"{PLANS}/{two['id']}/sources", json={"sourceId": web})
    assert_error(refused, 409, "conflict")
    assert "Plan One" in refused.json()["errors"][0]["message"]
    listed = client.get(f"{PLANS}/{one['id']}/sources").json()["data"]["sources"]
    assert [s["name"] for s in listed] == ["web"]
    assert client.get(f"{PLANS}/{two['id']}/sources").json()["data"]["sources"] == []
    removed = client.delete(f"{PLANS}/{one['id']}/sources", params={"sourceId": web})
    assert removed.status_code == 200, removed.text
    assert client.post(f"{PLANS}/{two['id']}/sources", json={"sourceId": "web"}).status_code == 200
    actions = [
        (e["action"], e.get("sourceName"))
        for e in client.get(f"{PLANS}/{one['id']}/changelog").json()["data"]["changelog"]
    ]
    assert actions[:2] == [("source_disconnected", "web"), ("source_connected", "web")]


def test_library_synced_into_a_plan(client: TestClient, engine: Engine) -> None:
    """A-TP-19: a library change shows in the plan; synced rules cannot be edited there."""
    library = create_plan(
        client,
        name="Ecommerce Library",
        type="PROPERTY_LIBRARY",
        rules=[track_rule("Order Completed", {"total": {"type": "number"}})],
    )
    plan = create_plan(client, name="Web Plan", libraries=[library["id"]])
    assert client.post(f"{PLANS}/{plan['id']}/sources", json={"sourceId": "web"}).status_code == 200
    synced = rules_of(client, plan["id"])
    assert [(r["key"], r["syncedFrom"]) for r in synced] == [("Order Completed", library["id"])]

    def total_type() -> Any:
        compiled = load_source_protocols(engine)[source_id(client, "web")].plan
        assert compiled is not None
        event = {"type": "track", "event": "Order Completed", "properties": {"total": "12"}}
        return compiled.track["Order Completed"].schema(event).is_valid(event)

    assert total_type() is False  # "12" is not a number
    changed = track_rule("Order Completed", {"total": {"type": "string"}})
    assert client.patch(f"{PLANS}/{library['id']}/rules", json={"rules": [changed]}).is_success
    assert rules_of(client, plan["id"])[0]["jsonSchema"] == changed["jsonSchema"]
    assert total_type() is True  # no merge step: the plan follows its library
    # editing or removing the synced rule in the plan is refused
    edit = track_rule("Order Completed", {"total": {"type": "boolean"}})
    assert_error(
        client.patch(f"{PLANS}/{plan['id']}/rules", json={"rules": [edit]}), 409, "conflict"
    )
    remove = {"rules": [{"type": "TRACK", "key": "Order Completed", "version": 1}]}
    assert_error(client.request("DELETE", f"{PLANS}/{plan['id']}/rules", json=remove), 409,
                 "conflict")  # fmt: skip
    # unsync, and the rule is gone from the plan
    assert client.patch(f"{PLANS}/{plan['id']}", json={"libraries": []}).is_success
    assert rules_of(client, plan["id"]) == []


def test_schema_settings_patch_merges_and_forwarding_needs_to_be_restated(
    client: TestClient, engine: Engine
) -> None:
    """A-API-3: a body without `forwardingViolationsTo` turns forwarding off."""
    web = source_id(client, "web")
    quarantine = source_id(client, "quarantine")
    url = "/api/v1/sources/web/settings"
    assert client.get(url).json() == {"data": {"sourceId": web, "settings": {}}}
    body = {
        "track": {"allowUnplannedEvents": False, "commonEventOnViolations": "Block"},
        "forwardingViolationsTo": "quarantine",
    }
    first = client.patch(url, json=body).json()["data"]["settings"]
    assert first == {
        "track": {"allowUnplannedEvents": False, "commonEventOnViolations": "BLOCK"},
        "forwardingViolationsTo": quarantine,
    }
    assert load_source_protocols(engine)[web].settings.forwarding_violations_to == quarantine
    second = client.patch(url, json={"track": {"allowEventOnViolations": False}}).json()
    assert second["data"]["settings"] == {
        "track": {
            "allowUnplannedEvents": False,
            "commonEventOnViolations": "BLOCK",
            "allowEventOnViolations": False,
        }
    }
    settings = load_source_protocols(engine)[web].settings
    assert settings.forwarding_violations_to is None
    assert settings.track.allow_unplanned_events is False
    assert client.get(url).json()["data"]["settings"] == second["data"]["settings"]
    assert_error(client.patch(url, json={"forwardingViolationsTo": "web"}), 422, "validation")
    assert_error(client.patch(url, json={"forwardingViolationsTo": "nope"}), 422, "validation")
    assert_error(client.patch(url, json={"track": {"allowUnplannedEvents": "no"}}), 422,
                 "validation")  # fmt: skip
    assert_error(client.patch(url, json={"colour": 1}), 422, "validation")
    assert_error(client.patch("/api/v1/sources/nope/settings", json={}), 404, "not_found")


def test_changelog_records_rules_with_actor(client: TestClient) -> None:
    plan = create_plan(client, name="Web Plan")
    url = f"{PLANS}/{plan['id']}/rules"
    client.patch(url, json={"rules": [track_rule("A", {})]})
    client.patch(url, json={"rules": [track_rule("A", {"x": {"type": "string"}})]})
    client.put(url, json={"rules": []})
    entries = client.get(f"{PLANS}/{plan['id']}/changelog").json()["data"]["changelog"]
    assert [(e["action"], e.get("key"), e["actor"]) for e in entries] == [
        ("rule_removed", "A", "api"),
        ("rule_changed", "A", "api"),
        ("rule_added", "A", "api"),
        ("plan_created", None, "api"),
    ]
    assert all(e["timestamp"].endswith("Z") for e in entries)


def test_list_filters_by_type(client: TestClient) -> None:
    create_plan(client, name="Web Plan")
    create_plan(client, name="Lib", type="RULE_LIBRARY")
    listed = client.get(PLANS, params={"type": "RULE_LIBRARY"}).json()["data"]["trackingPlans"]
    assert [p["name"] for p in listed] == ["Lib"]
    assert_error(client.get(PLANS, params={"type": "ENGAGE"}), 422, "validation", "type")


HOSTILE = [
    "null", "1", '"x"', "[]", "{}", '{"name": null}', '{"name": 5}', '{"name": ""}',
    '{"name": "\\ud800"}', '{"name": "p", "type": "ENGAGE"}', '{"name": "p", "labels": [1]}',
    '{"name": "p", "labels": {"a": 1}}', '{"name": "p", "libraries": "x"}',
    '{"name": "p", "rules": [{"type": "TRACK", "key": "a", "jsonSchema": ' + deep_object(2000)
    + "}]}",
    '{"rules": [{"type": "TRACK", "key": "a", "jsonSchema": {"pattern": "\\ud800"}}]}',
    '{"rules": [{"type": "TRACK", "key": "a", "version": 1e999, "jsonSchema": {}}]}',
    '{"rules": [{"type": "TRACK", "key": "a", "version": 9223372036854775808, '
    '"jsonSchema": {}}]}',
    '{"rules": [{"type": "TRACK", "key": "a", "jsonSchema": {"properties": {"a": '
    '{"pattern": "(("}}}}]}',
    '{"rules": [{"type": "TRACK", "key": "a", "jsonSchema": {"$ref": "http://x/y"}}]}',
    '{"sourceId": 5}', '{"sourceId": "\\ud800"}', '{"description": 5}',
    '{"track": []}', '{"track": {"allowUnplannedEvents": null}}',
    '{"identify": {"commonEventOnViolations": 5}}', '{"forwardingViolationsTo": []}',
    deep_object(5000),
]  # fmt: skip


def test_no_body_a_client_can_send_gets_a_5xx(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Each refused by a check of its own: none reaches the app's last-resort 400."""
    plan = create_plan(client, name="Web Plan")
    routes = [
        ("POST", PLANS),
        ("PATCH", f"{PLANS}/{plan['id']}"),
        ("PATCH", f"{PLANS}/{plan['id']}/rules"),
        ("PUT", f"{PLANS}/{plan['id']}/rules"),
        ("POST", f"{PLANS}/{plan['id']}/rules"),
        ("DELETE", f"{PLANS}/{plan['id']}/rules"),
        ("POST", f"{PLANS}/{plan['id']}/sources"),
        ("PATCH", "/api/v1/sources/web/settings"),
    ]
    for method, url in routes:
        for body in HOSTILE:
            response = client.request(
                method, url, content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code < 500, (method, url, body[:80], response.text)
    assert not [r for r in caplog.records if "unusable input" in r.getMessage()]
    assert rules_of(client, plan["id"]) == []


def test_the_rules_a_get_lists_can_be_put_back(client: TestClient) -> None:
    library = create_plan(
        client, name="Lib", type="RULE_LIBRARY", rules=[track_rule("Order Completed", {})]
    )
    plan = create_plan(client, name="Web Plan", libraries=[library["id"]])
    url = f"{PLANS}/{plan['id']}/rules"
    assert client.patch(url, json={"rules": [track_rule("Signed Up", {})]}).is_success
    listed = rules_of(client, plan["id"])
    body = [{k: r[k] for k in ("type", "key", "version", "jsonSchema")} for r in listed]
    put = client.put(url, json={"rules": body})
    assert put.is_success, put.text
    assert rules_of(client, plan["id"]) == listed
