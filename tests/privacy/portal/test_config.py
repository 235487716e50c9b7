"""The Privacy Portal in headwater.yaml: matchers, inventory, controls and alerts applied,
exported, and applied again with nothing to change; unusable entries refused."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, export_config, plan
from headwater.config.model import parse_config, read_yaml
from headwater.errors import ConfigError
from headwater.privacy.alerts import Alerts
from headwater.privacy.controls import Controls
from headwater.privacy.custom_matchers import CustomMatchers
from headwater.privacy.inventory import Inventory
from headwater.store.workspace import WorkspaceStore

FILE = """workspace: acme
sources:
  - name: android
    settings: {category: mobile}
  - name: ios
  - name: quarantine
privacy:
  matchers:
    - {name: SIN, classification: RED, synonyms: [Social Insurance No.]}
    - {name: Staff email, classification: YELLOW, matchOn: VALUE, pattern: '@acme\\\\.com$'}
  inventory:
    properties.card_number: RED
    traits.plan: GREEN
  controls:
    android: {blockRed: true}
  alerts:
    slack: {enabled: true, webhookUrl: "https://hooks.slack.com/services/T/B/x", channel: "#pii"}
    source: {enabled: false, sourceId: quarantine}
"""


def run(store: WorkspaceStore, text: str) -> str:
    changes = plan(store, parse_config(read_yaml(text)))
    apply(store, changes)
    return changes.render()


def test_apply_export_apply_changes_nothing(engine: Engine) -> None:
    store = WorkspaceStore(engine)
    shown = run(store, FILE)
    assert "~ privacy matchers" in shown and "~ privacy controls" in shown
    assert sorted(m.name for m in CustomMatchers(store).all()) == ["SIN", "Staff email"]
    assert Inventory(store).classes() == {"properties.card_number": "red", "traits.plan": "green"}
    android = store.get_source("android")
    assert android is not None
    assert Controls(store).get(android.id).block_red is True
    alerts = {a.channel: a for a in Alerts(store).settings()}
    assert alerts["slack"].enabled and not alerts["source"].enabled

    exported = export_config(store)
    assert "privacy:" in exported and "Social Insurance No." in exported
    assert run(store, exported) == "No changes."
    assert run(store, FILE) == "No changes."

    # Each key given is the complete set; a key left out is left alone.
    shown = run(store, "workspace: acme\nprivacy:\n  controls: {}\n  inventory: {}\n")
    assert "~ privacy controls" in shown and "~ privacy inventory" in shown
    assert Controls(store).all() == {} and Inventory(store).fields() == []
    assert len(CustomMatchers(store).all()) == 2


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        (
            "matchers: [{name: x, classification: RED, matchOn: VALUE, pattern: 'a(?=b)'}]",
            "pattern",
        ),
        ("matchers: [{name: x, classification: RED}, {name: X, classification: RED}]", "twice"),
        ("inventory: {email: RED}", "inventory.email"),
        ("inventory: {properties.email: BLUE}", "inventory.properties.email"),
        ("alerts: {slack: {enabled: true, webhookUrl: nope, channel: '#a'}}", "webhookUrl"),
        ("controls: {android: {blockRed: yes please}}", "blockRed"),
    ],
)
def test_unusable_privacy_sections_are_refused(section: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("(", "\\(")):
        parse_config(read_yaml(f"workspace: acme\nprivacy:\n  {section}\n"))
