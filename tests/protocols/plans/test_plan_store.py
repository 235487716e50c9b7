"""The plan store on SQLite and PostgreSQL: what the Protocols stage loads, the compile cache,
the config version, deletes, forwarding targets and migration 9 on an older database."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.protocols.compiled import Rule
from headwater.protocols.plans import PlanStore, load_source_protocols
from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.store.migrations import migrate
from headwater.store.workspace import WorkspaceStore

REQUIRED_ID = {
    "type": "object",
    "properties": {"properties": {"type": "object", "required": ["id"]}},
}


@pytest.fixture
def plans(engine: Engine) -> PlanStore:
    store = WorkspaceStore(engine)
    store.ensure_workspace("acme")
    for name in ("web", "ios", "quarantine"):
        store.create_source(name)
    return PlanStore(store)


def source_id(plans: PlanStore, name: str) -> str:
    found = plans.workspace.get_source(name)
    assert found is not None
    return found.id


def test_only_sources_with_a_plan_or_settings_are_loaded(plans: PlanStore) -> None:
    plans.create("Web Plan", rules=[Rule("TRACK", "Signed Up", REQUIRED_ID)])
    plans.connect_source("Web Plan", "web")
    plans.update_schema_settings("ios", {"identify": {"allowUnplannedTraits": False}})
    loaded = load_source_protocols(plans.workspace.engine)
    assert set(loaded) == {source_id(plans, "web"), source_id(plans, "ios")}
    web = loaded[source_id(plans, "web")]
    assert (web.source_name, web.source_slug, web.plan_name) == ("web", "web", "Web Plan")
    assert web.plan is not None
    event = {"type": "track", "event": "Signed Up", "properties": {}}
    assert not web.plan.track["Signed Up"].schema(event).is_valid(event)
    ios = loaded[source_id(plans, "ios")]
    assert ios.plan is None and ios.settings.identify.allow_unplanned_properties is False


def test_compiled_plans_are_reused_until_the_plan_changes(plans: PlanStore) -> None:
    plans.create("Web Plan", rules=[Rule("TRACK", "Signed Up", REQUIRED_ID)])
    plans.connect_source("Web Plan", "web")
    web = source_id(plans, "web")
    first = load_source_protocols(plans.workspace.engine)[web].plan
    plans.workspace.create_source("another")  # a change elsewhere
    assert load_source_protocols(plans.workspace.engine)[web].plan is first
    plans.upsert_rules("Web Plan", [(Rule("TRACK", "Order Completed", {}), None)])
    second = load_source_protocols(plans.workspace.engine)[web].plan
    assert second is not first and second is not None
    assert set(second.track) == {"Signed Up", "Order Completed"}


def test_every_change_bumps_the_config_version(plans: PlanStore) -> None:
    store = plans.workspace
    steps: list[Callable[[], object]] = [
        lambda: plans.create("Web Plan"),
        lambda: plans.upsert_rules("Web Plan", [(Rule("TRACK", "A", {}), None)]),
        lambda: plans.update("Web Plan", description="d"),
        lambda: plans.connect_source("Web Plan", "web"),
        lambda: plans.update_schema_settings("web", {"track": {"allowUnplannedEvents": False}}),
        lambda: plans.disconnect_source("Web Plan", "web"),
        lambda: plans.delete("Web Plan"),
    ]
    for step in steps:
        before = store.config_version()
        step()
        assert store.config_version() == before + 1


def test_a_refused_change_changes_nothing(plans: PlanStore) -> None:
    plans.create("Web Plan", rules=[Rule("TRACK", "A", {})])
    version = plans.workspace.config_version()
    with pytest.raises(InvalidError, match="'B'"):
        plans.replace_rules("Web Plan", [Rule("TRACK", "B", {"type": 5})])
    assert [r.key for r in plans.rules("Web Plan")] == ["A"]
    assert plans.workspace.config_version() == version
    with pytest.raises(InvalidError, match="less than or equal to 200"):
        plans.replace_rules("Web Plan", [Rule("TRACK", f"E{i}", {}) for i in range(201)])


def test_libraries_are_not_connected_and_only_live_plans_sync_them(plans: PlanStore) -> None:
    plans.create("Lib", type_="RULE_LIBRARY", rules=[Rule("TRACK", "Order Completed", {})])
    with pytest.raises(ConflictError, match="library"):
        plans.connect_source("Lib", "web")
    with pytest.raises(InvalidError, match="only LIVE plans"):
        plans.create("Lib 2", type_="PROPERTY_LIBRARY", libraries=["Lib"])
    plans.create("Other", rules=[Rule("TRACK", "Order Completed", {})])
    with pytest.raises(InvalidError, match="not a library"):
        plans.create("Web Plan", libraries=["Other"])
    with pytest.raises(ConflictError, match="defines itself"):
        plans.update("Other", libraries=["Lib"])


def test_a_library_change_that_breaks_a_plan_is_refused(plans: PlanStore) -> None:
    plans.create("Lib", type_="RULE_LIBRARY", rules=[Rule("TRACK", "Order Completed", {})])
    plans.create("Web Plan", libraries=["Lib"], rules=[Rule("IDENTIFY", "traits", {})])
    # a plan has one IDENTIFY rule: the library may add one, but not to a plan that has one
    with pytest.raises(InvalidError, match="synced into tracking plan 'Web Plan'"):
        plans.upsert_rules("Lib", [(Rule("IDENTIFY", "other", {}), None)])
    assert [r.key for r in plans.rules("Lib")] == ["Order Completed"]


def test_deleting_a_library_unsyncs_it_and_deleting_a_source_disconnects_it(
    plans: PlanStore,
) -> None:
    plans.create("Lib", type_="RULE_LIBRARY", rules=[Rule("TRACK", "Order Completed", {})])
    plans.create("Web Plan", libraries=["Lib"])
    plans.connect_source("Web Plan", "web")
    plans.delete("Lib")
    assert plans.require("Web Plan").libraries == ()
    assert plans.rules("Web Plan") == []
    assert plans.changelog("Web Plan")[0].action == "library_unsynced"
    plans.workspace.delete_source("web")
    assert plans.sources("Web Plan") == []
    plans.delete("Web Plan")
    with pytest.raises(NotFoundError):
        plans.changelog("Web Plan")


def test_forwarding_targets_are_sources_and_a_deleted_target_turns_forwarding_off(
    plans: PlanStore,
) -> None:
    quarantine = source_id(plans, "quarantine")
    settings = plans.update_schema_settings(
        "web", {"forwardingBlockedEventsTo": quarantine, "forwardingViolationsTo": "quarantine"}
    )
    assert settings == {
        "forwardingBlockedEventsTo": quarantine,
        "forwardingViolationsTo": quarantine,
    }
    with pytest.raises(InvalidError, match="itself"):
        plans.update_schema_settings("web", {"forwardingViolationsTo": "web"})
    plans.workspace.delete_source("quarantine")
    loaded = load_source_protocols(plans.workspace.engine)
    web = source_id(plans, "web")
    assert web not in loaded  # nothing left that differs from the defaults


def test_migration_9_adds_schema_settings_to_an_older_database(engine: Engine) -> None:
    store = WorkspaceStore(engine)
    store.ensure_workspace("acme")
    store.create_source("web")
    with write_transaction(engine) as conn:
        for table in (
            "tracking_plan_changes",
            "tracking_plan_sources",
            "tracking_plan_libraries",
            "tracking_plan_rules",
            "tracking_plans",
        ):
            conn.execute(sa.text(f"DROP TABLE {table}"))  # fmt: skip
        conn.execute(sa.text("ALTER TABLE sources DROP COLUMN schema_settings"))
        conn.execute(
            sa.delete(schema.schema_migrations).where(schema.schema_migrations.c.version == 9)
        )
    assert migrate(engine) == [9]
    plans = PlanStore(store)
    assert plans.schema_settings("web") == {}
    plans.create("Web Plan")
    plans.connect_source("Web Plan", "web")
    assert migrate(engine) == []
