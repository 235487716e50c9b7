"""gojsonschema's English for each JSON Schema keyword, as Segment shows it (§3.1, A-TP-6)."""

from __future__ import annotations

from typing import Any

import jsonschema_rs
import pytest

from headwater.protocols.compiled import Rule, compile_schema
from headwater.protocols.schema_messages import violations_from


def _violations(schema: dict[str, Any], event: Any) -> list[tuple[str, str, str]]:
    """The violations of both ways to find them: the Python walk where the rule allows one
    (explain.py), and jsonschema-rs's error objects."""
    compiled = compile_schema(Rule("TRACK", "Test", schema))
    from_errors = violations_from(compiled.validator.iter_errors(event))
    assert compiled.errors(event) == from_errors
    return [(v.type, v.field, v.description) for v in from_errors]


def _under(prop: dict[str, Any]) -> dict[str, Any]:
    return {"properties": {"properties": {"properties": {"x": prop}}}}


@pytest.mark.parametrize(
    ("prop", "value", "expected"),
    [
        (
            {"type": "integer"},
            1.5,
            ("Invalid Type", "Invalid type. Expected: integer, given: number"),
        ),
        ({"type": "string"}, 7, ("Invalid Type", "Invalid type. Expected: string, given: integer")),
        (
            {"type": "string"},
            2.0,
            ("Invalid Type", "Invalid type. Expected: string, given: integer"),
        ),
        ({"type": "string"}, [], ("Invalid Type", "Invalid type. Expected: string, given: array")),
        (
            {"type": ["string", "null"]},
            True,
            ("Invalid Type", "Invalid type. Expected: [null,string], given: boolean"),
        ),
        ({"enum": ["a", 1]}, 2, ("Enum", 'properties.x must be one of the following: "a", 1')),
        ({"const": "a"}, "b", ("Const", 'properties.x does not match: "a"')),
        (
            {"pattern": "fall|winter|spring"},
            "summer",
            ("Pattern", "Does not match pattern 'fall|winter|spring'"),
        ),
        ({"format": "date-time"}, "yesterday", ("Format", "Does not match format 'date-time'")),
        ({"minimum": 3}, 1, ("Number Gte", "Must be greater than or equal to 3")),
        ({"maximum": 3}, 4, ("Number Lte", "Must be less than or equal to 3")),
        ({"exclusiveMinimum": 3}, 3, ("Number Gt", "Must be greater than 3")),
        ({"exclusiveMaximum": 3}, 3, ("Number Lt", "Must be less than 3")),
        ({"multipleOf": 2}, 3, ("Multiple Of", "Must be a multiple of 2")),
        ({"minLength": 2}, "a", ("String Gte", "String length must be greater than or equal to 2")),
        ({"maxLength": 2}, "abc", ("String Lte", "String length must be less than or equal to 2")),
        ({"minItems": 2}, [1], ("Array Min Items", "Array must have at least 2 items")),
        ({"maxItems": 1}, [1, 2], ("Array Max Items", "Array must have at most 1 items")),
        ({"uniqueItems": True}, [1, 2, 1], ("Unique", "array items[0,2] must be unique")),
        (
            {"contains": {"type": "string"}},
            [1],
            ("Contains", "At least one of the items must match"),
        ),
        (
            {"minProperties": 2},
            {"a": 1},
            ("Array Min Properties", "Must have at least 2 properties"),
        ),
        (
            {"maxProperties": 0},
            {"a": 1},
            ("Array Max Properties", "Must have at most 0 properties"),
        ),
        ({"not": {"type": "string"}}, "s", ("Number Not", "Must not validate the schema (not)")),
        (
            {"propertyNames": {"pattern": "^a"}},
            {"b": 1},
            ("Invalid Property Name", 'Property name of "b" does not match'),
        ),
        (
            {"items": [{"type": "string"}], "additionalItems": False},
            ["a", 1],
            ("Array No Additional Items", "No additional items allowed on array"),
        ),
    ],
)
def test_keyword_message(prop: dict[str, Any], value: Any, expected: tuple[str, str]) -> None:
    found = _violations(_under(prop), {"properties": {"x": value}})
    assert found == [(expected[0], "properties.x", expected[1])]


def test_required_names_the_full_path() -> None:
    schema = {"properties": {"properties": {"required": ["products"]}}}
    assert _violations(schema, {"properties": {}}) == [
        ("Required", "properties.products", "properties.products is required")
    ]


def test_top_level_failures_are_at_root() -> None:
    schema = {"allOf": [{"required": ["userId"]}]}
    assert _violations(schema, {}) == [
        ("Required", "userId", "userId is required"),
        ("Number All Of", "(root)", "Must validate all the schemas (allOf)"),
    ]


def test_then_and_else() -> None:
    schema = {"if": {"required": ["a"]}, "then": {"required": ["b"]}, "else": {"required": ["c"]}}
    assert _violations(schema, {"a": 1})[0] == (
        "Condition Then",
        "(root)",
        'Must validate "then" as "if" was valid',
    )
    assert _violations(schema, {})[0] == (
        "Condition Else",
        "(root)",
        'Must validate "else" as "if" was not valid',
    )


def test_any_of_and_one_of_bring_the_best_branch() -> None:
    schema = {"anyOf": [{"required": ["a", "b"]}, {"required": ["c"]}]}
    assert _violations(schema, {}) == [
        ("Number Any Of", "(root)", "Must validate at least one schema (anyOf)"),
        ("Required", "c", "c is required"),
    ]
    assert _violations({"oneOf": [{"type": "object"}, {"type": "object"}]}, {})[0] == (
        "Number One Of",
        "(root)",
        "Must validate one and only one schema (oneOf)",
    )


def test_additional_property_and_dependency_and_array_paths() -> None:
    schema = {
        "properties": {
            "o": {"additionalProperties": False, "dependencies": {"x": ["y"]}},
            "l": {"items": {"required": ["id"]}},
        }
    }
    assert _violations(schema, {"o": {"x": 1, "z": 2}, "l": [{"id": 1}, {}]}) == [
        ("Additional Property Not Allowed", "o.x", "Additional property x is not allowed"),
        ("Additional Property Not Allowed", "o.z", "Additional property z is not allowed"),
        ("Missing Dependency", "o", "Has a dependency on y"),
        ("Required", "l.1.id", "l.1.id is required"),
    ]


def test_debug_display_form_a_tp_6() -> None:
    schema = _under({"type": "string"})
    schema["properties"]["properties"]["required"] = ["Required"]
    schema["properties"]["properties"]["properties"]["Optional"] = {"type": "string"}
    validator = jsonschema_rs.Draft7Validator(schema)
    shown = sorted(
        v.display()
        for v in violations_from(validator.iter_errors({"properties": {"Optional": []}}))
    )
    assert shown == [
        "properties.Optional: Invalid type. Expected: string, given: array",
        "properties.Required: properties.Required is required",
    ]


def test_const_data_is_not_rewritten_as_a_schema() -> None:
    schema = {"properties": {"c": {"const": {"additionalProperties": False}}}}
    assert _violations(schema, {"c": {"additionalProperties": False}}) == []
    assert _violations(schema, {"c": 1}) == [
        ("Const", "c", 'c does not match: {"additionalProperties":false}')
    ]
