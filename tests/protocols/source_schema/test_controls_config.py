"""Schema controls in headwater.yaml: ``schema_controls`` under a source (§6.2), planned,
applied, exported and loaded for the Protocols stage."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from headwater.config.apply import export_config
from headwater.config.model import parse_config, read_yaml
from headwater.errors import ConfigError
from headwater.protocols.connected import SchemaControls
from headwater.protocols.schema_controls import load_integration_filters, load_schema_controls
from headwater.store.workspace import WorkspaceStore
from tests.config.test_apply import apply_text
from tests.support.clock import Clock

WITH_CONTROLS = """\
workspace: acme
sources:
  - name: web
    write_key: WK_web
    schema_controls:
      blockedEvents: [Foo]
      blockScreen: true
      omittedGroupTraits: [ssn]
      integrationFilters: {Order Completed: {AppsFlyer: false}}
  - name: server
    write_key: WK_server
"""


def test_apply_export_and_load(engine: Engine, clock: Clock) -> None:
    store = WorkspaceStore(engine, clock=clock)
    rendered = apply_text(store, WITH_CONTROLS)
    assert "~ source web: schema_controls {} → " in rendered
    web = store.get_source("web")
    assert web is not None
    assert load_schema_controls(engine) == {
        web.id: SchemaControls(
            blocked_track=frozenset({"Foo"}),
            block_screen=True,
            omitted_group_traits=frozenset({"ssn"}),
        )
    }
    assert load_integration_filters(engine) == {web.id: {"Order Completed": {"AppsFlyer": False}}}
    exported = export_config(store)
    assert "schema_controls:" in exported
    assert apply_text(store, exported) == "No changes."
    assert apply_text(store, WITH_CONTROLS) == "No changes."
    # Left out of the file: the source has none again.
    removed = apply_text(
        store,
        WITH_CONTROLS.split("    schema_controls:")[0]
        + "  - name: server\n    write_key: WK_server\n",
    )
    assert "schema_controls" in removed
    assert load_schema_controls(engine) == {}


def test_a_bad_control_is_named() -> None:
    text = WITH_CONTROLS.replace("blockScreen: true", "blockScreen: sometimes")
    with pytest.raises(ConfigError) as exc:
        parse_config(read_yaml(text))
    assert any("blockScreen" in problem for problem in exc.value.problems)
