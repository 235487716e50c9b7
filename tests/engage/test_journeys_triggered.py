"""Event-triggered journeys (§16) through the real identity stage and Engage stage, on SQLite
and PostgreSQL: Hold Until with "send back", journey context, parallel instances by a unique
identifier, the payload's mapped traits, and the limits (A-UE-54, A-UE-55, A-UE-56, A-UE-57)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from headwater.engage.journeys.model import parse
from headwater.errors import ConflictError, InvalidError
from tests.engage.journey_world import DAY, HOOK, HOUR, MINUTE, World
from tests.support.clock import Clock


@pytest.fixture
def world(engine: Engine, tmp_path: Path, clock: Clock) -> World:
    return World(engine, tmp_path, clock)


def _send(event: str, traits: list[str] | None = None) -> dict[str, Any]:
    return {"destinations": [{"name": HOOK}], "event": event, "traits": traits or []}


CART = {
    "type": "event_triggered",
    "entry": {"event": "Cart_Modified", "unique_id": "cart_id"},
    "steps": [
        {
            "name": "Wait for purchase",
            "hold_until": {
                "branches": [
                    {
                        "name": "purchased",
                        "event": "Order_Purchased",
                        "steps": [{"name": "Thank you", "send": _send("Thanks")}],
                    },
                    {"name": "user updates cart", "event": "Cart_Modified", "send_back": True},
                ],
                "timeout": {"hours": 2},
                "timeout_steps": [
                    {"name": "Reminder", "send": _send("Cart Reminder", ["first_name", "plan"])}
                ],
            },
        }
    ],
}


def test_a54_send_back_restarts_the_hold_and_the_payload_carries_the_journey_context(
    world: World,
) -> None:
    w = world
    journey = w.journey("Cart Abandonment", CART)
    w.send(event="Cart_Modified", userId="u1", properties={"cart_id": "c1", "items": 1})
    assert w.steps(journey, "u1", "c1") == ["wait_for_purchase"]
    w.later(HOUR)
    w.send(event="Cart_Modified", userId="u1", properties={"cart_id": "c1", "items": 2})
    w.later(HOUR + 30 * MINUTE)  # 2.5 hours after entry, 1.5 after the update
    assert w.messages() == []
    assert w.steps(journey, "u1", "c1") == ["wait_for_purchase"]
    w.later(30 * MINUTE)  # 2 hours after the update: the hold's maximum
    assert w.steps(journey, "u1", "c1") == [
        "wait_for_purchase",
        "wait_for_purchase__timeout",
        "reminder",
    ]
    (reminder,) = w.messages()
    assert reminder["event"] == "Cart Reminder" and reminder["userId"] == "u1"
    context = reminder["properties"]["journey_context"]
    assert context == {
        "Cart_Modified": {"cart_id": "c1", "items": 1},
        "Cart_Modified - user updates cart": {"cart_id": "c1", "items": 2},
    }
    assert reminder["properties"]["journey_metadata"]["journey_id"] == journey.id
    key = journey.latest.definition["steps"][0]["hold_until"]["timeout_steps"][0]["key"]
    assert reminder["context"]["personas"] == {
        "computation_class": "journey_step",
        "computation_id": key,
        "computation_key": key,
        "namespace": w.space.id,
        "space_id": w.space.id,
    }
    assert reminder["integrations"] == {"All": False, HOOK: True}
    # A new cart later is a new run of the journey; a purchase ends its hold at once.
    w.send(event="Cart_Modified", userId="u1", properties={"cart_id": "c1", "items": 3})
    w.send(event="Order_Purchased", userId="u1", properties={"cart_id": "c1"})
    (thanks,) = w.messages()
    assert thanks["event"] == "Thanks"
    assert thanks["properties"]["journey_context"] == {
        "Cart_Modified": {"cart_id": "c1", "items": 3},
        "Order_Purchased - purchased": {"cart_id": "c1"},
    }
    assert (
        thanks["properties"]["journey_metadata"]["epoch_id"]
        != (reminder["properties"]["journey_metadata"]["epoch_id"])
    )


def test_a55_instances_run_in_parallel_and_events_advance_only_their_own(world: World) -> None:
    w = world
    journey = w.journey(
        "Applications",
        {
            "type": "event_triggered",
            "entry": {"event": "application_started", "unique_id": "application_id"},
            "steps": [
                {
                    "name": "Wait",
                    "hold_until": {
                        "branches": [
                            {
                                "name": "completed",
                                "event": "application_completed",
                                "steps": [{"name": "Approve", "send": _send("Approve")}],
                            }
                        ],
                        "timeout": {"days": 1},
                    },
                }
            ],
        },
    )
    w.send(event="application_started", userId="u1", properties={"application_id": 1})
    w.send(event="application_started", userId="u1", properties={"application_id": 2})
    w.send(event="application_completed", userId="u1", properties={"application_id": 1})
    assert w.steps(journey, "u1", "1") == ["wait", "wait__completed", "approve"]
    assert w.steps(journey, "u1", "2") == ["wait"]
    (sent,) = w.messages()
    assert sent["properties"]["journey_context"]["application_started"] == {"application_id": 1}
    w.later(DAY)
    assert w.steps(journey, "u1", "2") == ["wait", "wait__timeout"]
    assert w.messages() == []  # the timeout leads nowhere


def test_a56_a_mapped_trait_the_profile_lacks_is_null_and_a_missing_property_absent(
    world: World,
) -> None:
    w = world
    w.journey("Cart Abandonment", CART)
    w.send("identify", userId="u1", traits={"first_name": "Ann"})
    w.send(event="Cart_Modified", userId="u1", properties={"cart_id": "c9"})
    w.later(2 * HOUR)
    (reminder,) = w.messages()
    properties = reminder["properties"]
    assert properties["first_name"] == "Ann"
    assert "plan" in properties and properties["plan"] is None  # mapped, missing: undefined
    assert properties["journey_context"] == {"Cart_Modified": {"cart_id": "c9"}}
    assert "items" not in properties["journey_context"]["Cart_Modified"]


def test_entry_once_and_filters_and_the_unique_identifier(world: World) -> None:
    w = world
    w.audience("Members", "event('Join').count() >= 1")
    once = w.journey(
        "Welcome",
        {
            "type": "event_triggered",
            "entry": {
                "event": "Signed Up",
                "reentry": "once",
                "where": {"plan": ["pro", "team"]},
                "audience": "members",
            },
            "steps": [{"name": "Hello", "send": _send("Hello")}],
        },
    )
    w.send(event="Signed Up", userId="u1", properties={"plan": "pro"})  # not a member
    w.send(event="Join", userId="u1")
    w.send(event="Signed Up", userId="u1", properties={"plan": "free"})  # filtered out
    assert w.messages() == []
    w.send(event="Signed Up", userId="u1", properties={"plan": "team"})
    w.send(event="Signed Up", userId="u1", properties={"plan": "pro"})  # once only
    assert [m["event"] for m in w.messages()] == ["Hello"]
    assert w.steps(once, "u1") == ["hello"]
    w.journey("Carts", CART)
    w.send(event="Cart_Modified", userId="u2", properties={"items": 1})  # no cart_id
    w.later(3 * HOUR)
    assert w.messages() == []


def test_a57_hold_until_limits_are_refused_naming_the_part() -> None:
    def hold(timeout: dict[str, int], branches: int = 1) -> dict[str, Any]:
        return {
            "type": "event_triggered",
            "entry": {"event": "E", "unique_id": "id"},
            "steps": [
                {
                    "name": "Hold",
                    "hold_until": {
                        "branches": [
                            {"name": f"b{n}", "event": f"Event {n}"} for n in range(branches)
                        ],
                        "timeout": timeout,
                    },
                }
            ],
        }

    with pytest.raises(InvalidError) as short:
        parse(hold({"minutes": 4}))
    assert short.value.field == "definition.steps[0].hold_until.timeout.minutes"
    assert "5 minutes to 182 days" in short.value.message
    with pytest.raises(InvalidError) as long:
        parse(hold({"days": 183}))
    assert long.value.field == "definition.steps[0].hold_until.timeout.days"
    with pytest.raises(InvalidError) as many:
        parse(hold({"hours": 2}, branches=5))
    assert many.value.field == "definition.steps[0].hold_until.branches"
    assert "1 to 4" in many.value.message
    assert parse(hold({"minutes": 5}, branches=4)).steps["hold"].seconds == 300
    assert parse(hold({"days": 182})).steps["hold"].seconds == 182 * 86_400


def test_a_published_event_triggered_journey_cannot_be_edited(world: World) -> None:
    w = world
    w.journey("Carts", CART)
    with pytest.raises(ConflictError):
        w.journeys.update("main", "carts", definition={**CART, "steps": []})
    assert w.journeys.update("main", "carts", name="Carts 2").name == "Carts 2"


def test_an_ended_instance_is_forgotten_after_90_days_and_send_back_is_bounded(
    world: World,
) -> None:
    w = world
    journey = w.journey("Carts", CART)
    w.send(event="Cart_Modified", userId="u1", properties={"cart_id": "c1"})
    w.send(event="Order_Purchased", userId="u1", properties={"cart_id": "c1"})
    assert w.steps(journey, "u1", "c1")[-1] == "thank_you"
    w.later(89 * DAY)
    assert w.steps(journey, "u1", "c1") != []
    w.later(DAY)
    assert w.steps(journey, "u1", "c1") == []
    w.send(event="Cart_Modified", userId="u1", properties={"cart_id": "c2"})
    update: dict[str, Any] = {
        "event": "Cart_Modified",
        "userId": "u1",
        "properties": {"cart_id": "c2"},
    }
    w.send_many([update] * 100)  # 100 loops back to the hold's start
    w.later(HOUR)
    w.send(**update)  # no loop left: the hold runs on from the 100th
    w.later(HOUR)
    assert w.steps(journey, "u1", "c2")[-1] == "reminder"
