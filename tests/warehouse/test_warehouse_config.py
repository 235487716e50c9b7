"""Warehouses in the store and in headwater.yaml: names, secrets, schedules, schema names,
Selective Sync rules (AC-134, AC-135, AC-139)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, export_config, plan
from headwater.config.model import parse_config, read_yaml
from headwater.errors import ConfigError, InvalidError
from headwater.store.workspace import WorkspaceStore
from headwater.warehouse.store import WarehouseStore

CONFIG = """
workspace: acme
sources:
  - {name: web, slug: web_app}
  - {name: ios, slug: ios}
warehouses:
  - name: analytics
    type: postgres
    settings: {host: db.internal, database: analytics, user: segment, password: "${PG_PASSWORD}"}
    syncs_per_day: 12
    sources: [web, ios]
    schema_names: {ios: mobile_ios}
    selective_sync:
      web: {disabled_collections: [pages], disabled_properties: {tracks: [context_ip]}}
"""


@pytest.fixture
def store(engine: Engine) -> WorkspaceStore:
    return WorkspaceStore(engine)


def test_config_round_trip_keeps_secrets_out(
    store: WorkspaceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PG_PASSWORD", "s3cret-pw")
    config = parse_config(read_yaml(CONFIG))
    changes = plan(store, config)
    text = changes.render()
    assert "+ warehouse analytics (type postgres" in text and "s3cret-pw" not in text
    apply(store, changes)
    warehouses = WarehouseStore(store)
    [found] = warehouses.list()
    assert found.settings["password"] == "s3cret-pw"
    assert found.options.syncs_per_day == 12
    assert found.options.sync_interval_seconds == 7200
    web, ios = (store.get_source(n) for n in ("web", "ios"))
    assert web is not None and ios is not None
    assert warehouses.schema_names(found) == {web.id: "web_app", ios.id: "mobile_ios"}
    assert not plan(store, config)
    exported = export_config(store)
    assert "s3cret-pw" not in exported and "password: '[redacted]'" in exported
    assert "  sources:\n  - web\n  - ios" in exported
    assert not plan(store, parse_config(read_yaml(exported)))


def test_ac135_at_most_24_syncs_a_day(store: WorkspaceStore) -> None:
    store.ensure_workspace("acme")
    warehouses = WarehouseStore(store)
    with pytest.raises(InvalidError) as raised:
        warehouses.create("wh", "duckdb", options={"syncs_per_day": 25})
    assert raised.value.field == "options.syncs_per_day"
    daily = warehouses.create("daily", "duckdb", options={"syncs_per_day": 1})
    assert daily.options.sync_interval_seconds == 86_400
    twice = warehouses.create("twice", "duckdb", options={"syncs_per_day": 2})
    assert twice.options.sync_interval_seconds == 43_200
    assert warehouses.create("hourly", "duckdb").options.sync_interval_seconds == 3600


def test_ac134_received_at_cannot_be_turned_off(store: WorkspaceStore) -> None:
    store.ensure_workspace("acme")
    store.create_source("web")
    with pytest.raises(InvalidError, match="received_at cannot be turned off"):
        WarehouseStore(store).create(
            "wh",
            "duckdb",
            options={
                "selective_sync": {"web": {"disabled_properties": {"tracks": ["received_at"]}}}
            },
        )


def test_ac139_two_sources_cannot_share_a_schema(store: WorkspaceStore) -> None:
    store.ensure_workspace("acme")
    store.create_source("web")
    store.create_source("app")
    warehouses = WarehouseStore(store)
    with pytest.raises(InvalidError, match="share the schema 'web'"):
        warehouses.create("wh", "duckdb", options={"schema_names": {"app": "web"}})
    with pytest.raises(InvalidError, match="share the schema"):
        warehouses.create("wh", "duckdb", options={"schema_names": {"app": "x", "web": "x"}})
    with pytest.raises(InvalidError, match="must be lowercase"):
        warehouses.create("wh", "duckdb", options={"schema_names": {"app": "Bad-Name"}})


def test_bad_settings_and_types_are_refused(store: WorkspaceStore) -> None:
    store.ensure_workspace("acme")
    warehouses = WarehouseStore(store)
    with pytest.raises(InvalidError, match="unknown warehouse type"):
        warehouses.create("wh", "snowflake")
    with pytest.raises(InvalidError) as raised:
        warehouses.create("wh", "postgres", settings={"host": "h"})
    assert (raised.value.field or "").startswith("settings.")
    with pytest.raises(ConfigError, match="warehouses\\[1\\]: name 'a' is already used"):
        parse_config(
            read_yaml(
                "workspace: x\nwarehouses: [{name: a, type: duckdb}, {name: a, type: duckdb}]"
            )
        )
