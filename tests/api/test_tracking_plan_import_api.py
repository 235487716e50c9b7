"""A plan from a source's observed schema: every event seen becomes a rule (SQLite, PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.protocols.compiled import compile_plan
from headwater.protocols.enforce import SchemaSettings, enforce
from headwater.protocols.source_schema import SchemaObserver
from headwater.protocols.typewriter import rules_from_api
from headwater.timestamps import format_timestamp
from tests.api.test_sources_api import assert_error
from tests.api.test_tracking_plans_api import (
    PLANS,
    client,
    create_plan,
    rules_of,
    source_id,
    track_rule,
)
from tests.support.records import log_record

__all__ = ["client"]  # the fixture, shared with the plan routes' tests


def seen(engine: Engine, source: str, *events: dict[str, object]) -> None:
    """What the Source Schema's consumer records for events that just arrived."""
    now = format_timestamp(datetime.now(UTC))
    SchemaObserver(engine)([(0, 1, log_record(source, now, list(events)))])


def test_every_event_seen_becomes_a_rule(client: TestClient, engine: Engine) -> None:
    web = source_id(client, "web")
    seen(
        engine,
        web,
        {"type": "track", "event": "Order Completed", "properties": {
            "order": {"id": "1"}, "products": [{"sku": "a"}], "total": 3}},
        {"type": "page", "name": "Home", "properties": {"path": "/"}},
        {"type": "identify", "userId": "u1", "traits": {"email": "a@b.c"}},
    )  # fmt: skip
    plan = create_plan(client, name="Web Plan")
    kept = track_rule("Order Completed", {"total": {"type": "number"}})
    client.put(f"{PLANS}/{plan['id']}/rules", json={"rules": [kept]})

    done = client.post(f"{PLANS}/{plan['id']}/rules/import", json={"sourceId": "web"})
    assert done.status_code == 200, done.text
    assert done.json()["data"]["added"] == [
        {"type": "TRACK", "key": "Page Viewed"},
        {"type": "IDENTIFY", "key": ""},
    ]
    rules = rules_of(client, plan["id"])
    by_key = {(r["type"], r["key"]): r for r in rules}
    assert by_key[("TRACK", "Order Completed")]["jsonSchema"] == kept["jsonSchema"]  # kept
    page = by_key[("TRACK", "Page Viewed")]["jsonSchema"]["properties"]["properties"]
    assert page == {"type": "object", "properties": {"path": {}}}

    # The imported plan is one Headwater enforces: what was seen passes, the rest is unplanned.
    compiled = compile_plan(rules_from_api(rules))
    strict = SchemaSettings.from_segment({"identify": {"allowUnplannedTraits": False}})
    identify = {"type": "identify", "userId": "u1", "traits": {"email": "x", "age": 3}}
    verdict = enforce(identify, compiled, strict, web)
    assert verdict.omitted == ("age",) and not verdict.violations


def test_nested_paths_and_arrays_become_nested_schemas(client: TestClient, engine: Engine) -> None:
    seen(engine, source_id(client, "ios"), {"type": "track", "event": "Checkout", "properties": {
        "order": {"id": "1"}, "products": [{"sku": "a"}]}})  # fmt: skip
    plan = create_plan(client, name="iOS Plan")
    client.post(f"{PLANS}/{plan['id']}/rules/import", json={"sourceId": "ios", "timeframe": "24h"})
    [rule] = rules_of(client, plan["id"])
    assert rule["jsonSchema"]["properties"]["properties"]["properties"] == {
        "order": {"type": "object", "properties": {"id": {}}},
        "products": {"type": "array", "items": {"type": "object", "properties": {"sku": {}}}},
    }


def test_bad_imports_name_the_field(client: TestClient) -> None:
    plan = create_plan(client, name="Web Plan")
    url = f"{PLANS}/{plan['id']}/rules/import"
    assert_error(client.post(url, json={"sourceId": "nope"}), 404, "not_found", "sourceId")
    assert_error(client.post(url, json={}), 422, "validation", "sourceId")
    bad = client.post(url, json={"sourceId": "web", "timeframe": "1y"})
    assert_error(bad, 422, "validation", "timeframe")
    assert rules_of(client, plan["id"]) == []
