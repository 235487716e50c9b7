"""The server's wiring: the schema consumer fills the Source Schema, the REST routes answer, and
the router applies a schema integration filter (A-SC-7), in a live server with a loopback
webhook."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.live import ADMIN_TOKEN, LiveServer, webhook_workspace
from tests.support.receiver import Receiver
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live

WRITE_KEY = {"Authorization": "Basic V0tfd2ViOg=="}  # WK_web:
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def test_schema_and_integration_filters_in_a_live_server(
    tmp_path: Path, receiver: Receiver
) -> None:
    live = LiveServer(
        data_dir=tmp_path / "data",
        config=webhook_workspace(tmp_path, f"{receiver.url}/hook"),
        role="all",
    )
    live.start()
    try:
        with httpx.Client(base_url=live.url, timeout=10) as http:
            put = http.put(
                "/api/v1/sources/web/schema-controls",
                json={"integrationFilters": {"Order Completed": {"Webhooks": False}}},
                headers=ADMIN,
            )
            assert put.status_code == 200, put.text
            for name in ("Order Completed", "Signed Up"):
                body = {"userId": "u", "event": name, "properties": {"plan": "pro"}}
                assert http.post("/v1/track", json=body, headers=WRITE_KEY).status_code == 200
            http.post("/v1/page", json={"userId": "u", "name": "Home"}, headers=WRITE_KEY)

            def listed() -> list[str]:
                answer = http.get("/api/v1/sources/web/schema/events", headers=ADMIN)
                return [e["name"] for e in answer.json()["data"]["events"]]

            wait_for(lambda: len(listed()) == 3, 30, "the schema to list the events")
            assert listed() == ["Order Completed", "Page Viewed", "Signed Up"]
            delivered = receiver.wait_for(2, timeout=20)
            assert sorted(r.json().get("event") or r.json()["type"] for r in delivered) == [
                "Signed Up",
                "page",
            ]
            assert all(r.json().get("event") != "Order Completed" for r in receiver.requests)
    finally:
        live.stop()
