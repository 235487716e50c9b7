"""FQL against Segment's browser matcher (@segment/tsub under Node): same events, same answers.

Thousands of generated statements, compiled to the browser's IR by ``fql.ir`` and evaluated by
both. The generator stays inside the ground where the reference and the matcher agree; each
place they differ is in docs/decisions.md ("Where the docs and the browser matcher differ"):
no null values in events (a missing path is null here, undefined there), ``length`` only of
ASCII text that is present, ``lowercase`` only of text that is present (its null would meet
the matcher's undefined), ``in`` only against list literals, function calls only inside
comparisons, and no ``typeof``.
"""

from __future__ import annotations

import random
from typing import Any

import msgspec

from headwater.destinations.filters import check_filters, compile_filters
from headwater.fql import parse
from tests.oracle.client import NodeOracle

WORDS = [
    "track",
    "identify",
    "Order Completed",
    "Button Clicked",
    "pro",
    "Pro",
    "a*b",
    "ab",
    "abc",
    "abcd",
    "a.b",
    "x y",
    "",
    "1.0",
    "2.1.3",
    "@segment.com",
    "jo@segment.com",
]


class Generator:
    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def event(self) -> dict[str, Any]:
        r = self.r
        properties: dict[str, Any] = {}
        for key in r.sample(
            ["plan", "total", "count", "tags", "flag", "email", "nested"], r.randint(2, 6)
        ):
            properties[key] = self.value(key)
        return {
            "type": r.choice(["track", "identify", "page"]),
            "event": r.choice(WORDS[:6]),
            "userId": r.choice(["u1", "user-22", "ab"]),
            "properties": properties,
            "context": {
                "library": {
                    "name": r.choice(["analytics.js", "analytics-python"]),
                    "version": r.choice(["1.0", "2.1.3", "10.2"]),
                }
            },
        }

    def value(self, key: str) -> Any:
        r = self.r
        if key == "tags":
            return r.sample(WORDS, r.randint(0, 3))
        if key == "nested":
            return {"a": r.randint(0, 3), "b": r.choice(WORDS)}
        if key == "flag":
            return r.choice([True, False])
        if key in ("total", "count"):
            return r.choice([0, 1, 2.5, -3, 10, 100])
        return r.choice(WORDS)

    def path(self) -> str:
        return self.r.choice(
            [
                "type",
                "event",
                "userId",
                "properties.plan",
                "properties.total",
                "properties.count",
                "properties.flag",
                "properties.email",
                "properties.tags",
                "properties.nested",
                "properties.nested.a",
                "properties.nested.b",
                "properties.missing",
                "context.library.name",
                "context.library.version",
                "missing.deep.path",
            ]
        )

    def literal(self) -> str:
        r = self.r
        kind = r.randint(0, 3)
        if kind == 0:
            return "'" + r.choice(WORDS).replace("'", "\\'") + "'"
        if kind == 1:
            return str(r.choice([0, 1, 2.5, -3, 10, 100]))
        if kind == 2:
            return r.choice(["true", "false"])
        return r.choice(["1", "'1'", "2.5"])

    def operand(self) -> str:
        r = self.r.random()
        if r < 0.5:
            return self.path()
        if r < 0.85:
            return self.literal()
        return self.call()

    def call(self) -> str:
        r = self.r
        name = r.choice(["lowercase", "length_text", "length_list"])
        if name == "lowercase":  # of text that is present: a null would meet an undefined
            return f"lowercase({r.choice(['event', 'userId', 'type', 'context.library.name'])})"
        if name == "length_text":
            return f"length({r.choice(['event', 'userId', 'type', 'context.library.name'])})"
        return "length(properties.tags)" if r.random() < 0.5 else "length('abc')"

    def condition(self) -> str:
        r = self.r
        kind = r.randint(0, 5)
        if kind <= 1:
            op = r.choice(["=", "!=", "<", "<=", ">", ">="])
            return f"{self.operand()} {op} {self.operand()}"
        if kind == 2:
            items = ", ".join(self.literal() for _ in range(r.randint(0, 3)))
            return f"{self.path()} in [{items}]"
        if kind == 3:
            return f"contains({self.path()}, '{r.choice(['a', 'segment', 'js', 'Order', ''])}')"
        if kind == 4:
            pattern = r.choice(
                ["a*", "*d", "a?c", "ab[a-c]*", "*.js", "Order *", "\\*", "[!a]*", "[^a]*", "2.*"]
            )
            return f"match({self.path()}, '{pattern.replace(chr(92), chr(92) * 2)}')"
        return r.choice(["properties.flag", "!properties.flag", "true", "false"])

    def expression(self, depth: int = 0) -> str:
        r = self.r
        if depth > 2 or r.random() < 0.4:
            return self.condition()
        if r.random() < 0.15:
            return f"!({self.expression(depth + 1)})"
        op = r.choice(["and", "or"])
        parts = [self.expression(depth + 1) for _ in range(r.randint(2, 3))]
        return "(" + f" {op} ".join(parts) + ")"


def test_generated_statements_answer_as_the_browser_does(oracle: NodeOracle) -> None:
    gen = Generator(20261123)
    cases = []
    ours = []
    for _ in range(3000):
        statement, event = gen.expression(), gen.event()
        expression = parse(statement)
        ir = expression.to_ir()
        cases.append(
            {"event": event, "matcher": {"type": "fql", "ir": msgspec.json.encode(ir).decode()}}
        )
        ours.append((statement, event, expression.matches(event)))
    answers = oracle.call("tsub.matches", cases)
    different = [
        (s, e, mine, theirs.value)
        for (s, e, mine), theirs in zip(ours, answers, strict=True)
        if theirs.error is not None or theirs.value is not mine
    ]
    assert not different, msgspec.json.encode(different[:5]).decode()
    assert 0.2 < sum(m for _, _, m in ours) / len(ours) < 0.8  # both answers well represented


def test_filter_actions_change_events_as_the_browser_does(oracle: NodeOracle) -> None:
    gen = Generator(7)
    cases = []
    ours = []
    for n in range(1000):
        event = gen.event()
        kind = gen.r.choice(["DROP", "DROP_PROPERTIES", "ALLOW_PROPERTIES", "SAMPLE"])
        fields = {
            gen.r.choice(
                ["", "properties", "context", "context.library", "properties.nested", "missing"]
            ): gen.r.sample(["type", "plan", "total", "name", "a", "b", "userId", "tags"], 2)
        }
        action: dict[str, Any] = {"type": kind}
        transformer: dict[str, Any]
        if kind == "DROP":
            transformer = {"type": "drop"}
        elif kind == "SAMPLE":  # without a path: the percent's ends are certain
            action["percent"] = gen.r.choice([0, 1])
            transformer = {
                "type": "sample_event",
                "config": {"sample": {"percent": action["percent"], "path": ""}},
            }
        else:
            action["fields"] = fields
            key = "drop" if kind == "DROP_PROPERTIES" else "allow"
            transformer = {"type": f"{key}_properties", "config": {key: fields}}
        [checked] = check_filters([{"id": f"df_{n}", "if": "all", "actions": [action]}])
        apply = compile_filters([checked])
        assert apply is not None
        result = apply(msgspec.json.decode(msgspec.json.encode(event)))
        ours.append(None if isinstance(result, str) else result)
        cases.append({"event": event, "transformers": [transformer]})
    answers = oracle.call("tsub.transform", cases)
    for mine, theirs, case in zip(ours, answers, cases, strict=True):
        assert theirs.error is None and theirs.value == mine, (case, mine, theirs)
