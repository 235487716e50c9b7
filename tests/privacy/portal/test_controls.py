"""Privacy controls (§9.7, A-PR-5): Inventory fields of a blocked class removed at the source,
the rest of the event intact, other sources and fields not in the Inventory untouched."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from sqlalchemy.engine import Engine

from headwater.errors import InvalidError
from headwater.privacy.controls import Controls, PrivacyControlsStage, compile_blocked, strip
from headwater.privacy.inventory import Inventory
from headwater.store.record import LogRecord
from headwater.store.workspace import WorkspaceStore
from tests.privacy.portal.conftest import source_id
from tests.support.clock import Clock


def _record(source: str, *events: dict[str, Any]) -> LogRecord:
    raws = [msgspec.Raw(msgspec.json.encode(e)) for e in events]
    return LogRecord(1, "ws", source, "2026-12-07T10:00:00.000Z", events=raws)


def _events(record: LogRecord) -> list[dict[str, Any]]:
    return [msgspec.json.decode(raw) for raw in record.events]


def test_strip_removes_the_paths_and_copies_only_what_it_changes() -> None:
    tree = compile_blocked(
        ["properties.card_number", "context.traits.ssn", "properties.items.$.cvv"]
    ).tree
    event: dict[str, Any] = {
        "type": "track",
        "properties": {"card_number": "4111", "total": 3, "items": [{"cvv": 1, "sku": "a"}, 5]},
        "context": {"traits": {"ssn": "1", "plan": "pro"}, "ip": "1.2.3.4"},
    }
    out = strip(event, tree)
    assert out == {
        "type": "track",
        "properties": {"total": 3, "items": [{"sku": "a"}, 5]},
        "context": {"traits": {"plan": "pro"}, "ip": "1.2.3.4"},
    }
    assert event["properties"]["card_number"] == "4111"  # the original is left alone
    assert strip({"type": "track", "properties": {"total": 1}}, tree) is None
    assert strip({"properties": "not an object"}, tree) is None
    # A blocked object takes its children with it.
    assert strip({"traits": {"card": {"n": 1}, "x": 1}}, compile_blocked(["traits.card"]).tree) == {
        "traits": {"x": 1}
    }


def test_a_pr_5_red_blocked_on_android_only(store: WorkspaceStore, clock: Clock) -> None:
    android, ios = source_id(store, "android"), source_id(store, "ios")
    Inventory(store).classify("properties.card_number", "RED")
    Inventory(store).classify("properties.email", "YELLOW")
    Controls(store).set(android, block_red=True, block_yellow=False)
    stage = PrivacyControlsStage(
        store.engine, config_version=store.config_version, clock=clock, refresh_interval=0
    )
    event = {
        "type": "track",
        "event": "Order Completed",
        "properties": {"card_number": "4111", "email": "a@b.c", "cvv": "123", "total": 9},
    }
    from_android, from_ios = _record(android, event), _record(ios, event)
    untouched = list(from_ios.events)
    stage.process(0, [from_android, from_ios])
    assert _events(from_android) == [
        {
            "type": "track",
            "event": "Order Completed",
            # Yellow is not blocked here; cvv is not in the Inventory, so never blocked.
            "properties": {"email": "a@b.c", "cvv": "123", "total": 9},
        }
    ]
    assert from_ios.events == untouched  # the same bytes: no control on iOS

    # A newly classified Red field is blocked from the next reload on.
    Inventory(store).classify("properties.cvv", "RED")
    again = _record(android, event)
    stage.process(0, [again])
    assert _events(again)[0]["properties"] == {"email": "a@b.c", "total": 9}

    # Reclassified Green, and Yellow now blocked too.
    Inventory(store).classify("properties.card_number", "GREEN")
    Controls(store).set(android, block_red=True, block_yellow=True)
    third = _record(android, event)
    stage.process(0, [third])
    assert _events(third)[0]["properties"] == {"card_number": "4111", "total": 9}

    # Controls off: nothing blocked.
    Controls(store).set(android, block_red=False, block_yellow=False)
    assert Controls(store).all() == {}
    fourth = _record(android, event)
    stage.process(0, [fourth])
    assert _events(fourth)[0]["properties"] == event["properties"]


def test_controls_refuse_what_is_not_a_boolean(store: WorkspaceStore) -> None:
    with pytest.raises(InvalidError):
        Controls(store).set(source_id(store, "web"), block_red="yes", block_yellow=False)


def test_inventory_classification_is_checked_and_masked_stays(
    engine: Engine, store: WorkspaceStore
) -> None:
    inventory = Inventory(store)
    for path, chosen in (
        ("email", "RED"),
        ("events.email", "RED"),
        ("properties.", "RED"),
        ("properties..a", "RED"),
        ("properties.email", "BLUE"),
        (None, "RED"),
        ("properties.x\x00", "RED"),
    ):
        with pytest.raises(InvalidError):
            inventory.classify(path, chosen)
    inventory.classify("properties.email", "yellow")
    assert inventory.classify("properties.email", "GREEN").masked  # §9.5: stays masked
    assert inventory.classify("properties.plan", "GREEN").masked is False
    assert [f.path for f in inventory.fields("green")] == ["properties.email", "properties.plan"]
