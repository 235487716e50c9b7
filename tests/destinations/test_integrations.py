"""The integrations object's rules for one destination or warehouse (Spec §2.4, §21.2)."""

from __future__ import annotations

from typing import Any

import pytest

from headwater.destinations.integrations import is_enabled, options, unknown, warehouse_enabled

MIXPANEL = ("Mixpanel",)
WEBHOOKS = ("Webhooks", "Webhook")


@pytest.mark.parametrize(
    ("names", "default", "flags", "expected"),
    [
        (MIXPANEL, True, None, True),
        (MIXPANEL, True, {}, True),
        (("Salesforce",), False, None, False),  # AC-031: off unless named
        (("Salesforce",), False, {"All": True}, True),
        (("Salesforce",), False, {"Salesforce": True}, True),
        (MIXPANEL, True, {"All": False, "Mixpanel": True}, True),  # AC-030
        (MIXPANEL, True, {"All": False}, False),
        (MIXPANEL, True, {"Intercom": False}, True),  # AC-032
        (MIXPANEL, True, {"mixpanel": False}, True),  # AC-033: case sensitive
        (MIXPANEL, True, {"Mixpanel": {"option": 1}}, True),  # AC-035: an object means on
        (MIXPANEL, True, {"All": False, "Mixpanel": {}}, True),
        (MIXPANEL, True, {"Mixpanel": "true"}, False),  # only true or an object
        (MIXPANEL, True, {"Mixpanel": 1}, False),
        (WEBHOOKS, True, {"Webhook": False}, False),  # an alias
        (WEBHOOKS, True, {"Webhooks": True, "Webhook": False}, True),  # the catalog name first
    ],
)
def test_is_enabled(
    names: tuple[str, ...], default: bool, flags: dict[str, Any] | None, expected: bool
) -> None:
    assert is_enabled(names, default, flags) is expected


@pytest.mark.parametrize(
    ("flags", "loaded"),
    [
        (None, {"wh1", "wh2"}),
        ({"All": False}, {"wh1", "wh2"}),  # AC-034: All does not reach warehouses
        ({"All": True, "Warehouses": {"all": False}}, set()),
        ({"All": False, "Warehouses": {"all": True}}, {"wh1", "wh2"}),
        ({"All": False, "Warehouses": {"warehouseIds": ["wh1"]}}, {"wh1"}),
        ({"Warehouses": {"warehouseIds": "wh1"}}, set()),  # not a list: names none
        ({"Warehouses": True}, {"wh1", "wh2"}),
    ],
)
def test_warehouse_enabled(flags: dict[str, Any] | None, loaded: set[str]) -> None:
    assert {w for w in ("wh1", "wh2") if warehouse_enabled(w, flags)} == loaded


def test_options_and_unknown_keys() -> None:
    flags = {
        "Adobe Analytics": {"marketingCloudVisitorId": "12345"},
        "All": False,
        "Warehouses": {"all": True},
        "Segment.io": True,
        "mixpanel": False,
    }
    assert options(("Adobe Analytics",), flags) == {"marketingCloudVisitorId": "12345"}
    assert options(("Mixpanel",), flags) == {}
    assert unknown(flags, frozenset({"Adobe Analytics", "Mixpanel"})) == ["mixpanel"]
