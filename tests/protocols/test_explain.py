"""The Python walk (explain.py) against jsonschema-rs's own errors: same violations, same order.

Schemas are generated in the shape Segment's editor writes (objects of named properties, scalar
keywords) with pieces the walk hands back to jsonschema-rs (arrays of objects, `anyOf`,
`patternProperties`, draft 4's boolean limits), and events are generated from each schema with
members missing, extra, reordered and of the wrong type. Seeded, so a failure reproduces.
"""

from __future__ import annotations

import random
from typing import Any

import jsonschema_rs
import pytest

from headwater.protocols.compiled import Rule, compile_schema
from headwater.protocols.explain import explainer
from headwater.protocols.schema_messages import violations_from

DRAFTS = {
    4: "http://json-schema.org/draft-04/schema#",
    6: "http://json-schema.org/draft-06/schema#",
    7: "http://json-schema.org/draft-07/schema#",
}
DRAFT_CLASSES = {
    4: jsonschema_rs.Draft4Validator,
    6: jsonschema_rs.Draft6Validator,
    7: jsonschema_rs.Draft7Validator,
}
TYPES = ["null", "boolean", "integer", "number", "string", "array", "object"]
PATTERNS = ["^[A-Z]{3}$", "fall|winter", "^o-\\d+$", "^$", "é"]
FORMATS = ["date-time", "email", "date", "uri", "ipv4", "not-a-known-format"]
STRINGS = ["", "USD", "usd", "o-12", "fall", "é", "a@b.co", "2026-12-06T12:00:00Z", "2026-12-06",
           "https://x.io", "10.0.0.1", "xxxxxxxxxx", "o-\n"]  # fmt: skip
NUMBERS: list[Any] = [0, 1, -3, 2.0, 1.5, 7, 10**6, -0.5, 3]


class Generator:
    def __init__(self, seed: int, draft: int) -> None:
        self.rng = random.Random(seed)
        self.draft = draft
        self.strict = False  # values the schema accepts wherever one turns up, nothing missing

    def scalar(self) -> dict[str, Any]:
        rng = self.rng
        schema: dict[str, Any] = {}
        if rng.random() < 0.8:
            kinds = rng.sample(TYPES[:5], rng.choice([1, 1, 1, 2, 3]))
            schema["type"] = kinds[0] if len(kinds) == 1 and rng.random() < 0.7 else kinds
        if rng.random() < 0.2:
            schema["enum"] = rng.sample([*STRINGS[:5], *NUMBERS[:4], None, True], 3)
        if rng.random() < 0.1:
            schema["const"] = rng.choice([*STRINGS[:3], *NUMBERS[:3], False])
        for keyword in ("minimum", "maximum", "multipleOf"):
            if rng.random() < 0.2:
                schema[keyword] = (
                    rng.choice([1, 2, 0.5, 3]) if keyword == "multipleOf" else (rng.choice(NUMBERS))
                )
        for keyword in ("exclusiveMinimum", "exclusiveMaximum"):
            if rng.random() < 0.15:
                if self.draft == 4:  # draft 4's boolean form, next to its limit
                    schema[keyword] = True
                    schema[keyword.replace("exclusiveM", "m")] = rng.choice(NUMBERS)
                else:
                    schema[keyword] = rng.choice(NUMBERS)
        for keyword in ("minLength", "maxLength"):
            if rng.random() < 0.2:
                schema[keyword] = rng.choice([0, 1, 3, 5])
        if rng.random() < 0.2:
            schema["pattern"] = rng.choice(PATTERNS)
        if rng.random() < 0.15:
            schema["format"] = rng.choice(FORMATS)
        if rng.random() < 0.3:
            schema["description"] = "what it is"
        return schema

    def opaque(self, depth: int) -> dict[str, Any]:
        rng = self.rng
        choice = rng.randrange(5)
        if choice == 0:
            return {"type": "array", "items": self.node(depth + 1)}
        if choice == 1:
            return {"anyOf": [self.scalar(), self.scalar()]}
        if choice == 2:
            return {"type": "object", "patternProperties": {"^x": self.scalar()}}
        if choice == 3:
            return {"type": "array", "minItems": 2, "uniqueItems": True}
        return {"type": "object", "properties": {"a": self.scalar()}, "minProperties": 2}

    def object(self, depth: int) -> dict[str, Any]:
        rng = self.rng
        names = rng.sample(["a", "b", "c", "d", "e", "f", "g", "h"], rng.randint(0, 6))
        schema: dict[str, Any] = {"properties": {name: self.node(depth + 1) for name in names}}
        kind = rng.choice([None, "object", ["object", "null"], ["null", "object"]])
        if kind is not None:
            schema["type"] = kind
        if rng.random() < 0.6:
            pool = [*names, "missing"] if rng.random() < 0.2 else names or ["a"]
            least = 1 if self.draft == 4 else 0  # draft 4 asks for at least one name
            schema["required"] = rng.sample(pool, rng.randint(least, len(pool)))
        if rng.random() < 0.25:
            schema["additionalProperties"] = False
        elif rng.random() < 0.1:
            schema["additionalProperties"] = True
        return schema

    def node(self, depth: int) -> Any:
        roll = self.rng.random()
        if roll < 0.05:
            return {}
        if roll < 0.08 and self.draft > 4:  # boolean schemas came with draft 6
            return self.rng.choice([True, False])
        if depth < 3 and roll < 0.35:
            return self.object(depth)
        if roll < 0.5:
            return self.opaque(depth)
        return self.scalar()

    def rule(self) -> dict[str, Any]:
        root = self.object(1)
        root.pop("additionalProperties", None)  # events carry `type`, `event`, `messageId`…
        root["$schema"] = DRAFTS[self.draft]
        root["properties"]["properties"] = self.object(1)
        root["labels"] = {"team": "growth"}
        return root

    def value(self, schema: Any, depth: int = 0) -> Any:
        rng = self.rng
        if (
            isinstance(schema, dict)
            and "properties" in schema
            and (self.strict or rng.random() < 0.9)
        ):
            members = dict(schema["properties"])
            out = {
                name: self.value(member, depth + 1)
                for name, member in members.items()
                if self.strict or rng.random() < 0.93
            }
            if not self.strict and rng.random() < 0.1:
                out[rng.choice(["zz", "x1", "extra"])] = rng.choice(STRINGS)
            items = list(out.items())
            rng.shuffle(items)
            return dict(items)
        if isinstance(schema, dict) and rng.random() < 0.3:
            for keyword in ("enum", "const"):
                if keyword in schema:
                    found = schema[keyword]
                    return rng.choice(found) if keyword == "enum" else found
        candidates = [self.anything(depth) for _ in range(12)]
        if (
            self.strict or rng.random() < 0.93
        ):  # mostly a value the member accepts, when one turns up
            accepts = DRAFT_CLASSES[self.draft](schema).is_valid
            extremes: list[Any] = [None, True, False, [], "", 0, 1.5]
            return next((v for v in [*candidates, *extremes] if accepts(v)), candidates[0])
        return candidates[0]

    def anything(self, depth: int) -> Any:
        rng = self.rng
        roll = rng.random()
        if roll < 0.35:
            return rng.choice(STRINGS)
        if roll < 0.7:
            return rng.choice(NUMBERS)
        if roll < 0.8:
            return rng.choice([None, True, False])
        if roll < 0.9 or depth > 2:
            return [rng.choice(STRINGS) for _ in range(rng.randint(0, 3))]
        return {"x1": rng.choice(STRINGS), "a": rng.choice(NUMBERS)}


@pytest.mark.parametrize("draft", [4, 6, 7])
def test_the_walk_finds_what_jsonschema_rs_finds(draft: int) -> None:
    walked = 0
    failing = 0
    for seed in range(300):
        generator = Generator(seed * 10 + draft, draft)
        schema = generator.rule()
        compiled = compile_schema(Rule("TRACK", f"Event {seed}", schema))
        assert explainer(schema, type(compiled.validator)) is not None  # the walk is in use
        walked += 1
        for attempt in range(20):
            generator.strict = attempt % 2 == 0
            event = {
                "type": "track",
                "event": f"Event {seed}",
                "properties": generator.value(schema["properties"]["properties"]),
                **{
                    name: generator.value(member)
                    for name, member in schema["properties"].items()
                    if name != "properties" and generator.rng.random() < 0.8
                },
            }
            expected = violations_from(compiled.validator.iter_errors(event), False)
            assert compiled.errors(event) == expected, (schema, event)
            assert compiled.is_valid(event) is (not expected)
            failing += bool(expected)
    assert walked == 300
    assert failing > 1000 and 6000 - failing > 300, failing  # both kinds were compared


@pytest.mark.parametrize(
    "schema",
    [
        {"properties": {"properties": {"$ref": "#/definitions/p"}}, "definitions": {"p": {}}},
        {"allOf": [{"properties": {"properties": {"required": ["a"]}}}]},
        {"type": "object"},  # no named members: nothing for the walk to gain
        {"type": "array", "items": {}},
    ],
)
def test_rules_the_walk_leaves_to_jsonschema_rs(schema: dict[str, Any]) -> None:
    compiled = compile_schema(Rule("TRACK", "Order Completed", schema))
    event = {"properties": {"b": 1}, "type": "track"}
    assert compiled.errors(event) == violations_from(compiled.validator.iter_errors(event))
