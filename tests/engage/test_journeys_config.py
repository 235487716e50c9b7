"""``journeys:`` in ``headwater.yaml``: applied, exported with the send steps' keys, applied
back without changes; edits make versions, status changes, removals, bad entries."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, export_config, plan
from headwater.config.model import parse_config, read_yaml
from headwater.engage.journeys.store import JourneyStore
from headwater.errors import ConfigError
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock

FILE = """
workspace: acme
sources:
  - name: web
spaces:
  - name: main
    sources: [web]
audiences:
  - space: main
    name: Signed Up
    definition: "event('Signed Up').count() >= 1"
  - space: main
    name: Viewed Pricing
    definition: "event('Viewed Pricing').within(7 days).count() >= 1"
destinations:
  - name: engage-hook
    type: webhook
    source: main-engage
    settings: {url: "https://example.com/engage"}
journeys:
  - space: main
    name: First Purchase
    definition:
      entry: {audience: signed_up}
      exit: {after: {days: 7}}
      steps:
        - {name: Wait 5 days, delay: {days: 5}}
        - {name: Viewed pricing, condition: {audience: viewed_pricing}}
        - {name: Opened email, send: {destinations: [{name: engage-hook}]}}
  - space: main
    name: Carts
    status: draft
    definition:
      type: event_triggered
      entry: {event: Cart_Modified, unique_id: cart_id}
      steps:
        - name: Hold
          hold_until:
            branches: [{name: bought, event: Order_Purchased}]
            timeout: {hours: 2}
"""


@pytest.fixture
def store(engine: Engine, clock: Clock) -> WorkspaceStore:
    return WorkspaceStore(engine, clock=clock)


def run(store: WorkspaceStore, text: str) -> str:
    changes = plan(store, parse_config(read_yaml(text)))
    apply(store, changes)
    return changes.render()


def test_journeys_apply_export_and_apply_back_unchanged(store: WorkspaceStore) -> None:
    shown = run(store, FILE)
    assert "+ journey main/First Purchase (key first_purchase; published; 3 steps)" in shown
    assert "+ journey main/Carts (key carts; draft; 1 step)" in shown
    journeys = JourneyStore(store)
    first = journeys.get("main", "first_purchase")
    assert first.status == "published"
    assert journeys.get("main", "carts").status == "draft"
    exported = export_config(store)
    data = read_yaml(exported)
    [written, carts] = sorted(data["journeys"], key=lambda j: j["name"], reverse=True)
    assert written["status"] == "published" and carts["status"] == "draft"
    key = written["definition"]["steps"][2]["key"]
    assert key.startswith("j_o_first_purchase__opened_email_")
    assert plan(store, parse_config(data)).render() == "No changes."
    assert plan(store, parse_config(read_yaml(FILE))).render() == "No changes."
    # Steps changed: a new version, published; the send step keeps its key.
    edited = exported.replace("days: 5", "days: 3")
    shown = run(store, edited)
    assert shown == "~ journey main/First Purchase: steps changed, publish"
    after = journeys.get("main", "first_purchase")
    assert [(v.version, v.status) for v in after.versions] == [(1, "archived"), (2, "published")]
    assert after.latest.definition["steps"][2]["key"] == key
    paused = edited.replace("status: published", "status: paused")
    assert run(store, paused) == "~ journey main/First Purchase: status → paused"
    assert journeys.get("main", "first_purchase").status == "paused"
    assert plan(store, parse_config(read_yaml(export_config(store)))).render() == "No changes."
    # Publish the draft; then its steps cannot change in the file.
    published = paused.replace("status: draft", "status: published")
    assert run(store, published) == "~ journey main/Carts: publish"
    with pytest.raises(ConfigError) as refused:
        plan(store, parse_config(read_yaml(published.replace("hours: 2", "hours: 3"))))
    assert "cannot be edited" in str(refused.value)
    data = read_yaml(published)
    data["journeys"] = [j for j in data["journeys"] if j["name"] != "Carts"]
    assert run(store, __import__("yaml").safe_dump(data)) == "- journey main/Carts"


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (
            "{space: main, name: J, definition: {entry: {audience: signed_up}, "
            "steps: [{name: W, delay: {minutes: 4}}]}}",
            "journeys[0].definition.steps[0].delay.minutes: 4 minutes is outside",
        ),
        (
            "{space: nowhere, name: J, definition: {entry: {audience: signed_up}}}",
            "journeys[0].space: no space named 'nowhere'",
        ),
        (
            "{space: main, name: J, status: live, definition: {entry: {audience: a}}}",
            "journeys[0].status: input should be",
        ),
        ("{space: main, name: " + "x" * 74 + ", definition: {}}", "journeys[0].name"),
    ],
)
def test_bad_journeys_are_refused_naming_the_entry(entry: str, problem: str) -> None:
    text = "workspace: acme\nspaces: [{name: main}]\njourneys:\n  - " + entry + "\n"
    with pytest.raises(ConfigError) as refused:
        parse_config(read_yaml(text))
    assert problem in str(refused.value)
