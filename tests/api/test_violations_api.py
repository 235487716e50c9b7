"""Protocols over the REST API, on what the stage chain really wrote (SQLite and PostgreSQL):
violations by window (A-VF-4), the daily digest (A-VF-5), blocked events and MTUs."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.api.violations import router as violations_router
from headwater.protocols.compiled import compile_plan
from headwater.protocols.connected import SourceProtocols
from headwater.protocols.enforce import SchemaSettings
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.protocols.stage.harness import Harness, build, track_rule
from tests.support.clock import Clock

TOKEN = "test-admin-token"


@pytest.fixture
def setup(engine: Engine, tmp_path: Path) -> Iterator[tuple[Harness, TestClient, str]]:
    # 2026-03-10 15:00 UTC: 11:00 in New York.
    clock = Clock(datetime(2026, 3, 10, 15, tzinfo=UTC).timestamp())
    store = WorkspaceStore(engine, clock=clock)
    store.ensure_workspace("acme")
    web = store.create_source("Acme Store", slug="acme_store_test")
    harness = build(engine, tmp_path, clock)
    plan = compile_plan([track_rule("Order Completed", {}, ("products",))])
    harness.connect(
        SourceProtocols(
            web.id,
            web.name,
            web.slug,
            plan_id="tp_1",
            plan_name="Acme Ecommerce TP",
            plan=plan,
            settings=SchemaSettings.from_segment({"track": {"allowUnplannedEvents": False}}),
        )
    )
    app = create_api(
        engine, admin_token_hash=hash_token(TOKEN), extra_routers=[violations_router], clock=clock
    )
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        yield harness, http, web.id
    harness.chain.stop()
    harness.ingest.close()


def test_violations_by_window_with_samples(setup: tuple[Harness, TestClient, str]) -> None:
    harness, http, source_id = setup
    harness.send(source_id, {"type": "track", "event": "Order Completed", "properties": {"n": 1}})
    harness.clock.advance(2 * 3600)
    harness.send(source_id, {"type": "track", "event": "Order Completed", "properties": {"n": 2}})
    harness.drain()

    hour = http.get("/api/v1/violations", params={"source": "Acme Store", "window": "1h"})
    assert hour.status_code == 200, hour.text
    [only] = hour.json()["data"]["violations"]
    assert only["count"] == 1
    assert only["lastSeen"] == "2026-03-10T17:00:00.000Z"
    assert [s["properties"]["n"] for s in only["samples"]] == [2]
    assert (only["eventName"], only["field"], only["violationType"]) == (
        "Order Completed",
        "properties.products",
        "Required",
    )
    day = http.get("/api/v1/violations", params={"source": source_id}).json()["data"]
    assert day["window"] == "24h" and day["violations"][0]["count"] == 2
    other_plan = http.get(
        "/api/v1/violations", params={"source": source_id, "trackingPlanId": "tp_2"}
    )
    assert other_plan.json()["data"]["violations"] == []


@pytest.mark.parametrize("window", ["2h", "30d", "1d", "week"])
def test_a_vf_4_other_windows_are_refused(
    setup: tuple[Harness, TestClient, str], window: str
) -> None:
    _, http, source_id = setup
    answer = http.get("/api/v1/violations", params={"source": source_id, "window": window})
    assert answer.status_code == 400
    [error] = answer.json()["errors"]
    assert error["field"] == "window"


def test_unknown_or_missing_source(setup: tuple[Harness, TestClient, str]) -> None:
    _, http, _ = setup
    assert http.get("/api/v1/violations", params={"source": "nope"}).status_code == 404
    assert http.get("/api/v1/violations").status_code == 400
    assert http.get("/api/v1/sources/nope/mtu").status_code == 404


def test_a_vf_5_digest_over_http(setup: tuple[Harness, TestClient, str]) -> None:
    harness, http, source_id = setup
    harness.send(source_id, {"type": "track", "event": "Order Completed", "properties": {}})
    harness.drain()
    day2 = http.get("/api/v1/violations/digest", params={"source": source_id, "day": "2026-03-11"})
    assert day2.json()["data"]["violations"] == []
    day3 = http.get("/api/v1/violations/digest", params={"source": source_id, "day": "2026-03-12"})
    [line] = day3.json()["data"]["violations"]
    assert (line["field"], line["count"]) == ("properties.products", 1)
    bad = http.get("/api/v1/violations/digest", params={"source": source_id, "day": "yesterday"})
    assert bad.status_code == 400


def test_blocked_events_and_mtu(setup: tuple[Harness, TestClient, str]) -> None:
    harness, http, source_id = setup
    harness.send(
        source_id,
        {"type": "track", "event": "Unplanned", "userId": "ghost"},
        {
            "type": "track",
            "event": "Order Completed",
            "userId": "alice",
            "properties": {"products": []},
        },
        {"type": "track", "event": "Order Completed", "userId": None, "anonymousId": "anon-1"},
    )
    harness.drain()
    blocked = http.get("/api/v1/sources/Acme Store/blocked-events").json()["data"]
    assert [b["message"]["event"] for b in blocked["blockedEvents"]] == ["Unplanned"]
    mtu = http.get(f"/api/v1/sources/{source_id}/mtu", params={"month": "2026-03"}).json()
    assert mtu["data"] == {
        "sourceId": source_id,
        "month": "2026-03",
        "mtu": 2,
        "userIds": 1,
        "anonymousIds": 1,
    }
    assert http.get(f"/api/v1/sources/{source_id}/mtu").json()["data"]["mtu"] == 2
    assert (
        http.get(f"/api/v1/sources/{source_id}/mtu", params={"month": "2026-13"}).status_code == 400
    )
