"""headwater.yaml's ``sql_traits:``: plan, apply, export and apply again (nothing changes);
what cannot change is refused with the path of the value."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, export_config, plan
from headwater.config.model import parse_config, read_yaml
from headwater.engage.sql_traits.definitions import SqlTraitStore
from headwater.errors import ConfigError, ConflictError
from headwater.store.workspace import WorkspaceStore
from headwater.warehouse.store import WarehouseStore
from tests.support.clock import Clock

BASE = """\
workspace: acme
sources:
  - name: web
    write_key: WK_web
warehouses:
  - name: dw
    type: duckdb
  - name: other
    type: duckdb
spaces:
  - name: main
    sources: [web]
"""
TRAITS = """\
sql_traits:
  - space: main
    name: Zendesk Traits
    warehouse: dw
    query: |
      select distinct u.external_id as user_id, true as has_open_ticket
      from zendesk.tickets t join zendesk.users u on u.id = t.requester_id
      where t.status in ('pending','open','hold','new')
  - space: main
    name: Account plan
    key: plan_of_account
    warehouse: other
    query: select group_id, plan from crm.accounts
    level: accounts
    schedule: {every_hours: 1}
"""


@pytest.fixture
def store(engine: Engine, clock: Clock) -> WorkspaceStore:
    return WorkspaceStore(engine, clock=clock)


def run(store: WorkspaceStore, text: str) -> str:
    changes = plan(store, parse_config(read_yaml(text)))
    apply(store, changes)
    return changes.render()


def problems(store: WorkspaceStore, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        plan(store, parse_config(read_yaml(text)))
    return caught.value.problems


def test_apply_export_apply_changes_nothing(store: WorkspaceStore) -> None:
    shown = run(store, BASE + TRAITS)
    assert (
        "+ sql trait main/Zendesk Traits (key zendesk_traits; warehouse dw; every 12 hours)"
        in shown
    )
    assert (
        "+ sql trait main/Account plan (key plan_of_account; warehouse other; level accounts; "
        "every 1 hours)" in shown
    )
    traits = {t.name: t for t in SqlTraitStore(store).list("main")}
    assert traits["Zendesk Traits"].query.startswith("select distinct u.external_id")
    assert (traits["Account plan"].key, traits["Account plan"].level) == (
        "plan_of_account",
        "accounts",
    )
    assert traits["Account plan"].every_hours == 1

    exported = export_config(store)
    written = read_yaml(exported)["sql_traits"]
    assert written == read_yaml(TRAITS)["sql_traits"][::-1]  # by space, then name
    assert plan(store, parse_config(read_yaml(exported))).render() == "No changes."


def test_edits_and_deletions(store: WorkspaceStore) -> None:
    run(store, BASE + TRAITS)
    before = SqlTraitStore(store).require("main", "Zendesk Traits")
    edited = TRAITS.replace("'new')", "'new', 'escalated')").replace(
        "schedule: {every_hours: 1}", "schedule: {every_hours: 24}"
    )
    shown = run(store, BASE + edited)
    assert shown.splitlines() == [
        "~ sql trait main/Zendesk Traits: query changed",
        "~ sql trait main/Account plan: every 1 → 24 hours",
    ]
    after = SqlTraitStore(store).require("main", "Zendesk Traits")
    assert (after.id, after.key) == (before.id, before.key)
    assert "'escalated'" in after.query

    only_one = edited[: edited.index("  - space: main\n    name: Account plan")]
    assert run(store, BASE + only_one) == "- sql trait main/Account plan"
    assert [t.name for t in SqlTraitStore(store).list("main")] == ["Zendesk Traits"]

    # Without a `sql_traits:` key the file leaves them alone; an empty list deletes them all.
    assert run(store, BASE) == "No changes."
    assert run(store, BASE + "sql_traits: []\n") == "- sql trait main/Zendesk Traits"


def test_a_space_deleted_with_its_traits(store: WorkspaceStore) -> None:
    run(store, BASE + TRAITS)
    no_space = BASE.replace("spaces:\n  - name: main\n    sources: [web]\n", "spaces: []\n")
    shown = run(store, no_space + "sql_traits: []\n")
    assert shown.splitlines() == [
        "- sql trait main/Account plan",
        "- sql trait main/Zendesk Traits",
        "- space main",
    ]
    assert SqlTraitStore(store).every() == []


def test_what_cannot_change_is_refused(store: WorkspaceStore) -> None:
    run(store, BASE + TRAITS)
    changed = TRAITS.replace("warehouse: dw", "warehouse: other").replace(
        "level: accounts", "level: users"
    )
    assert problems(store, BASE + changed) == [
        "sql_traits[0].warehouse: the trait main/Zendesk Traits has warehouse 'dw', which "
        "cannot change; give the trait another name to make a new one",
        "sql_traits[1].level: the trait main/Account plan has level 'accounts', which cannot "
        "change; give the trait another name to make a new one",
    ]
    rekeyed = TRAITS.replace("key: plan_of_account", "key: account_plan")
    assert problems(store, BASE + rekeyed)[0].startswith(
        "sql_traits[1].key: the trait main/Account plan has key 'plan_of_account'"
    )


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        (
            "sql_traits:\n  - {space: nowhere, name: a, warehouse: dw, query: select 1}\n",
            "sql_traits[0].space: no space named 'nowhere'",
        ),
        (
            "sql_traits:\n  - {space: main, name: a, warehouse: lake, query: select 1}\n",
            "sql_traits[0].warehouse: no warehouse named 'lake'",
        ),
        (
            "sql_traits:\n  - {space: main, name: a, warehouse: dw, query: select 1}\n"
            "  - {space: main, name: a, warehouse: dw, query: select 2}\n",
            "sql_traits[1]: name 'a' is already used in space 'main' by sql_traits[0]",
        ),
        (
            "sql_traits:\n  - {space: main, name: A b, warehouse: dw, query: select 1}\n"
            "  - {space: main, name: a-b, warehouse: dw, query: select 2}\n",
            "sql_traits[1]: key 'a_b' is already used in space 'main' by sql_traits[0]",
        ),
        (
            "sql_traits:\n  - {space: main, name: a, warehouse: dw, query: select 1,"
            " schedule: {every_hours: 0}}\n",
            "sql_traits[0].schedule.every_hours: input should be greater than or equal to 1",
        ),
        (
            "sql_traits:\n  - {space: main, name: a, key: email, warehouse: dw, query: x}\n",
            "sql_traits[0].key: 'email' is an identifier column's name",
        ),
        (
            "sql_traits:\n  - {space: main, name: '***', warehouse: dw, query: x}\n",
            "sql_traits[0]: '***' gives an empty key",
        ),
        (
            "sql_traits:\n  - {space: main, name: a, warehouse: dw, query: '  '}\n",
            "sql_traits[0].query: must not be empty",
        ),
        (
            "sql_traits:\n  - {space: main, name: a, warehouse: dw, query: x, level: teams}\n",
            "sql_traits[0].level: input should be 'users' or 'accounts'",
        ),
        (
            "audiences:\n  - space: main\n    name: Big Spenders\n"
            "    definition: \"event('Order Completed').count() >= 1\"\n"
            "sql_traits:\n  - {space: main, name: big spenders, warehouse: dw, query: x}\n",
            "sql_traits[0]: key 'big_spenders' is already used in space 'main' by audiences[0]",
        ),
        ("sql_traits:\n", "sql_traits: is empty; write `sql_traits: []`"),
        (
            "sql_traits:\n"
            + "".join(
                f"  - {{space: main, name: t{i}, warehouse: dw, query: x}}\n" for i in range(26)
            ),
            "sql_traits: space 'main' has 26 SQL traits; a space may have at most 25",
        ),
    ],
)
def test_refused_files(store: WorkspaceStore, section: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(read_yaml(BASE + section))
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_references_to_stored_spaces_and_warehouses(store: WorkspaceStore) -> None:
    run(store, BASE)
    alone = "workspace: acme\n" + TRAITS.replace(
        "space: main\n    name: Account", "space: x\n    name: Account"
    )
    assert problems(store, alone) == ["sql_traits[1].space: no space named 'x'"]
    assert "+ sql trait main/Zendesk Traits" in run(
        store, "workspace: acme\n" + TRAITS[: TRAITS.index("  - space: main\n    name: Account")]
    )


def test_a_warehouse_is_not_deleted_under_its_sql_traits(store: WorkspaceStore) -> None:
    run(store, BASE + TRAITS)
    kept_traits = BASE.replace("  - name: other\n    type: duckdb\n", "")  # sql_traits: unmanaged
    with pytest.raises(ConflictError) as refused:
        run(store, kept_traits)
    assert "main/plan_of_account" in refused.value.message
    assert {w.name for w in WarehouseStore(store).list()} == {"dw", "other"}  # nothing applied
    # Dropping the warehouse with its traits (or their space) works: the traits go first.
    shown = run(
        store, kept_traits.replace("spaces:\n  - name: main\n    sources: [web]\n", "spaces: []\n")
    )
    assert shown.index("- space main") < shown.index("- warehouse other")
    assert {w.name for w in WarehouseStore(store).list()} == {"dw"}
