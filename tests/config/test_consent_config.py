"""``consent_categories:`` in headwater.yaml: apply, plan, export (A-CM-8's checks in the file)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, export_config, plan
from headwater.config.model import ConfigFile, parse_config, read_yaml
from headwater.errors import ConfigError
from headwater.privacy.consent import ConsentCategories
from headwater.protocols.plans import CONSENT_EVENT, PlanStore
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock

FILE = """\
workspace: acme
tracking_plans:
  - name: main
consent_categories:
  - id: ad
    name: Advertising
    destinations: [Amplitude, webhook]
  - id: Ads
    name: Other ads
    enabled: false
"""


@pytest.fixture
def store(engine: Engine, clock: Clock) -> WorkspaceStore:
    return WorkspaceStore(engine, clock=clock)


def config(text: str) -> ConfigFile:
    return parse_config(read_yaml(text))


def test_apply_export_and_no_changes_after(store: WorkspaceStore) -> None:
    apply(store, plan(store, config(FILE)))
    found = {c.category_id: c for c in ConsentCategories(store).list()}
    assert set(found) == {"ad", "Ads"}
    assert found["ad"].destinations == ("amplitude", "webhook")  # a catalog name is its type
    assert found["Ads"].enabled is False
    rules = PlanStore(store).rules("main")
    assert [(r.type, r.key) for r in rules] == [("TRACK", CONSENT_EVENT)]
    exported = export_config(store)
    assert "consent_categories:" in exported
    assert plan(store, config(exported)).changes == []
    assert plan(store, config(FILE)).changes == []  # the file need not list the consent rule
    changed = FILE.replace("    enabled: false\n", "") + "  - id: more\n    name: More\n"
    apply(store, plan(store, config(changed)))
    assert {c.category_id: c.enabled for c in ConsentCategories(store).list()} == {
        "ad": True,
        "Ads": True,
        "more": True,
    }
    apply(store, plan(store, config("workspace: acme\nconsent_categories: []\n")))
    assert ConsentCategories(store).list() == []


@pytest.mark.parametrize(
    "entry",
    [
        "{id: 1abc, name: N}",
        "{id: " + "a" * 35 + ", name: N}",
        "{id: ok, name: " + "x" * 21 + "}",
        "{id: ok, name: N, destinations: [no-such-destination]}",
    ],
)
def test_refused_in_the_file(entry: str) -> None:
    with pytest.raises(ConfigError):
        config(f"workspace: acme\nconsent_categories:\n  - {entry}\n")


def test_duplicate_ids_are_refused(store: WorkspaceStore) -> None:
    text = "workspace: acme\nconsent_categories:\n  - {id: a, name: A}\n  - {id: a, name: B}\n"
    with pytest.raises(ConfigError):
        plan(store, config(text))
