"""Triggers against Segment's @segment/destination-subscriptions under Node: same parse trees,
same matches, on thousands of generated triggers and events.

Triggers the package parses into a tree with a hole (an empty ``()``, a ``match`` on ``type``)
make its ``validate`` throw on events; they are refused here when saved, and the comparison
counts the two answers as the same.
"""

from __future__ import annotations

import random
from typing import Any

from headwater.destinations.trigger import parse_trigger, to_condition
from headwater.errors import TriggerError
from tests.oracle.client import NodeOracle

FIELDS = [
    "type",
    "event",
    "name",
    "userId",
    "properties.total",
    "properties.plan",
    "properties.coupon",
    "properties.flag",
    "properties.items.0.id",
    "traits.email",
    "context.app.name",
    "context.traits.username",
    "properties.missing",
]
TEXT = ["track", "identify", "Order Completed", "Button Clicked", "pro", "", "10", "abc"]


def condition(r: random.Random) -> str:
    field = r.choice(FIELDS)
    kind = r.randint(0, 5)
    if kind == 0:
        return f'{r.choice(["contains", "!contains"])}({field}, "{r.choice(TEXT)}")'
    if kind == 1:
        return f'{r.choice(["match", "!match"])}({field}, "{r.choice(["Order*", "*ed", "pro"])}")'
    op = r.choice(["=", "!=", "<", "<=", ">", ">="])
    value = r.choice(
        [f'"{r.choice(TEXT)}"', str(r.choice([0, 1, 9.5, 10, -2])), "true", "false", "null"]
    )
    return f"{field} {op} {value}"


def trigger(r: random.Random) -> str:
    parts = [condition(r) for _ in range(r.randint(1, 4))]
    if len(parts) > 2 and r.random() < 0.3:
        inner = f" {r.choice(['and', 'or'])} ".join(parts[1:])
        return f"{parts[0]} {r.choice(['and', 'or'])} ({inner})"
    joiners = [r.choice(["and", "or"]) for _ in parts[1:]]
    text = parts[0]
    for joiner, part in zip(joiners, parts[1:], strict=True):
        text += f" {joiner} {part}"
    return text


VALUES: dict[str, list[Any]] = {
    "total": [0, 1, 9.5, 10, "10", None],
    "plan": ["pro", "Pro", "", None],
    "coupon": ["X", None, 0],
    "flag": [True, False, "true"],
    "items": [[{"id": "abc"}], [], "abc"],
}


def event(r: random.Random) -> dict[str, Any]:
    found: dict[str, Any] = {
        "type": r.choice(["track", "identify", "page"]),
        "event": r.choice(TEXT[2:5]),
        "userId": r.choice(["u1", "10", None]),
    }
    properties: dict[str, Any] = {}
    for key in r.sample(["total", "plan", "coupon", "flag", "items"], r.randint(0, 5)):
        properties[key] = r.choice(VALUES[key])
    found["properties"] = properties
    if r.random() < 0.5:
        found["name"] = r.choice(["Home", "pro"])
    if r.random() < 0.5:
        found["traits"] = {"email": r.choice(["a@b.c", ""])}
    if r.random() < 0.6:
        found["context"] = {"app": {"name": "Shop"}, "traits": {"username": "testing-123"}}
    return found


def _usable(condition: Any) -> bool:
    """No null child anywhere: the package can evaluate the tree."""
    children = condition.get("children", []) if isinstance(condition, dict) else []
    return condition is not None and all(_usable(c) for c in children)


def test_generated_triggers_parse_and_match_as_segment_does(oracle: NodeOracle) -> None:
    r = random.Random(11)
    parse_cases: list[dict[str, Any]] = []
    match_cases: list[dict[str, Any]] = []
    ours_parsed: list[tuple[str, Any]] = []
    ours_matched: list[tuple[str, dict[str, Any], bool]] = []
    for _ in range(2000):
        text = trigger(r)
        try:
            parsed = parse_trigger(text)
        except TriggerError:
            ours_parsed.append((text, None))
            parse_cases.append({"trigger": text})
            continue
        ours_parsed.append((text, to_condition(parsed)))
        parse_cases.append({"trigger": text})
        for _ in range(3):
            e = event(r)
            match_cases.append({"trigger": text, "event": e})
            ours_matched.append((text, e, parsed.matches(e)))
    for (text, mine), theirs in zip(
        ours_parsed, oracle.call("subscriptions.parse", parse_cases), strict=True
    ):
        theirs_ok = (
            theirs.error is None
            and isinstance(theirs.value, dict)
            and ("error" not in theirs.value)
            and _usable(theirs.value)
        )
        assert (mine is not None) == theirs_ok, (text, mine, theirs)
        if mine is not None:
            assert mine == theirs.value, text
    answers = oracle.call("subscriptions.validate", match_cases)
    different = [
        (t, e, mine, theirs)
        for (t, e, mine), theirs in zip(ours_matched, answers, strict=True)
        if theirs.error is not None or theirs.value is not mine
    ]
    assert not different, different[:3]
    assert 0.1 < sum(m for _, _, m in ours_matched) / len(ours_matched) < 0.9
