"""The Privacy Portal's REST routes under /api/v1/privacy: the Inbox, the Inventory and its
CSV, custom matchers (A-PR-2, A-PR-3 as HTTP answers), controls and alerts."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from headwater.api.app import create_api
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore
from tests.privacy.portal.test_inbox import Feed
from tests.support.clock import Clock

P = "/api/v1/privacy"


@pytest.fixture
def http(store: WorkspaceStore, clock: Clock) -> Iterator[TestClient]:
    app = create_api(store.engine, admin_token_hash=hash_token("t"), clock=clock)
    with TestClient(app, headers={"authorization": "Bearer t"}) as client:
        yield client


def test_every_route_needs_the_admin_token(store: WorkspaceStore) -> None:
    app = create_api(store.engine, admin_token_hash=hash_token("t"))
    with TestClient(app) as anonymous:
        for path in ("/inbox", "/inventory", "/matchers", "/controls", "/alerts"):
            assert anonymous.get(P + path).status_code == 401


def test_inbox_inventory_and_csv(http: TestClient, store: WorkspaceStore, clock: Clock) -> None:
    Feed(store, clock).send(
        "web",
        {"type": "track", "event": "=Bought", "userId": "u", "properties": {"ssn": "1", "n": 2}},
    )
    listed = http.get(f"{P}/inbox", params={"sourceId": "web"})
    assert listed.status_code == 200
    fields = {f["path"]: f for f in listed.json()["data"]["fields"]}
    assert sorted(fields) == ["properties.n", "properties.ssn"]
    assert fields["properties.ssn"]["classification"] == "RED"
    assert http.get(f"{P}/inbox", params={"sourceId": "nope"}).status_code == 404
    assert http.get(f"{P}/inbox", params={"limit": 0}).status_code == 400

    added = http.post(f"{P}/inventory", json={"path": "properties.ssn", "classification": "RED"})
    assert added.status_code == 201
    assert added.json()["data"]["field"]["classification"] == "RED"
    assert (
        http.post(f"{P}/inventory", json={"path": "ssn", "classification": "RED"}).status_code
        == 422
    )
    assert http.post(f"{P}/inventory", json=["x"]).status_code == 400
    red = http.get(f"{P}/inventory", params={"classification": "RED"}).json()["data"]["fields"]
    assert [f["path"] for f in red] == ["properties.ssn"]

    download = http.get(f"{P}/inventory/download")
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows[0] == ["Field", "Classification", "Sources", "Events", "Last Seen"]
    assert rows[1][:4] == ["properties.ssn", "RED", "web", "'=Bought"]  # no formula

    assert http.delete(f"{P}/inventory/properties.ssn").status_code == 200
    assert http.delete(f"{P}/inventory/properties.ssn").status_code == 404


def test_matchers_over_http(http: TestClient) -> None:
    defaults = http.get(f"{P}/matchers").json()["data"]["matchers"]
    assert len(defaults) == 36 and {m["type"] for m in defaults} == {"DEFAULT"}
    lookahead = http.post(
        f"{P}/matchers",
        json={"name": "x", "classification": "RED", "matchOn": "VALUE", "pattern": "a(?=b)"},
    )
    assert lookahead.status_code == 422 and "pattern" in lookahead.text  # A-PR-3
    made = http.post(f"{P}/matchers", json={"name": "SIN", "classification": "RED"})
    assert made.status_code == 201
    matcher = made.json()["data"]["matcher"]
    assert matcher["type"] == "CUSTOM" and matcher["precision"] == "EXACT"
    assert http.get(f"{P}/matchers/SIN").json()["data"]["matcher"] == matcher
    changed = http.put(
        f"{P}/matchers/{matcher['id']}",
        json={"name": "SIN", "classification": "YELLOW", "synonyms": ["Social Insurance No."]},
    )
    assert changed.json()["data"]["matcher"]["classification"] == "YELLOW"
    assert (
        http.post(f"{P}/matchers", json={"name": "sin", "classification": "RED"}).status_code == 409
    )
    for n in range(99):
        assert (
            http.post(f"{P}/matchers", json={"name": f"m{n}", "classification": "RED"}).status_code
            == 201
        )
    refused = http.post(f"{P}/matchers", json={"name": "m101", "classification": "RED"})
    assert refused.status_code == 422  # A-PR-2: the 101st
    assert http.delete(f"{P}/matchers/SIN").status_code == 200
    assert http.get(f"{P}/matchers/SIN").status_code == 404


def test_controls_and_alerts_over_http(http: TestClient) -> None:
    put = http.put(f"{P}/controls/android", json={"blockRed": True})
    assert put.status_code == 200
    assert put.json()["data"]["control"]["blockYellow"] is False
    assert http.get(f"{P}/controls").json()["data"]["controls"][0]["blockRed"] is True
    assert http.put(f"{P}/controls/nope", json={"blockRed": True}).status_code == 404
    assert http.put(f"{P}/controls/android", json={"blockRed": 1}).status_code == 422

    slack = http.put(
        f"{P}/alerts/SLACK",
        json={"enabled": True, "webhookUrl": "https://hooks.slack.com/services/x", "channel": "#p"},
    )
    assert slack.status_code == 200
    alerts = {a["type"]: a for a in http.get(f"{P}/alerts").json()["data"]["alerts"]}
    assert alerts["SLACK"]["enabled"] is True and alerts["SOURCE"]["enabled"] is False
    assert "enabledAt" not in alerts["SLACK"]
    assert http.put(f"{P}/alerts/pager", json={"enabled": True}).status_code == 422
