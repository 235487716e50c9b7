"""An ``actions:*`` destination in headwater.yaml and the REST API: settings checked against
the package's authentication fields, secrets redacted, the catalog listed and searched."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.config.apply import apply, export_config, plan
from headwater.config.model import parse_config, read_yaml
from headwater.destinations.store import DestinationStore
from headwater.errors import InputError
from headwater.store.admin_token import hash_token
from headwater.store.workspace import WorkspaceStore

TOKEN = "test-admin-token"

CONFIG = """
workspace: acme
sources:
  - name: web
    write_key: WK_web
destinations:
  - name: cio
    type: actions:customerio
    source: web
    settings:
      siteId: the-site
      apiKey: ${CIO_KEY}
      accountRegion: EU 🇪🇺
    mappings:
      - name: Track Event
        enabled: true
        trigger: type = "track"
        action: trackEvent
        fields:
          name:
            "@path": $.event
          batch_size: 25
"""


def test_apply_an_actions_destination_then_export_redacts_its_secrets(
    engine: Engine, catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIO_KEY", "the-api-key")
    store = WorkspaceStore(engine)
    config = parse_config(read_yaml(CONFIG))
    changes = plan(store, config)
    assert "the-api-key" not in changes.render() and "the-site" not in changes.render()
    apply(store, changes)
    [cio] = DestinationStore(store).list()
    assert cio.type == "actions:customerio"
    assert cio.definition.package_directory == "customerio"
    assert dict(cio.settings) == {
        "siteId": "the-site",
        "apiKey": "the-api-key",
        "accountRegion": "EU 🇪🇺",
    }
    assert [m.action for m in cio.mappings] == ["trackEvent"]
    assert not plan(store, config)  # idempotent

    exported = export_config(store)
    assert "the-api-key" not in exported and "the-site" not in exported
    assert "siteId: '[redacted]'" in exported and "apiKey: '[redacted]'" in exported
    assert not plan(store, parse_config(read_yaml(exported)))  # [redacted] keeps the stored


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ("siteId: s\n      apiKey: k\n      accountRegion: Mars", "accountRegion"),
        ("siteId: s", "apiKey"),
        ("siteId: s\n      apiKey: k\n      site_id: s", "site_id"),
        ("siteId: 12\n      apiKey: k", "siteId"),
    ],
)
def test_bad_settings_name_the_field(
    engine: Engine, catalog: Path, settings: str, named: str
) -> None:
    text = CONFIG.replace(
        "siteId: the-site\n      apiKey: ${CIO_KEY}\n      accountRegion: EU 🇪🇺", settings
    )
    store = WorkspaceStore(engine)
    with pytest.raises(InputError) as refused:
        apply(store, plan(store, parse_config(read_yaml(text))))
    assert named in str(refused.value)
    assert not DestinationStore(store).list()


def test_a_mapping_field_the_action_lacks_is_refused(engine: Engine, catalog: Path) -> None:
    text = CONFIG.replace("batch_size: 25", "batch_sise: 25")
    store = WorkspaceStore(engine)
    with pytest.raises(InputError, match="batch_sise"):
        apply(store, plan(store, parse_config(read_yaml(text))))


def test_without_the_catalog_apply_says_how_to_install(
    engine: Engine, no_catalog: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CIO_KEY", "the-api-key")
    store = WorkspaceStore(engine)
    with pytest.raises(InputError, match="headwater catalog install"):
        apply(store, plan(store, parse_config(read_yaml(CONFIG))))


@pytest.fixture
def http(engine: Engine) -> TestClient:
    WorkspaceStore(engine).ensure_workspace("acme")
    client = TestClient(
        create_api(engine, admin_token_hash=hash_token(TOKEN)),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert client.post("/api/v1/sources", json={"name": "web"}).status_code == 201
    return client


def test_api_creates_an_actions_destination_and_redacts_its_secrets(
    http: TestClient, catalog: Path
) -> None:
    created = http.post(
        "/api/v1/destinations",
        json={
            "name": "cio",
            "type": "actions:customerio",
            "source": "web",
            "settings": {"siteId": "the-site", "apiKey": "the-key"},
        },
    )
    assert created.status_code == 201, created.text
    shown = created.json()["data"]["destination"]
    assert shown["catalogName"] == "Actions Customerio"
    assert shown["settings"] == {"siteId": "[redacted]", "apiKey": "[redacted]"}
    wrong = http.patch("/api/v1/destinations/cio", json={"settings": {"accountRegion": "Mars"}})
    assert wrong.status_code == 422
    assert "accountRegion" in wrong.text


def test_api_catalog_lists_and_searches_both_kinds(http: TestClient, catalog: Path) -> None:
    listed = http.get("/api/v1/catalog/destinations").json()["data"]["destinations"]
    by_type = {d["type"]: d for d in listed}
    assert by_type["webhook"]["kind"] == "native"
    cio = by_type["actions:customerio"]
    assert cio["kind"] == "actions" and cio["packageDirectory"] == "customerio"
    assert cio["secrets"] == ["apiKey", "siteId"]
    properties = cio["settings"]["properties"]
    assert properties["apiKey"]["writeOnly"] is True
    assert "writeOnly" not in properties["accountRegion"]
    assert properties["accountRegion"]["enum"] == ["US 🇺🇸", "EU 🇪🇺"]
    assert cio["settings"]["required"] == ["siteId", "apiKey"]
    track = next(a for a in cio["actions"] if a["name"] == "trackEvent")
    assert track["fields"]["id"]["default"] == {"@path": "$.userId"}
    assert track["batches"] is True
    assert any(p["action"] == "trackEvent" and p["automatic"] for p in cio["presets"])
    assert "testAuthentication" in cio["hooks"]

    found = http.get("/api/v1/catalog/destinations", params={"search": "CustomerIO"})
    types = {d["type"] for d in found.json()["data"]["destinations"]}
    assert "actions:customerio" in types and "webhook" not in types
    assert all(
        "customerio" in f"{d['type']} {d['name']} {d['description']}".lower()
        for d in found.json()["data"]["destinations"]
    )
    hooks = http.get("/api/v1/catalog/destinations", params={"search": "webhook"})
    assert {"webhook", "webhook-actions", "actions:webhook"} <= {
        d["type"] for d in hooks.json()["data"]["destinations"]
    }


def test_api_catalog_keeps_the_native_shape(http: TestClient, no_catalog: Path) -> None:
    listed = http.get("/api/v1/catalog/destinations").json()["data"]["destinations"]
    assert listed and all(d["kind"] == "native" for d in listed)
    webhook = next(d for d in listed if d["type"] == "webhook")
    assert {
        "type",
        "name",
        "aliases",
        "description",
        "methods",
        "secrets",
        "defaultInIntegrations",
        "batching",
        "settings",
        "actions",
    } <= set(webhook)
    assert webhook["settings"]["properties"]["shared_secret"]["writeOnly"] is True
    refused = http.post(
        "/api/v1/destinations",
        json={"name": "cio", "type": "actions:customerio", "source": "web"},
    )
    assert refused.status_code == 422
    assert "headwater catalog install" in refused.text
