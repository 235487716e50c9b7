"""Consent through a live server: categories from headwater.yaml and the REST API, the
settings document analytics.js reads, routing, and Event Delivery's reason (§12)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import ADMIN_TOKEN, LiveServer
from tests.support.receiver import Receiver
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # starts a headwater server process

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def track(preferences: dict[str, Any] | None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "userId": "user-12345",
        "event": "Order Completed",
        "messageId": f"consent-{uuid.uuid4().hex}",
        "writeKey": "WK_web",
    }
    if preferences is not None:
        event["context"] = {"consent": {"categoryPreferences": preferences}}
    return event


def test_consent_end_to_end(tmp_path: Path, receiver: Receiver) -> None:
    text = f"""workspace: test
sources:
  - name: web
    write_key: WK_web
destinations:
  - name: hook
    type: webhook
    source: web
    settings: {{url: "{receiver.url}/hook"}}
  - name: amp
    type: amplitude
    source: web
    settings: {{api_key: 0123456789abcdef0123456789abcdef, endpoint: "{receiver.url}/amp"}}
consent_categories:
  - id: Analytics
    name: Analytics
    destinations: [amplitude]
"""
    path = tmp_path / "headwater.yaml"
    path.write_text(text)
    live = LiveServer(data_dir=tmp_path / "data", config=path, role="single")
    live.start(timeout=120)  # a loaded machine: the default 30 s is not always enough
    try:
        _check(live, receiver)
    finally:
        live.stop()


def _check(live: LiveServer, receiver: Receiver) -> None:
    with httpx.Client(base_url=live.url) as http:
        document = http.get("/v1/projects/WK_web/settings").json()
        assert document["consentSettings"] == {
            "allCategories": ["Analytics"],
            "hasUnmappedDestinations": True,
        }
        made = http.post(
            "/api/v1/consent/categories",
            json={"categoryId": "Ads", "name": "Advertising", "destinations": ["webhook"]},
            headers=ADMIN,
        )
        assert made.status_code == 201, made.text
        denied, granted, absent = (
            track({"Analytics": False, "Ads": True}),
            track({"Analytics": True, "Ads": True}),
            track(None),
        )

        def settled() -> bool:  # the new category reaches the router within a second or two
            document: dict[str, Any] = http.get("/v1/projects/WK_web/settings").json()
            return bool(
                document["consentSettings"]
                == {
                    "allCategories": ["Ads", "Analytics"],
                    "hasUnmappedDestinations": False,
                }
            )

        wait_for(settled, 10, "the settings document to show the new category")
        time.sleep(1.5)  # the router's consent map is checked at most once a second
        for event in (denied, granted, absent):
            assert http.post("/v1/track", json=event).status_code == 200

        def ids(path: str) -> set[str]:
            found: set[str] = set()
            for request in receiver.requests:
                if request.path == "/hook" and path == "/hook":
                    found.add(request.json()["messageId"])
                elif request.path.startswith("/amp") and path == "/amp":
                    found |= {e["insert_id"] for e in request.json()["events"]}
            return found

        wait_for(lambda: len(ids("/hook")) == 3 and len(ids("/amp")) == 2, 30, "deliveries")
        assert ids("/amp") == {granted["messageId"], absent["messageId"]}
        report = http.get("/api/v1/destinations/amp/delivery", headers=ADMIN).json()["data"]
        assert report["filtered"] == {"Filtered by end user consent": 1}
