"""headwater.yaml's ``identity:`` under a space: identifiers with limits, periods, priorities,
blocked values and custom keys, or ``import_from`` another space; left out, Segment's
defaults. Apply, export, apply again: nothing changes (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, export_config, plan
from headwater.config.model import parse_config, read_yaml, space_identities
from headwater.errors import ConfigError
from headwater.store.workspace import WorkspaceStore
from headwater.unify.settings import (
    BlockedValue,
    IdentifierSetting,
    IdentitySettings,
)
from headwater.unify.spaces import SpaceStore
from tests.support.clock import Clock

FILE = """\
workspace: acme
spaces:
  - name: prod
    identity:
      identifiers:
        - {type: user_id, limit: 1, priority: 1, blocked: [{value: "-1"}, {value: "^[0-]*$", regex: true}]}
        - {type: email, limit: 1, priority: 2}
        - {type: anonymous_id, limit: 5, period: weekly}
        - {type: shopify_id, key: shopifyId, limit: 1}
  - name: dev
    identity:
      import_from: prod
  - name: plain
"""

PROD = IdentitySettings(
    identifiers=(
        IdentifierSetting(
            type="user_id",
            limit=1,
            priority=1,
            blocked=(BlockedValue(value="-1"), BlockedValue(value="^[0-]*$", regex=True)),
        ),
        IdentifierSetting(type="email", limit=1, priority=2),
        IdentifierSetting(type="anonymous_id", limit=5, period="weekly"),
        IdentifierSetting(type="shopify_id", key="shopifyId", limit=1),
    )
)


@pytest.fixture
def store(engine: Engine, clock: Clock) -> WorkspaceStore:
    return WorkspaceStore(engine, clock=clock)


def run(store: WorkspaceStore, text: str) -> str:
    changes = plan(store, parse_config(read_yaml(text)))
    apply(store, changes)
    return changes.render()


def test_apply_export_apply_changes_nothing(store: WorkspaceStore) -> None:
    shown = run(store, FILE)
    assert "+ space prod (no sources; identifiers user_id, email, anonymous_id, shopify_id)" in (
        shown
    )
    assert "+ space plain (no sources)" in shown
    spaces = SpaceStore(store)
    assert spaces.require("prod").identity == PROD
    assert spaces.require("dev").identity == PROD  # imported
    assert spaces.require("plain").identity == IdentitySettings()

    exported = export_config(store)
    written = {s["name"]: s for s in read_yaml(exported)["spaces"]}
    assert "identity" not in written["plain"]  # Segment's defaults are not written
    # What differs from each type's preset only; an import is written as its copy.
    identifiers = [
        {
            "type": "user_id",
            "priority": 1,
            "blocked": [{"value": "-1"}, {"value": "^[0-]*$", "regex": True}],
        },
        {"type": "email", "limit": 1, "priority": 2},
        {"type": "anonymous_id", "period": "weekly"},
        {"type": "shopify_id", "limit": 1, "key": "shopifyId"},
    ]
    assert written["prod"]["identity"] == {"identifiers": identifiers}
    assert written["dev"]["identity"] == {"identifiers": identifiers}
    version = store.config_version()
    assert run(store, exported) == "No changes."
    assert run(store, FILE) == "No changes."
    assert export_config(store) == exported
    assert store.config_version() == version


def test_changes_are_planned_and_shown(store: WorkspaceStore) -> None:
    run(store, FILE)
    changed = (
        FILE.replace("{type: email, limit: 1, priority: 2}", "{type: email, priority: 3}")
        .replace("{type: shopify_id, key: shopifyId, limit: 1}", "{type: phone}")
        .replace('[{value: "-1"}, {value: "^[0-]*$", regex: true}]', '[{value: "-1"}]')
    )
    shown = run(store, changed)
    assert shown.splitlines() == [
        "~ space prod: identity + phone; - shopify_id; user_id: blocked [-1, ^[0-]*$ (regex)]"
        " → [-1]; email: limit 1 → 5, priority 2 → 3",
        "~ space dev: identity + phone; - shopify_id; user_id: blocked [-1, ^[0-]*$ (regex)]"
        " → [-1]; email: limit 1 → 5, priority 2 → 3",
    ]
    prod = SpaceStore(store).require("prod").identity
    email, phone = prod.get("email"), prod.get("phone")
    assert email is not None and (email.limit, email.priority) == (5, 3)
    assert phone is not None and phone.custom and phone.key is None
    # identity left out: back to the defaults; a list in another order is a change too
    reordered = FILE.replace("        - {type: email, limit: 1, priority: 2}\n", "").replace(
        "        - {type: shopify_id, key: shopifyId, limit: 1}\n",
        "        - {type: shopify_id, key: shopifyId, limit: 1}\n"
        "        - {type: email, limit: 1, priority: 2}\n",
    )
    run(store, FILE)
    assert run(store, reordered).splitlines() == [
        "~ space prod: identity identifiers reordered",
        "~ space dev: identity identifiers reordered",
    ]
    defaults = FILE.split("    identity:\n")[0] + "  - name: dev\n  - name: plain\n"
    assert run(store, defaults).splitlines() == [
        "~ space prod: identity back to Segment's defaults",
        "~ space dev: identity back to Segment's defaults",
    ]
    assert SpaceStore(store).require("prod").identity == IdentitySettings()


@pytest.mark.parametrize(
    ("fragment", "replacement", "problem"),
    [
        (
            "{type: anonymous_id, limit: 5, period: weekly}",
            "{type: anonymous_id, limit: 0, period: weekly}",
            "spaces[0].identity.identifiers[2].limit: identifier anonymous_id: limit must be 1 "
            "or more",
        ),
        (
            "{type: anonymous_id, limit: 5, period: weekly}",
            "{type: anonymous_id, limit: 5, period: daily}",
            "spaces[0].identity.identifiers[2].period: input should be 'ever', 'weekly', "
            "'monthly' or 'annually'",
        ),
        (
            "{type: anonymous_id, limit: 5, period: weekly}",
            "{type: anonymous_id, limits: 5}",
            "spaces[0].identity.identifiers[2].limits: unknown key 'limits' (expected one of: "
            "type, limit, period, priority, blocked, key, collection)",
        ),
        (
            "{type: shopify_id, key: shopifyId, limit: 1}",
            "{type: email}",
            "spaces[0].identity.identifiers[3].type: identifier email is configured twice",
        ),
        (
            "{type: email, limit: 1, priority: 2}",
            "{type: email, limit: 1, priority: 1}",
            "spaces[0].identity.identifiers[1].priority: identifiers user_id and email share "
            "priority 1",
        ),
        (
            '{value: "^[0-]*$", regex: true}',
            '{value: "^[0-*$", regex: true}',
            "spaces[0].identity.identifiers[0].blocked[1].value: blocked pattern '^[0-*$': not "
            "a regular expression",
        ),
        (
            "{type: shopify_id, key: shopifyId, limit: 1}",
            "{type: Shopify, limit: 1}",
            "spaces[0].identity.identifiers[3].type: identifier type 'Shopify': lowercase",
        ),
        (
            "{type: email, limit: 1, priority: 2}",
            "{type: email, key: mail}",
            "spaces[0].identity.identifiers[1].key: identifier email: a key is for custom "
            "identifiers only",
        ),
        (
            "{type: email, limit: 1, priority: 2}",
            "{type: group_id, collection: users}",
            "spaces[0].identity.identifiers[1].collection: identifier group_id belongs to the "
            "accounts collection",
        ),
        (
            "      import_from: prod\n",
            "      import_from: prod\n      identifiers: [{type: user_id}]\n",
            "spaces[1].identity: give identifiers or import_from, not both",
        ),
        (
            "import_from: prod",
            "import_from: staging",
            "spaces[1].identity.import_from: no space named 'staging'",
        ),
        (
            "import_from: prod",
            "import_from: dev",
            "spaces[1].identity.import_from: the spaces import from each other in a circle "
            "(dev → dev)",
        ),
        (
            "  - name: plain\n",
            "  - name: plain\n    identity: {identifiers: []}\n",
            "spaces[2].identity.identifiers: a space needs at least one identifier",
        ),
    ],
)
def test_bad_identity_entries_are_named(fragment: str, replacement: str, problem: str) -> None:
    text = FILE.replace(fragment, replacement)
    assert text != FILE
    with pytest.raises(ConfigError) as exc:
        parse_config(read_yaml(text))
    assert any(problem in p for p in exc.value.problems), exc.value.problems


def test_imports_follow_a_chain_and_refuse_a_circle() -> None:
    chain = FILE + "  - name: qa\n    identity: {import_from: dev}\n"
    config = parse_config(read_yaml(chain))
    assert config.spaces is not None
    found, problems = space_identities(config.spaces)
    assert problems == [] and found["qa"] == PROD and found["plain"] == IdentitySettings()
    circle = chain.replace("import_from: prod", "import_from: qa")
    with pytest.raises(ConfigError) as exc:
        parse_config(read_yaml(circle))
    assert "(dev → qa → dev)" in exc.value.problems[0]
