"""``/api/v1/spaces/{space}/journeys``: CRUD, versions, lifecycle, analytics, and every
refusal a 4xx naming the part (A-UE-57 over REST)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore

TOKEN = "test-admin-token"
BASE = "/api/v1/spaces/main/journeys"
CLASSIC: dict[str, Any] = {
    "entry": {"audience": "buyers"},
    "exit": {"after": {"days": 7}},
    "reentry": {"after": {"days": 30}},
    "steps": [
        {"name": "Wait", "delay": {"days": 1}},
        {"name": "Opened email", "send": {"destinations": [{"name": "engage-hook"}]}},
    ],
}


def _hold(timeout: dict[str, int], branches: int = 1) -> dict[str, Any]:
    return {
        "type": "event_triggered",
        "entry": {"event": "Cart_Modified", "unique_id": "cart_id"},
        "steps": [
            {
                "name": "Hold",
                "hold_until": {
                    "branches": [{"name": f"b{n}", "event": f"E{n}"} for n in range(branches)],
                    "timeout": timeout,
                },
            }
        ],
    }


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    WorkspaceStore(engine).ensure_workspace("acme")
    app = create_api(engine, admin_token_hash=hash_token(TOKEN))
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        assert http.post("/api/v1/sources", json={"name": "web"}).status_code == 201
        made = http.post("/api/v1/spaces", json={"name": "main", "sourceIds": ["web"]})
        assert made.status_code == 201
        made = http.post(
            "/api/v1/destinations",
            json={
                "name": "engage-hook",
                "source": "main-engage",
                "type": "webhook",
                "settings": {"url": "https://example.com/hook"},
            },
        )
        assert made.status_code == 201, made.text
        made = http.post(
            "/api/v1/spaces/main/audiences",
            json={"name": "Buyers", "definition": {"query": "event('Order').count() >= 1"}},
        )
        assert made.status_code == 201, made.text
        made = http.post(
            "/api/v1/spaces/main/audiences",
            json={
                "name": "Funnel",
                "definition": {
                    "query": "event('A').where(event('B').within(parent: 1 days).count() >= 1)"
                    ".count() >= 1"
                },
            },
        )
        assert made.status_code == 201, made.text
        assert made.json()["data"]["audience"]["mode"] == "batch"
        yield http


def _error(answer: Any) -> dict[str, Any]:
    error: dict[str, Any] = answer.json()["errors"][0]
    return error


def test_the_api_crud_versions_and_lifecycle(client: TestClient) -> None:
    made = client.post(BASE, json={"name": "First Purchase", "definition": CLASSIC})
    assert made.status_code == 201, made.text
    journey = made.json()["data"]["journey"]
    assert (journey["key"], journey["status"], journey["version"]) == (
        "first_purchase",
        "draft",
        1,
    )
    key = journey["definition"]["steps"][1]["key"]
    assert key.startswith("j_o_first_purchase__opened_email_")
    assert client.get(f"{BASE}/first_purchase").json()["data"]["journey"]["id"] == journey["id"]
    assert [j["key"] for j in client.get(BASE).json()["data"]["journeys"]] == ["first_purchase"]
    drafted = client.get(f"{BASE}/first_purchase/analytics")
    assert drafted.status_code == 409  # drafts have no analytics
    published = client.post(f"{BASE}/{journey['id']}/publish")
    assert published.json()["data"]["journey"]["status"] == "published"
    edited = client.patch(
        f"{BASE}/first_purchase",
        json={"definition": {**CLASSIC, "steps": CLASSIC["steps"][1:]}, "name": "First Buy"},
    ).json()["data"]["journey"]
    assert edited["name"] == "First Buy" and edited["key"] == "first_purchase"
    assert [(v["version"], v["status"]) for v in edited["versions"]] == [
        (1, "published"),
        (2, "draft"),
    ]
    assert edited["definition"]["steps"][0]["key"] == key  # kept by the new version
    assert client.post(f"{BASE}/first_purchase/pause").json()["data"]["journey"]["status"] == (
        "paused"
    )
    assert client.post(f"{BASE}/first_purchase/resume").json()["data"]["journey"]["status"] == (
        "published"
    )
    again = client.post(f"{BASE}/first_purchase/publish", json={"previous": "pause"})
    versions = again.json()["data"]["journey"]["versions"]
    assert [(v["version"], v["status"]) for v in versions] == [(1, "paused"), (2, "published")]
    stats = client.get(
        f"{BASE}/first_purchase/analytics",
        params={"mode": "entry", "since": "2020-01-01", "until": "2020-02-01"},
    )
    assert stats.status_code == 200, stats.text
    assert stats.json()["data"]["analytics"]["entered"] == 0
    assert client.delete(f"{BASE}/first_purchase").status_code == 200
    assert client.get(f"{BASE}/first_purchase").status_code == 404
    taken = client.post(f"{BASE}", json={"name": "First Purchase", "definition": CLASSIC})
    assert taken.status_code == 409  # keys are never given again


REFUSED: list[tuple[dict[str, Any], str]] = [
    (_hold({"minutes": 4}), "definition.steps[0].hold_until.timeout.minutes"),
    (_hold({"days": 183}), "definition.steps[0].hold_until.timeout.days"),
    (_hold({"hours": 2}, branches=5), "definition.steps[0].hold_until.branches"),
    ({"entry": {"audience": "nobody"}, "steps": []}, "definition"),
    ({"entry": {"audience": "buyers"}, "steps": [{"name": "x"}]}, "definition.steps[0]"),
    (
        {"entry": {"audience": "buyers"}, "steps": [{"name": "W", "delay": {"days": "1"}}]},
        "definition.steps[0].delay.days",
    ),
    (
        {
            "entry": {"audience": "buyers"},
            "steps": [
                {
                    "name": "R",
                    "randomized": [{"name": f"b{n}", "percent": 10} for n in range(6)],
                }
            ],
        },
        "definition.steps[0].randomized",
    ),
    (
        {
            "entry": {"audience": "buyers"},
            "steps": [{"name": "S", "send": {"destinations": [{"name": "nope"}]}}],
        },
        "definition",
    ),
    (
        {"entry": {"audience": "buyers"}, "reentry": {"after": {"days": 1}}},
        "definition.reentry",
    ),
    ({"type": "event_triggered", "entry": {"event": "E"}}, "definition.entry.unique_id"),
    (
        {"entry": {"audience": "buyers"}, "steps": [{"name": "s" * 171, "delay": {"days": 1}}]},
        "definition.steps[0].name",
    ),
]


def test_a57_every_refusal_is_a_4xx_naming_the_part(client: TestClient) -> None:
    for definition, field in REFUSED:
        answer = client.post(BASE, json={"name": "Refused", "definition": definition})
        assert answer.status_code == 422, answer.text
        assert _error(answer)["field"] == field
    assert client.get(BASE).json()["data"]["journeys"] == []


def test_names_bodies_and_periods_are_checked(client: TestClient) -> None:
    long = client.post(BASE, json={"name": "x" * 74, "definition": CLASSIC})
    assert long.status_code == 422 and _error(long)["field"] == "name"
    assert client.post(BASE, json={"name": "A", "definition": CLASSIC, "x": 1}).status_code == 422
    assert client.get(f"{BASE}/nope").status_code == 404
    client.post(BASE, json={"name": "A", "definition": CLASSIC, "publish": True})
    bad = client.get(f"{BASE}/a/analytics", params={"since": "yesterday"})
    assert bad.status_code == 422 and _error(bad)["field"] == "since"
    wide = client.get(f"{BASE}/a/analytics", params={"since": "2020-01-01", "until": "2021-01-01"})
    assert wide.status_code == 422
    assert client.post(f"{BASE}/a/publish").status_code == 409  # no draft to publish
    triggered = client.post(
        BASE, json={"name": "Carts", "definition": _hold({"hours": 2}), "publish": True}
    )
    assert triggered.status_code == 201, triggered.text
    edit = client.patch(f"{BASE}/carts", json={"definition": _hold({"hours": 3})})
    assert edit.status_code == 409
