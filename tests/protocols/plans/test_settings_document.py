"""The analytics.js settings document lists the planned Track events when the source's plan
blocks unplanned ones (§4.3): from the store (SQLite, PostgreSQL) and from a real server."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import Engine

from headwater.ingest.settings_document import PlannedEvents, settings_document
from headwater.protocols.compiled import Rule
from headwater.protocols.plans import PlanStore
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock
from tests.support.live import serving


def test_planned_events_follow_the_plan_and_the_setting(engine: Engine, clock: Clock) -> None:
    store = WorkspaceStore(engine)
    store.ensure_workspace("acme")
    web = store.create_source("web")
    plans = PlanStore(store)
    plans.create("Web Plan", rules=[Rule("TRACK", "Signed Up", {"type": "object"})])
    planned = PlannedEvents(store, clock=clock)
    assert planned.of(web.id) is None  # no plan connected
    plans.connect_source("Web Plan", "web")
    clock.advance(1.0)
    assert planned.of(web.id) is None  # connected, but unplanned events are allowed
    plans.update_schema_settings("web", {"track": {"allowUnplannedEvents": False}})
    clock.advance(1.0)
    assert planned.of(web.id) == frozenset({"Signed Up"})
    plans.upsert_rules("Web Plan", [(Rule("TRACK", "Order Completed", {}), None)])
    clock.advance(1.0)
    assert planned.of(web.id) == frozenset({"Signed Up", "Order Completed"})
    document = settings_document("WK", "http://localhost:8080", planned.of(web.id))
    assert document["plan"]["track"] == {
        "Order Completed": {"enabled": True, "integrations": {}},
        "Signed Up": {"enabled": True, "integrations": {}},
        "__default": {"enabled": False, "integrations": {}},
    }
    plans.disconnect_source("Web Plan", "web")
    clock.advance(1.0)
    assert planned.of(web.id) is None


CONFIG = """\
workspace: test
sources:
  - name: web
    write_key: WK_web
    tracking_plan: Web Plan
    schema:
      track: {allowUnplannedEvents: false}
  - name: server
    write_key: WK_server
    tracking_plan: Web Plan
tracking_plans:
  - name: Web Plan
    rules:
      - type: TRACK
        key: Order Completed
        json_schema: {type: object}
"""


@pytest.mark.live
def test_the_server_serves_the_allowlist(tmp_path: Path) -> None:
    with serving(tmp_path, CONFIG) as server, httpx.Client(base_url=server.url) as http:
        blocking = http.get("/v1/projects/WK_web/settings").json()["plan"]["track"]
        assert blocking == {
            "Order Completed": {"enabled": True, "integrations": {}},
            "__default": {"enabled": False, "integrations": {}},
        }
        allowing = http.get("/v1/projects/WK_server/settings").json()["plan"]["track"]
        assert allowing == {"__default": {"enabled": True, "integrations": {}}}
