"""The Source Schema API: events, properties, traits, New Event, archive, clear, CSV export
and schema controls (A-SC-4, A-SC-5, A-SC-6, A-TP-12), on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api import source_schema
from headwater.api.app import create_api
from headwater.protocols.compiled import CompiledPlan, Rule, compile_plan
from headwater.protocols.connected import SchemaControls
from headwater.protocols.schema_controls import load_integration_filters, load_schema_controls
from headwater.protocols.source_schema import SchemaObserver
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import parse_timestamp
from tests.support.records import log_record

TOKEN = "test-admin-token"
NOW_TEXT = "2024-03-05T10:00:10Z"
FORTY_DAYS_AGO = "2024-01-25T09:00:00Z"


def seconds(text: str) -> float:
    parsed = parse_timestamp(text)
    assert parsed is not None
    return parsed.timestamp()


NOW = seconds(NOW_TEXT)
PLAN = compile_plan(
    [
        Rule(
            type="TRACK",
            key="Order Completed",
            json_schema={"properties": {"properties": {"properties": {"total": {}}}}},
        ),
        Rule(type="IDENTIFY", key="identify", json_schema={}),
    ]
)


class Api:
    def __init__(self, http: TestClient, source_id: str, engine: Engine) -> None:
        self.http = http
        self.source_id = source_id
        self.engine = engine
        self.plans: dict[str, CompiledPlan] = {}

    def observe(self, received_at: str, *events: dict[str, Any], offset: int = 1) -> None:
        SchemaObserver(self.engine)([(0, offset, log_record(self.source_id, received_at, events))])

    def get(self, path: str, **params: str) -> Any:
        answer = self.http.get(f"/api/v1/sources/web/schema{path}", params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()["data"]


@pytest.fixture
def api(engine: Engine) -> Iterator[Api]:
    WorkspaceStore(engine).ensure_workspace("acme")
    app = create_api(
        engine, admin_token_hash=hash_token(TOKEN), extra_routers=[source_schema.router]
    )
    app.state.schema_clock = lambda: NOW
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        created = http.post("/api/v1/sources", json={"name": "web"})
        assert created.status_code == 201, created.text
        client = Api(http, created.json()["data"]["source"]["id"], engine)
        source_schema.use_plans(app, client.plans.get)
        yield client


def track(name: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": name, "userId": "u", "properties": properties}


def test_events_properties_and_traits(api: Api) -> None:
    api.observe(
        NOW_TEXT,
        track("Order Completed", total=5, items=[{"sku": "a"}]),
        {"type": "page", "name": "Homepage", "userId": "u"},  # A-TP-12
        {"type": "identify", "userId": "u", "traits": {"email": "e"}},
    )
    listed = api.get("/events", timeframe="24h")["events"]
    assert [(e["name"], e["allowed"], e["total"], e["planned"]) for e in listed] == [
        ("Order Completed", 1, 1, None),
        ("Page Viewed", 1, 1, None),
    ]
    assert listed[0]["lastSeenAt"] == NOW_TEXT
    props = api.get("/events/Order Completed/properties")["properties"]
    assert [p["name"] for p in props] == ["items", "items.$", "items.$.sku", "total"]
    assert [t["name"] for t in api.get("/traits", type="identify")["traits"]] == ["email"]
    api.plans[api.source_id] = PLAN
    props = api.get("/events/Order Completed/properties")["properties"]
    assert {p["name"]: p["planned"] for p in props}["total"] is True
    assert {p["name"]: p["planned"] for p in props}["items"] is False
    assert [e["planned"] for e in api.get("/events")["events"]] == [True, False]


def test_new_event_is_listed_before_it_arrives(api: Api) -> None:
    added = api.http.post("/api/v1/sources/web/schema/events", json={"name": "Coming Soon"})
    assert added.status_code == 201, added.text
    (event,) = api.get("/events")["events"]
    assert (event["name"], event["total"], event["lastSeenAt"]) == ("Coming Soon", 0, None)
    again = api.http.post("/api/v1/sources/web/schema/events", json={"name": "Coming Soon"})
    assert again.status_code == 409
    api.observe(NOW_TEXT, track("Coming Soon"))
    (event,) = api.get("/events")["events"]
    assert (event["total"], event["firstSeenAt"]) == (1, NOW_TEXT)


def test_archive_without_a_plan_needs_the_event_blocked_first(api: Api) -> None:
    api.observe(NOW_TEXT, track("Foo"))
    refused = api.http.post("/api/v1/sources/web/schema/events/Foo/archive")
    assert refused.status_code == 400
    assert "block 'Foo' first" in refused.json()["errors"][0]["message"]
    put = api.http.put("/api/v1/sources/web/schema-controls", json={"blockedEvents": ["Foo"]})
    assert put.status_code == 200, put.text
    assert api.http.post("/api/v1/sources/web/schema/events/Foo/archive").status_code == 200
    assert api.get("/events")["events"] == []
    assert [e["name"] for e in api.get("/events", archived="true")["events"]] == ["Foo"]
    assert api.http.post("/api/v1/sources/web/schema/events/Foo/unarchive").status_code == 200
    assert [e["name"] for e in api.get("/events")["events"]] == ["Foo"]


def test_archive_with_a_plan_refuses_a_planned_allowed_event(api: Api) -> None:
    """A-SC-4."""
    api.plans[api.source_id] = PLAN
    api.observe(NOW_TEXT, track("Order Completed"), track("Unplanned"))
    refused = api.http.post("/api/v1/sources/web/schema/events/Order Completed/archive")
    assert refused.status_code == 400
    assert "planned and allowed" in refused.json()["errors"][0]["message"]
    assert api.http.post("/api/v1/sources/web/schema/events/Unplanned/archive").status_code == 200
    api.http.put("/api/v1/sources/web/schema-controls", json={"blockedEvents": ["Order Completed"]})
    archived = api.http.post("/api/v1/sources/web/schema/events/Order Completed/archive")
    assert archived.status_code == 200
    missing = api.http.post("/api/v1/sources/web/schema/events/Nope/archive")
    assert missing.status_code == 404


def test_clear_keeps_traits_when_a_plan_is_connected(api: Api) -> None:
    """A-SC-5; without a plan everything is cleared."""
    identify = {"type": "identify", "userId": "u", "traits": {"email": "e"}}
    api.observe(NOW_TEXT, track("Foo"), identify)
    api.plans[api.source_id] = PLAN
    cleared = api.http.post("/api/v1/sources/web/schema/clear")
    assert cleared.json()["data"]["cleared"] == ["TRACK"]
    assert api.get("/events")["events"] == []
    assert [t["name"] for t in api.get("/traits")["traits"]] == ["email"]
    del api.plans[api.source_id]
    api.http.post("/api/v1/sources/web/schema/clear")
    assert api.get("/traits")["traits"] == []
    api.observe(NOW_TEXT, track("Bar"), offset=2)  # the schema fills again
    assert [e["name"] for e in api.get("/events")["events"]] == ["Bar"]


def test_csv_export(api: Api) -> None:
    """A-SC-6: header, file name, one row per (event, property), old events."""
    api.plans[api.source_id] = PLAN
    api.observe(FORTY_DAYS_AGO, track("Old Event"))
    api.observe(NOW_TEXT, track("Order Completed", total=1, coupon="x"), offset=2)
    answer = api.http.get("/api/v1/sources/web/schema/export?type=track&timeframe=30d")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.headers["content-disposition"] == (
        'attachment; filename="acme-web-track--2024-03-05--10-00-utc.csv"'
    )
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows == [
        [
            "Event Name",
            "Last Seen At (UTC)",
            "Property Name",
            "Allowed",
            "Blocked",
            "Total",
            "Planned",
        ],
        ["Old Event", "more than 30 days ago", "", "0", "0", "0", "unplanned"],
        ["Order Completed", "2024-03-05 10:00:10", "coupon", "1", "0", "1", "unplanned"],
        ["Order Completed", "2024-03-05 10:00:10", "total", "1", "0", "1", "planned"],
    ]
    api.observe(
        NOW_TEXT, {"type": "group", "groupId": "g", "userId": "u", "traits": {"n": 1}}, offset=3
    )
    group = api.http.get("/api/v1/sources/web/schema/export", params={"type": "group"})
    assert list(csv.reader(io.StringIO(group.text))) == [
        ["Trait Name", "Last Seen At (UTC)", "Allowed", "Blocked", "Total", "Planned"],
        ["n", "2024-03-05 10:00:10", "1", "0", "1", "unplanned"],
    ]
    bad = api.http.get("/api/v1/sources/web/schema/export", params={"timeframe": "24h"})
    assert bad.status_code == 400


def test_schema_controls_are_stored_and_loaded(api: Api) -> None:
    body = {
        "blockedEvents": ["Foo"],
        "blockPage": True,
        "omittedIdentifyTraits": ["ssn"],
        "integrationFilters": {"Foo": {"AppsFlyer": False, "Webhooks": True}},
    }
    put = api.http.put("/api/v1/sources/web/schema-controls", json=body)
    assert put.status_code == 200, put.text
    shown = api.http.get("/api/v1/sources/web/schema-controls").json()["data"]["schemaControls"]
    assert shown["blockedEvents"] == ["Foo"] and shown["blockScreen"] is False
    assert load_schema_controls(api.engine) == {
        api.source_id: SchemaControls(
            blocked_track=frozenset({"Foo"}),
            block_page=True,
            omitted_identify_traits=frozenset({"ssn"}),
        )
    }
    assert load_integration_filters(api.engine) == {api.source_id: {"Foo": {"AppsFlyer": False}}}
    wrong = api.http.put("/api/v1/sources/web/schema-controls", json={"blockPage": "yes"})
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["field"] == "blockPage"
    api.http.put("/api/v1/sources/web/schema-controls", json={})
    assert load_schema_controls(api.engine) == {}


@pytest.mark.parametrize("name", ["a\u0000b", "\ud800", "x" * 300])
def test_unusable_event_names_are_refused(api: Api, name: str) -> None:
    added = api.http.post(
        "/api/v1/sources/web/schema/events",
        content=(
            '{"name": "' + name.encode("unicode_escape").decode().replace("\\x", "\\u00") + '"}'
        ),
        headers={"content-type": "application/json"},
    )
    assert 400 <= added.status_code < 500, added.text
    put = api.http.put(
        "/api/v1/sources/web/schema-controls",
        content='{"blockedEvents": ["a\\u0000b"], "integrationFilters": {"\\ud800": {"x": false}}}',
        headers={"content-type": "application/json"},
    )
    assert 400 <= put.status_code < 500, put.text
