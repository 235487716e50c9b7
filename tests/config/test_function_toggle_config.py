"""``insert_function_enabled:`` in headwater.yaml (the Enable Function toggle, §11.4): apply
sets it, export writes it back (only when off) and applies to no change; and
``server.functions_monthly_execution_ms`` reaches the server's settings."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, export_config, plan, server_settings_overrides
from headwater.config.model import parse_config, read_yaml
from headwater.config.settings import ServerSettings
from headwater.errors import ConfigError
from headwater.functions.store import FunctionStore
from headwater.store.workspace import WorkspaceStore

CONFIG = """
workspace: acme
functions:
  - name: enrich
    kind: insert
    language: javascript
    code: |
      async function onTrack(event, settings) { event.properties.message = 'Enriched'; return event }
sources:
  - name: web
    write_key: WK_web
destinations:
  - name: hook
    type: webhook
    source: web
    settings: {url: "http://127.0.0.1:9/hook"}
    insert_function: enrich
    insert_function_enabled: false
"""


def test_the_toggle_round_trips(engine: Engine) -> None:
    store = WorkspaceStore(engine)
    config = parse_config(read_yaml(CONFIG))
    first = plan(store, config)
    assert "~ destination hook: insert_function none → enrich (disabled)" in first.render()
    apply(store, first)
    attached = FunctionStore(store).insert_function("hook")
    assert attached is not None and attached.enabled is False
    assert not plan(store, config)  # idempotent

    exported = export_config(store)
    assert "insert_function_enabled: false" in exported
    assert not plan(store, parse_config(read_yaml(exported)))  # export, apply: no change

    # Turned on again: the key left out is the default, on.
    on = parse_config(read_yaml(CONFIG.replace("    insert_function_enabled: false\n", "")))
    turned = plan(store, on)
    assert "~ destination hook: insert_function enrich → enrich" in turned.render()
    apply(store, turned)
    attached = FunctionStore(store).insert_function("hook")
    assert attached is not None and attached.enabled is True
    assert "insert_function_enabled" not in export_config(store)
    assert not plan(store, on)


def test_the_toggle_needs_an_insert_function() -> None:
    text = CONFIG.replace("    insert_function: enrich\n", "")
    with pytest.raises(ConfigError, match="insert_function_enabled: give `insert_function:`"):
        parse_config(read_yaml(text))
    with pytest.raises(ConfigError, match="insert_function_enabled"):
        parse_config(read_yaml(CONFIG.replace("enabled: false", "enabled: nope")))


def test_the_monthly_allotment_is_a_server_setting() -> None:
    text = "workspace: acme\nserver: {functions_monthly_execution_ms: 1000000}\n"
    overrides = server_settings_overrides(parse_config(read_yaml(text)))
    assert overrides == {"functions_monthly_execution_ms": 1_000_000}
    assert replace(ServerSettings(), **overrides).functions_monthly_execution_ms == 1_000_000
    assert ServerSettings().functions_monthly_execution_ms is None
    with pytest.raises(ConfigError, match="functions_monthly_execution_ms"):
        parse_config(read_yaml("workspace: acme\nserver: {functions_monthly_execution_ms: 0}\n"))
