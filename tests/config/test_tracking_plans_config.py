"""`tracking_plans:` and the sources' `tracking_plan:` / `schema:` in headwater.yaml: load,
plan, apply (changelog actor "config"), export round trip, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, export_config, plan
from headwater.config.model import ConfigFile, load_config, parse_config, read_yaml
from headwater.errors import ConfigError
from headwater.protocols.plans import PlanStore, load_source_protocols
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock

CONFIG = """\
workspace: acme
sources:
  - name: web
    write_key: WK_web
    tracking_plan: Web Plan
    schema:
      track: {allowUnplannedEvents: false, allowEventOnViolations: true}
      identify: {allowUnplannedTraits: false}
      forwardingViolationsTo: quarantine
      forwardingBlockedEventsTo: quarantine
  - name: quarantine
    write_key: WK_q
tracking_plans:
  - name: Web Plan
    description: the website
    labels: {team: growth}
    libraries: [Ecommerce Library]
    rules:
      - type: TRACK
        key: Signed Up
        version: 1
        json_schema:
          type: object
          properties:
            properties:
              type: object
              properties: {plan: {type: string}}
      - file: plans/web/checkout.json
  - name: Ecommerce Library
    type: RULE_LIBRARY
    rules:
      - type: TRACK
        key: Order Completed
        json_schema: {type: object}
"""

CHECKOUT = [
    {
        "type": "TRACK",
        "key": "Checkout Started",
        "version": 1,
        "jsonSchema": {"type": "object"},
        "createdAt": "2024-01-01T00:00:00Z",
    },
    {"type": "IDENTIFY", "key": "traits", "version": 1, "jsonSchema": {"type": "object"}},
]


@pytest.fixture
def store(engine: Engine, clock: Clock) -> WorkspaceStore:
    return WorkspaceStore(engine, clock=clock)


def write(tmp_path: Path, text: str, checkout: object = CHECKOUT) -> Path:
    (tmp_path / "plans" / "web").mkdir(parents=True, exist_ok=True)
    (tmp_path / "plans" / "web" / "checkout.json").write_text(json.dumps(checkout))
    path = tmp_path / "headwater.yaml"
    path.write_text(text)
    return path


def apply_config(store: WorkspaceStore, config: ConfigFile) -> str:
    changes = plan(store, config)
    apply(store, changes)
    return changes.render()


def test_apply_creates_plans_connections_and_settings(
    store: WorkspaceStore, tmp_path: Path
) -> None:
    rendered = apply_config(store, load_config(write(tmp_path, CONFIG)))
    assert "+ tracking plan Web Plan" in rendered
    assert "+ source web: tracking plan Web Plan" in rendered
    plans = PlanStore(store)
    web_plan = plans.require("Web Plan")
    assert (web_plan.description, dict(web_plan.labels)) == ("the website", {"team": "growth"})
    keys = [(r.type, r.key, r.library_id is not None) for r in plans.rules("Web Plan")]
    assert sorted(keys) == [
        ("IDENTIFY", "traits", False),
        ("TRACK", "Checkout Started", False),
        ("TRACK", "Order Completed", True),
        ("TRACK", "Signed Up", False),
    ]
    web = store.get_source("web")
    quarantine = store.get_source("quarantine")
    assert web is not None and quarantine is not None
    loaded = load_source_protocols(store.engine)[web.id]
    assert loaded.plan_name == "Web Plan" and loaded.plan is not None
    assert set(loaded.plan.track) == {"Signed Up", "Checkout Started", "Order Completed"}
    assert loaded.settings.track.allow_unplanned_events is False
    assert loaded.settings.identify.allow_unplanned_properties is False
    assert loaded.settings.forwarding_violations_to == quarantine.id
    assert loaded.settings.forwarding_blocked_events_to == quarantine.id
    actors = {entry.actor for entry in plans.changelog("Web Plan")}
    assert actors == {"config"}


def test_export_round_trips_and_plans_no_change(store: WorkspaceStore, tmp_path: Path) -> None:
    apply_config(store, load_config(write(tmp_path, CONFIG)))
    exported = export_config(store)
    assert plan(store, parse_config(read_yaml(exported))).render() == "No changes."
    data = read_yaml(exported)
    web = next(s for s in data["sources"] if s["name"] == "web")
    assert web["tracking_plan"] == "Web Plan"
    assert web["schema"]["forwardingViolationsTo"] == "quarantine"  # by name, not id
    assert {p["name"] for p in data["tracking_plans"]} == {"Web Plan", "Ecommerce Library"}


def test_changes_rules_libraries_and_disconnects(store: WorkspaceStore, tmp_path: Path) -> None:
    apply_config(store, load_config(write(tmp_path, CONFIG)))
    edited = (
        CONFIG.replace("    tracking_plan: Web Plan\n", "")
        .replace("libraries: [Ecommerce Library]", "libraries: []")
        .replace("properties: {plan: {type: string}}", "properties: {plan: {type: integer}}")
        .replace("      forwardingViolationsTo: quarantine\n", "")
    )
    rendered = apply_config(store, load_config(write(tmp_path, edited, CHECKOUT[:1])))
    assert "- source web: tracking plan" in rendered
    assert "~ tracking plan Web Plan: rules +0 ~1 -1" in rendered
    plans = PlanStore(store)
    assert plans.plan_of_source("web") is None
    assert plans.require("Web Plan").libraries == ()
    schema = {r.key: r.json_schema for r in plans.rules("Web Plan")}
    assert schema["Signed Up"]["properties"]["properties"]["properties"]["plan"] == {
        "type": "integer"
    }
    assert "forwardingViolationsTo" not in plans.schema_settings("web")
    actions = [e.action for e in plans.changelog("Web Plan")]
    assert {"source_disconnected", "library_unsynced", "rule_changed", "rule_removed"} <= set(
        actions
    )
    # a file without the plans deletes them
    gone = CONFIG.replace("    tracking_plan: Web Plan\n", "").split("tracking_plans:")[0]
    rendered = apply_config(store, load_config(write(tmp_path, gone + "tracking_plans: []\n")))
    assert (
        "- tracking plan Web Plan" in rendered and "- tracking plan Ecommerce Library" in rendered
    )
    assert plans.list_plans() == []


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (("json_schema: {type: object}", 'json_schema: {properties: {a: {pattern: "^(?!t)"}}}'),
         ["tracking_plans[1]", "'Order Completed'", "lookaround"]),
        (("libraries: [Ecommerce Library]", "libraries: [Nope]"),
         ["tracking_plans[0].libraries[0]", "'Nope'"]),
        (("tracking_plan: Web Plan", "tracking_plan: Ecommerce Library"),
         ["sources[0].tracking_plan", "library"]),
        (("file: plans/web/checkout.json", "file: plans/missing.json"),
         ["tracking_plans[0].rules", "plans/missing.json"]),
        (("type: RULE_LIBRARY", "type: TEMPLATE"), ["tracking_plans[1].type"]),
    ],
)  # fmt: skip
def test_errors_name_the_path_and_the_rule(
    tmp_path: Path, change: tuple[str, str], words: list[str]
) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(write(tmp_path, CONFIG.replace(*change)))
    text = "\n".join(exc.value.problems)
    for word in words:
        assert word in text, text


def test_a_rule_file_of_rulev1_objects_is_relative_to_the_config(
    store: WorkspaceStore, tmp_path: Path
) -> None:
    path = write(tmp_path, CONFIG)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    moved = elsewhere / "headwater.yaml"
    moved.write_text(path.read_text())
    with pytest.raises(ConfigError):
        load_config(moved)  # plans/web/checkout.json is not next to it
    config = load_config(path)
    web_plan = next(p for p in config.tracking_plans or [] if p.name == "Web Plan")
    assert [r.key for r in web_plan.rules] == ["Signed Up", "Checkout Started", "traits"]
