"""The mapping kit against @segment/actions-core's ``transform`` under Node: thousands of
generated mappings and payloads, the same outputs and the same refusals.

The generator leaves out what ``destinations/mapping/__init__.py`` lists as deliberate differences
(``@liquid``, inherited JavaScript properties, non-object roots).
"""

from __future__ import annotations

import random
from typing import Any

from headwater.destinations.mapping import render_mapping, validate_mapping
from headwater.errors import MappingError
from tests.oracle.client import UNDEFINED, NodeOracle

PATHS = [
    "$.event",
    "$.userId",
    "$.properties.total",
    "$.properties.email",
    "$.properties.tags",
    "$.properties.items",
    "$.properties.nested",
    "$.properties.nested.a",
    "$.missing",
    "$.context.traits.email",
    "$.properties.items[0].id",
    "properties.plan",
    "$.traits",
]


VALUES: dict[str, list[Any]] = {
    "total": [0, 1, 27.5, -3, "12", None],
    "email": ["Jo@Example.com", "", None],
    "tags": [["a", "b"], [], "x"],
    "items": [[{"id": "p1", "n": 2}, {"id": "p2"}], []],
    "nested": [{"a": 1, "b": {"c": True}}, {}],
    "plan": ["pro", "yes", "no"],
}


def payload(r: random.Random) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for key in r.sample(["total", "email", "tags", "items", "nested", "plan"], r.randint(1, 6)):
        properties[key] = r.choice(VALUES[key])
    found: dict[str, Any] = {
        "type": "track",
        "event": r.choice(["Order Completed", "yes"]),
        "userId": r.choice(["u1", None]),
        "properties": properties,
    }
    if r.random() < 0.5:
        found["context"] = {"traits": {"email": r.choice(["ctx@example.com", None])}}
    if r.random() < 0.3:
        found["traits"] = {"name": "Jo", "age": 30}
    return found


def value(r: random.Random, depth: int = 0) -> Any:
    if depth > 2:
        return {"@path": r.choice(PATHS)}
    kind = r.randint(0, 13)
    if kind <= 3:
        return {"@path": r.choice(PATHS)}
    if kind == 4:
        return {
            "@template": r.choice(
                [
                    "{{event}} by {{userId}}",
                    "{{properties.total}}",
                    "Hi {{{properties.email}}}",
                    "{{missing}}!",
                ]
            )
        }
    if kind == 5:
        test = r.choice(["exists", "blank"])
        found: dict[str, Any] = {test: {"@path": r.choice(PATHS)}, "then": value(r, depth + 1)}
        if r.random() < 0.7:
            found["else"] = value(r, depth + 1)
        return {"@if": found}
    if kind == 6:
        return {"@case": {"operator": r.choice(["lower", "upper"]), "value": value(r, depth + 1)}}
    if kind == 7:
        found = {
            "pattern": r.choice(["yes", "o", "."]),
            "replacement": r.choice(["true", "0"]),
            "value": value(r, depth + 1),
        }
        if r.random() < 0.5:
            found.update({"pattern2": "no", "replacement2": "false"})
        if r.random() < 0.3:
            found["ignorecase"] = True
        return {"@replace": found}
    if kind == 8:
        return {
            "@arrayPath": [
                "$.properties.items",
                {"id": {"@path": "$.id"}, "count": {"@path": "$.n"}},
            ]
        }
    if kind == 9:
        return {
            "@merge": {
                "objects": [{"@path": "$.properties.nested"}, {"@path": "$.traits"}, {"a": 9}],
                "direction": r.choice(["left", "right"]),
            }
        }
    if kind == 10:
        return {"@flatten": {"value": value(r, depth + 1), "separator": r.choice([".", "_"])}}
    if kind == 11:
        return {"@json": {"mode": r.choice(["encode", "decode"]), "value": value(r, depth + 1)}}
    if kind == 12:
        return {"@excludeWhenNull": value(r, depth + 1)}
    return r.choice(["literal", 5, True, None, {"nested": {"@path": r.choice(PATHS)}}])


def mapping(r: random.Random) -> dict[str, Any]:
    return {f"f{i}": value(r) for i in range(r.randint(1, 4))}


def test_generated_mappings_render_as_actions_core_does(oracle: NodeOracle) -> None:
    r = random.Random(5)
    cases: list[dict[str, Any]] = []
    ours: list[tuple[dict[str, Any], dict[str, Any], Any]] = []
    for _ in range(3000):
        m, p = mapping(r), payload(r)
        try:
            mine: Any = ("value", render_mapping(m, p))
        except MappingError:
            mine = ("error", None)
        ours.append((m, p, mine))
        cases.append({"mapping": m, "payload": p})
    different = []
    for (m, p, mine), theirs in zip(ours, oracle.call("mapping.transform", cases), strict=True):
        expected = (
            ("error", None)
            if theirs.error is not None
            else ("value", None if theirs.value is UNDEFINED else theirs.value)
        )
        if mine != expected:
            different.append((m, p, mine, expected))
    assert not different, different[:3]
    assert sum(kind == "value" for _, _, (kind, _) in ours) > 2000


def test_bad_mappings_are_refused_as_actions_core_refuses_them(oracle: NodeOracle) -> None:
    bad = [
        {"a": {"@nosuch": 1}},
        {"a": {"@path": 5}},
        {"a": {"@if": {"then": 1}}},
        {"a": {"@template": ["x"]}},
        {"a": {"@case": {"operator": "title", "value": "x"}}},
        {"a": {"@replace": {"pattern": "x" * 11, "replacement": "y", "value": "z"}}},
        {"a": {"@arrayPath": "x"}},
        {"a": {"@path": "$.a", "@template": "b"}},
        {"a": {"@flatten": {"value": "x", "separator": 1}}},
        {"a": {"@json": {"mode": "x"}}},
    ]
    good = [mapping(random.Random(n)) for n in range(200)]
    answers = oracle.call("mapping.validate", [{"mapping": m} for m in bad + good])
    for m, theirs in zip(bad + good, answers, strict=True):
        try:
            validate_mapping(m)
            mine = True
        except MappingError:
            mine = False
        assert mine == (theirs.error is None), (m, theirs)
