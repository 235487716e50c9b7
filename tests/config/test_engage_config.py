"""``computed_traits:`` and ``audiences:`` in ``headwater.yaml`` (the issue's example): applied
with the space's Engage destination, exported, applied back without changes; edits, renames
with ``key``, removals and bad entries."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, export_config, plan
from headwater.config.model import parse_config, read_yaml
from headwater.engage.computations import ComputationStore
from headwater.errors import ConfigError, ConflictError
from headwater.store.workspace import WorkspaceStore
from headwater.unify.spaces import SpaceStore
from tests.support.clock import Clock

FILE = """
workspace: acme
sources:
  - name: web
spaces:
  - name: main
    sources: [web]
computed_traits:
  - space: main
    name: Total Revenue 180 Days        # key: total_revenue_180_days
    definition: "event('Order Completed').within(180 days).sum(property('revenue'))"
audiences:
  - space: main
    name: Order Completed Last 30days   # key: order_completed_last_30days
    definition: "event('Order Completed').within(30 days).count() >= 1"
    destinations:
      - {name: engage-hook, send_track: true, send_identify: true}
destinations:
  - name: engage-hook
    type: webhook
    source: main-engage
    settings: {url: "https://example.com/engage"}
"""


@pytest.fixture
def store(engine: Engine, clock: Clock) -> WorkspaceStore:
    return WorkspaceStore(engine, clock=clock)


def run(store: WorkspaceStore, text: str) -> str:
    changes = plan(store, parse_config(read_yaml(text)))
    apply(store, changes)
    return changes.render()


def test_the_issues_file_applies_exports_and_applies_back_unchanged(store: WorkspaceStore) -> None:
    shown = run(store, FILE)
    assert "+ space main" in shown
    assert "+ destination engage-hook (type webhook; source main-engage" in shown
    assert (
        "+ computed trait Total Revenue 180 Days (space main; key total_revenue_180_days)" in shown
    )
    assert (
        "+ audience Order Completed Last 30days (space main; key order_completed_last_30days; "
        "destinations engage-hook)" in shown
    )
    computations = ComputationStore(store)
    [audience] = computations.list("main", "audience")
    [destination] = audience.destinations
    assert (destination.destination, destination.send_identify, destination.send_track) == (
        "engage-hook",
        True,
        True,
    )
    [trait] = computations.list("main", "trait")
    assert trait.key == "total_revenue_180_days"
    exported = export_config(store)
    data = read_yaml(exported)
    assert data["audiences"] == [
        {
            "space": "main",
            "name": "Order Completed Last 30days",
            "definition": "event('Order Completed').within(30 days).count() >= 1",
            "destinations": [{"name": "engage-hook", "send_track": True}],
        }
    ]
    assert [d["source"] for d in data["destinations"]] == ["main-engage"]
    assert "main-engage" not in [s["name"] for s in data["sources"]]  # Engage's own source
    version = store.config_version()
    assert run(store, exported) == "No changes."
    assert run(store, FILE) == "No changes."
    assert store.config_version() == version


def test_edits_a_rename_with_its_key_and_a_removal(store: WorkspaceStore) -> None:
    run(store, FILE)
    edited = FILE.replace("within(30 days)", "within(7 days)").replace(
        "name: Order Completed Last 30days",
        "name: Recent buyers\n    key: order_completed_last_30days",
    )
    shown = run(store, edited)
    assert shown == "~ audience Recent buyers: name, definition"
    [audience] = ComputationStore(store).list("main", "audience")
    assert (audience.name, audience.key) == ("Recent buyers", "order_completed_last_30days")
    assert "7 days" in audience.definition
    without = (
        FILE.split("audiences:")[0]
        + "audiences: []\ndestinations:"
        + FILE.split("\ndestinations:")[1]
    )
    shown = run(store, without)
    assert shown == "- audience Recent buyers (its key is never used again in the space)"
    with pytest.raises(ConflictError, match="never reused"):
        run(store, FILE)
    assert SpaceStore(store).require("main")  # the refused apply changed nothing


@pytest.mark.parametrize(
    ("fragment", "replacement", "problem"),
    [
        ("count() >= 1", "count() >=", "audiences[0].definition: expected"),
        (
            "count() >= 1",
            "count()",
            "audiences[0].definition: an audience must end in a comparison",
        ),
        (
            "space: main\n    name: Order",
            "space: other\n    name: Order",
            "audiences[0].space: no space named 'other'",
        ),
        (
            "sum(property('revenue'))",
            "sum(property('revenue')) > 3",
            "computed_traits[0].definition: a computed trait must end in a value",
        ),
        (
            "name: Total Revenue 180 Days",
            "name: Order Completed Last 30days",
            "audiences[0]: the key 'order_completed_last_30days' is already used by "
            "computed_traits[0]",
        ),
    ],
)
def test_bad_entries_are_named(
    store: WorkspaceStore, fragment: str, replacement: str, problem: str
) -> None:
    text = FILE.replace(fragment, replacement, 1)
    assert text != FILE
    with pytest.raises(ConfigError) as refused:
        parse_config(read_yaml(text))
    assert any(p.startswith(problem) for p in refused.value.problems), refused.value.problems


LIST_FILE = """
workspace: acme
sources:
  - name: web
spaces:
  - name: main
    sources: [web]
audiences:
  - space: main
    name: Buyers
    definition: "event('Order Completed').within(30 days).count() >= 1"
    destinations:
      - name: iterable
        audience_settings: {updateExistingUsersOnly: true}
destinations:
  - name: iterable
    type: actions:iterable-lists
    source: main-engage
    settings: {apiKey: key-1}
"""


def test_a_list_destination_applies_exports_and_applies_back_unchanged(
    store: WorkspaceStore,
) -> None:
    run(store, LIST_FILE)
    [audience] = ComputationStore(store).list("main", "audience")
    [destination] = audience.destinations
    assert destination.audience_settings == {"updateExistingUsersOnly": True}
    [external] = audience.external_audiences  # the worker creates it
    assert external.external_id is None
    exported = export_config(store)
    assert read_yaml(exported)["audiences"][0]["destinations"] == [
        {"name": "iterable", "audience_settings": {"updateExistingUsersOnly": True}}
    ]
    assert run(store, exported) == "No changes."
    assert run(store, LIST_FILE) == "No changes."


def test_a_computed_trait_cannot_go_to_a_list_destination(store: WorkspaceStore) -> None:
    text = LIST_FILE.replace("audiences:", "computed_traits:").replace("count() >= 1", "count()")
    with pytest.raises(ConfigError) as refused:
        run(store, text)
    assert "list destination" in str(refused.value) and "audiences only" in str(refused.value)
