"""Unify's ingestion drops (§2.6): A-UE-11."""

from __future__ import annotations

from typing import Any

import pytest

from headwater import reasons
from headwater.unify.ingestion import drop_reason


def _many(n: int) -> dict[str, int]:
    return {f"k{i}": i for i in range(n)}


BASE: dict[str, Any] = {"type": "track", "event": "E", "userId": "u", "messageId": "m"}


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({**BASE, "messageId": "m" * 101}, reasons.UNIFY_MESSAGE_ID_TOO_LONG),
        ({**BASE, "type": "group", "groupId": "g" * 501}, reasons.UNIFY_GROUP_ID_TOO_LONG),
        ({**BASE, "type": "group", "groupId": ""}, reasons.UNIFY_GROUP_ID_EMPTY),
        ({**BASE, "type": "group"}, reasons.UNIFY_GROUP_ID_EMPTY),
        ({**BASE, "context": {"groupId": ""}}, reasons.UNIFY_GROUP_ID_EMPTY),
        ({**BASE, "context": {"groupId": "g" * 501}}, reasons.UNIFY_GROUP_ID_TOO_LONG),
        ({**BASE, "properties": _many(301)}, reasons.UNIFY_TOO_MANY_PROPERTIES),
        ({**BASE, "type": "page", "properties": _many(301)}, reasons.UNIFY_TOO_MANY_PROPERTIES),
        ({**BASE, "type": "identify", "traits": _many(300)}, reasons.UNIFY_TOO_MANY_TRAITS),
        (
            {**BASE, "type": "group", "groupId": "g", "traits": _many(301)},
            reasons.UNIFY_TOO_MANY_TRAITS,
        ),
    ],
)
def test_a11_dropped_before_resolution(event: dict[str, Any], reason: str) -> None:
    """A-UE-11: messageId of 101 characters, groupId of 501, an empty groupId (group call) or
    context.groupId (track), 301 properties, an identify with 300 traits."""
    assert drop_reason(event) == reason


@pytest.mark.parametrize(
    "event",
    [
        {**BASE, "messageId": "m" * 100},
        {**BASE, "type": "group", "groupId": "g" * 500},
        {**BASE, "context": {"groupId": "g" * 500}},
        {**BASE, "context": {"groupId": None}},
        {**BASE, "properties": _many(300)},
        {**BASE, "type": "identify", "traits": _many(299)},
        {**BASE, "type": "group", "groupId": "g", "traits": _many(300)},
        {**BASE, "context": {"traits": _many(400)}},
        {**BASE, "properties": "not an object"},
    ],
)
def test_a11_the_limits_themselves_pass(event: dict[str, Any]) -> None:
    assert drop_reason(event) is None
