"""``/api/v1/consent/categories`` and a destination's ``/encryption`` through FastAPI's
TestClient on SQLite and PostgreSQL (A-CM-8, the consent event of §12.4, A-HIPAA-1's keys)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.privacy.encryption import FieldEncryption, decrypt_value, encrypt_value
from headwater.protocols.plans import CONSENT_EVENT
from headwater.store.workspace import WorkspaceStore
from tests.api.client import api_with_destination

CATEGORIES = "/api/v1/consent/categories"


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with api_with_destination(
        engine, {"name": "hook", "type": "webhook", "settings": {"url": "http://127.0.0.1:9/"}}
    ) as http:
        yield http


def create(client: TestClient, **body: Any) -> Any:
    return client.post(CATEGORIES, json={"name": "Advertising", **body})


def refused(response: Any, field: str) -> None:
    assert 400 <= response.status_code < 500, response.text
    [error] = response.json()["errors"]
    assert error.get("field") == field, error


def test_a_cm_8_category_ids_and_names(client: TestClient) -> None:
    """A-CM-8."""
    refused(create(client, categoryId="1abc"), "categoryId")
    refused(create(client, categoryId="a" * 35), "categoryId")
    assert create(client, categoryId="a" * 34).status_code == 201
    assert create(client, categoryId="Ads").status_code == 201
    assert create(client, categoryId="ads").status_code == 201  # case-sensitive: distinct
    assert create(client, categoryId="ads").status_code == 409
    refused(create(client, categoryId="Retl", name="x" * 21), "name")
    assert create(client, categoryId="Retl", name="x" * 20).status_code == 201
    ids = [c["categoryId"] for c in client.get(CATEGORIES).json()["data"]["categories"]]
    assert sorted(ids) == sorted(["a" * 34, "Ads", "ads", "Retl"])


def test_crud_and_destination_types(client: TestClient) -> None:
    made = create(client, categoryId="ad", destinations=["Webhooks", "amplitude"])
    assert made.status_code == 201, made.text
    category = made.json()["data"]["category"]
    assert category["destinations"] == ["amplitude", "webhook"]  # a catalog name is its type
    assert category["enabled"] is True
    refused(create(client, categoryId="x", destinations=["no-such-destination"]), "destinations")
    changed = client.patch(f"{CATEGORIES}/ad", json={"enabled": False, "destinations": []})
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["category"]["enabled"] is False
    assert client.get(f"{CATEGORIES}/ad").json()["data"]["category"]["destinations"] == []
    refused(client.patch(f"{CATEGORIES}/ad", json={"enabled": "no"}), "enabled")
    assert client.patch(f"{CATEGORIES}/ad", json={"color": 1}).status_code == 422
    assert client.delete(f"{CATEGORIES}/ad").status_code == 200
    assert client.get(f"{CATEGORIES}/ad").status_code == 404
    assert client.delete(f"{CATEGORIES}/ad").status_code == 404
    bodies: list[Any] = [None, [], "x", {"categoryId": None, "name": "n"}, {"categoryId": ["a"]}]
    for body in bodies:
        response = client.post(CATEGORIES, json=body)
        assert 400 <= response.status_code < 500, (body, response.text)


def test_first_category_adds_the_consent_event_to_every_plan(client: TestClient) -> None:
    plans = "/api/v1/tracking-plans"
    before = client.post(plans, json={"name": "before", "type": "LIVE"}).json()["data"]
    assert create(client, categoryId="ad").status_code == 201
    after = client.post(plans, json={"name": "after", "type": "LIVE"}).json()["data"]
    for plan in (before["trackingPlan"], after["trackingPlan"]):
        rules = client.get(f"{plans}/{plan['id']}/rules").json()["data"]["rules"]
        assert [(r["type"], r["key"]) for r in rules] == [("TRACK", CONSENT_EVENT)]


def test_generate_keys_returns_the_private_key_once(client: TestClient, engine: Engine) -> None:
    url = "/api/v1/destinations/hook/encryption"
    configured = client.patch(url, json={"fields": ["email"], "enabled": True})
    assert configured.status_code == 200, configured.text
    assert configured.json()["data"]["encryption"]["publicKey"] is None
    made = client.post(url + "/keys")
    assert made.status_code == 200, made.text
    private_key = made.json()["data"]["privateKey"]
    shown = client.get(url).json()["data"]["encryption"]
    assert shown["fields"] == ["email"] and shown["enabled"] is True
    assert "privateKey" not in client.get(url).json()["data"]
    stored = FieldEncryption(WorkspaceStore(engine)).get(_id(client))
    assert stored.public_key == shown["publicKey"]
    key = stored.key
    assert key is not None
    assert decrypt_value(encrypt_value("peter@example.com", key), private_key) == (
        "peter@example.com"
    )
    refused(client.patch(url, json={"fields": "email"}), "fields")
    refused(client.patch(url, json={"fields": [""]}), "fields")
    assert client.patch("/api/v1/destinations/nope/encryption", json={}).status_code == 404


def _id(client: TestClient) -> str:
    found: str = client.get("/api/v1/destinations/hook").json()["data"]["destination"]["id"]
    return found
