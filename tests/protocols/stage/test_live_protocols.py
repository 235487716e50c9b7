"""Protocols in a live server on SQLite and PostgreSQL: a plan in headwater.yaml, a webhook behind
the source and one behind the quarantine source the plan forwards to, and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from headwater.protocols.source_schema import GROUP as SOURCE_SCHEMA
from headwater.store.database import database_url, open_engine
from headwater.store.log import EventLog
from tests.support.live import ADMIN_TOKEN, LiveServer
from tests.support.receiver import Receiver

pytestmark = pytest.mark.live  # starts a headwater server process

AUTH = {"Authorization": "Basic V0tfd2ViOg=="}  # WK_web:
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


CONFIG = """workspace: test
tracking_plans:
  - name: Live Plan
    rules:
      - type: TRACK
        key: Order Completed
        json_schema:
          type: object
          properties:
            properties:
              type: object
              properties: {{products: {{type: array}}}}
              required: [products]
sources:
  - name: web
    write_key: WK_web
    tracking_plan: Live Plan
    schema:
      track: {{allowUnplannedEvents: false, allowUnplannedEventProperties: false}}
      forwardingViolationsTo: quarantine
      forwardingBlockedEventsTo: quarantine
  - name: quarantine
    write_key: WK_q
  - name: app
    write_key: WK_app
    schema_controls: {{blockedEvents: [Debug Ping]}}
destinations:
  - name: hook
    type: webhook
    source: web
    settings:
      url: {url}/hook
  - name: quarantined
    type: webhook
    source: quarantine
    settings:
      url: {url}/quarantine
  - name: app-hook
    type: webhook
    source: app
    settings:
      url: {url}/app
"""


@pytest.mark.parametrize(
    "database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def test_the_webhook_gets_the_omitted_event_never_the_blocked_one(
    tmp_path: Path, receiver: Receiver, database: str, request: pytest.FixtureRequest
) -> None:
    config = tmp_path / "headwater.yaml"
    config.write_text(CONFIG.format(url=receiver.url))
    url = request.getfixturevalue("pg_database") if database == "postgresql" else None
    live = LiveServer(data_dir=tmp_path / "data", config=config, role="all", database=url)
    live.start()
    try:
        events = [
            {"event": "Order Completed", "properties": {"products": [], "coupon": "X"}},
            {"event": "Unplanned Thing", "properties": {}},
            {"event": "Order Completed", "properties": {}},
        ]
        with httpx.Client(base_url=live.url, timeout=10, headers=AUTH) as http:
            for n, event in enumerate(events):
                body = {"userId": "alice", "messageId": f"live-{n}", **event}
                assert http.post("/v1/track", json=body).status_code == 200
        got = receiver.wait_for(5, timeout=30)
        time.sleep(0.5)  # anything more (a blocked event that leaked) would arrive by now
        hook = [r.json() for r in receiver.requests if r.path == "/hook"]
        quarantined = [r.json() for r in receiver.requests if r.path == "/quarantine"]
        assert len(got) == 5 and len(receiver.requests) == 5
        by_id = {e["messageId"]: e for e in hook}  # the webhook's lane sends in parallel
        assert sorted(by_id) == ["live-0", "live-2"]
        assert by_id["live-0"]["properties"] == {"products": []}
        assert by_id["live-0"]["context"]["protocols"]["omitted"] == ["coupon"]
        assert [v["field"] for v in by_id["live-2"]["context"]["protocols"]["violations"]] == [
            "properties.products"
        ]
        assert sorted(e["event"] for e in quarantined) == [
            "Unplanned Thing",
            "Violation Generated",
            "Violation Generated",
        ]
        fields = sorted(
            e["properties"]["violationField"]
            for e in quarantined
            if e["event"] == "Violation Generated"
        )
        assert fields == ["properties.coupon", "properties.products"]
        # The client sent no timestamp: Go's zero time, as Segment writes it.
        assert {
            e["properties"]["eventTimestamp"]
            for e in quarantined
            if e["event"] == "Violation Generated"
        } == {"0001-01-01T00:00:00Z"}

        shown = headwater(live, "violations", "web")
        assert "Order Completed [track]" in shown
        assert "Required" in shown and "properties.products" in shown
        listed = json.loads(headwater(live, "violations", "web", "--window", "1h", "--json"))
        assert listed["window"] == "1h"
        assert sorted((v["field"], v["count"]) for v in listed["violations"]) == [
            ("properties.coupon", 1),
            ("properties.products", 1),
        ]
        assert listed["violations"][0]["samples"][0]["event"] == "Order Completed"
        # alice (the forwarded blocked event) and schema-violations
        assert ": 2 MTUs (2 userIds" in headwater(live, "mtu", "quarantine")

        # The Source Schema: planned flags and blocked counts; forwarded violations unlisted.
        with httpx.Client(base_url=live.url, timeout=10, headers=ADMIN) as api:
            schema_caught_up(live)
            assert schema_events(api, "web") == {
                "Order Completed": {"allowed": 2, "blocked": 0, "planned": True},
                "Unplanned Thing": {"allowed": 0, "blocked": 1, "planned": False},
            }
            assert set(schema_events(api, "quarantine")) == {"Unplanned Thing"}  # A-VF-2
            # web's debugger shows the blocked event, marked so (§6.2)
            shown = api.get("/api/v1/sources/web/debugger").json()["data"]["events"]
            blocked = [e for e in shown if e["status"] == "blocked"]
            assert [(e["reason"], e["message"]["event"]) for e in blocked] == [
                ("protocols_unplanned_event", "Unplanned Thing")
            ]

        # Schema controls on a source without a plan (A-SC-1): the blocked event goes nowhere.
        app = {"Authorization": "Basic V0tfYXBwOg=="}  # WK_app:
        with httpx.Client(base_url=live.url, timeout=10, headers=app) as http:
            for n, name in enumerate(["Debug Ping", "Signed Up"]):
                body = {"userId": "bob", "messageId": f"app-{n}", "event": name}
                assert http.post("/v1/track", json=body).status_code == 200
        receiver.wait_for(6, timeout=30)
        time.sleep(0.5)
        assert [r.json()["event"] for r in receiver.requests if r.path == "/app"] == ["Signed Up"]
    finally:
        live.stop()


def schema_events(api: httpx.Client, source: str) -> dict[str, dict[str, object]]:
    """A source's Track events in its schema: allowed and blocked counts, planned or not."""
    data = api.get(f"/api/v1/sources/{source}/schema/events", params={"timeframe": "24h"})
    assert data.status_code == 200, data.text
    return {
        e["name"]: {"allowed": e["allowed"], "blocked": e["blocked"], "planned": e["planned"]}
        for e in data.json()["data"]["events"]
    }


def schema_caught_up(live: LiveServer) -> None:
    """Once the Source Schema's consumer has read every processed record."""
    live.wait_processed()
    engine = open_engine(database_url(live.data_dir, live.database))
    try:
        log = EventLog(engine)
        deadline = time.monotonic() + 20
        while log.lag(SOURCE_SCHEMA) > 0:
            assert time.monotonic() < deadline, "the source schema consumer did not catch up"
            time.sleep(0.1)
    finally:
        engine.dispose()


def headwater(live: LiveServer, *args: str) -> str:
    """``headwater ARGS --url …``'s output; it must succeed."""
    env = {**os.environ, "HEADWATER_ADMIN_TOKEN": ADMIN_TOKEN}
    done = subprocess.run(
        [sys.executable, "-m", "headwater", *args, "--url", live.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout
