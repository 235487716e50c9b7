"""Destination Actions mappings: each directive as actions-core renders it, and the field schema."""

from __future__ import annotations

from typing import Any

import pytest

from headwater.destinations.mapping import (
    FieldSpec,
    check_fields,
    coerce_output,
    compile_mapping,
    render_mapping,
    validate_mapping,
)
from headwater.errors import MappingError

EVENT: dict[str, Any] = {
    "type": "track",
    "event": "Order Completed",
    "userId": "u1",
    "properties": {
        "order_id": "o-17",
        "total": 27.5,
        "coupon": None,
        "name": "Ada",
        "active": False,
        "count": 0,
        "products": [
            {"sku": "A1", "price": 10, "tags": ["x"]},
            {"sku": "B2", "price": 17.5},
        ],
    },
    "context": {"traits": {"email": "ada@example.com", "plan": "Pro"}},
}


def render(mapping: Any, payload: dict[str, Any] = EVENT) -> Any:
    """Render one value through a field, the way an action's ``fields`` holds it."""
    return render_mapping({"out": mapping}, payload).get("out", "<absent>")


def test_webhook_style_mapping() -> None:
    mapping = {
        "order": {"@path": "$.properties.order_id"},
        "email": {"@path": "$.context.traits.email"},
    }
    assert render_mapping(mapping, EVENT) == {"order": "o-17", "email": "ada@example.com"}


# --- @path ---------------------------------------------------------------------------------


def test_path_reads_jsonpath_and_bare_paths_and_indices() -> None:
    assert render({"@path": "$.properties.order_id"}) == "o-17"
    assert render({"@path": "properties.order_id"}) == "o-17"
    assert render({"@path": "$.properties.products[1].sku"}) == "B2"
    assert render({"@path": "$.properties.products.0.sku"}) == "A1"
    assert render({"@path": "$.properties['name']"}) == "Ada"
    assert render({"@path": "$.properties.products"}) == EVENT["properties"]["products"]
    assert render({"@path": "$."}) == EVENT


def test_path_missing_is_absent_but_null_is_kept() -> None:
    assert render({"@path": "$.properties.nope"}) == "<absent>"
    assert render({"@path": "$.properties.products[5].sku"}) == "<absent>"
    assert render({"@path": "$.properties.coupon"}) is None


def test_path_stops_at_falsy_values_like_javascript() -> None:
    # actions-core walks with `o && o[k]`, so a falsy value in the middle is the answer.
    assert render({"@path": "$.properties.coupon.code"}) is None
    assert render({"@path": "$.properties.count.x"}) == 0
    assert render({"@path": "$.properties.active.x"}) is False
    assert render({"@path": "$.properties.total.x"}) == "<absent>"


def test_path_reads_string_and_array_properties() -> None:
    assert render({"@path": "$.properties.name.length"}) == 3
    assert render({"@path": "$.properties.name[0]"}) == "A"
    assert render({"@path": "$.properties.products.length"}) == 2
    assert render({"@path": "$.s.length"}, {"s": "a😀"}) == 3  # UTF-16 code units


def test_path_can_be_computed_by_a_directive() -> None:
    payload = {"which": "plan", "context": {"traits": {"plan": "Pro"}}}
    mapping = {"@path": {"@template": "$.context.traits.{{which}}"}}
    assert render(mapping, payload) == "Pro"


def test_path_needs_a_string() -> None:
    with pytest.raises(MappingError) as caught:
        validate_mapping({"fields": {"data": {"order": {"@path": 5}}}})
    assert caught.value.path == "fields.data.order.@path"
    with pytest.raises(MappingError, match="expected string, got number"):
        render({"@path": {"@path": "$.properties.total"}})


# --- @template -----------------------------------------------------------------------------


def test_template_substitutes_paths() -> None:
    mapping = {
        "@template": "Hi {{properties.name}} ({{ context.traits.plan }}) #{{{properties.order_id}}}"
    }
    assert render(mapping) == "Hi Ada (Pro) #o-17"


def test_template_missing_and_null_become_empty() -> None:
    assert render({"@template": "[{{properties.nope}}|{{properties.coupon}}]"}) == "[|]"
    # No $. stripping inside templates: "$" is looked up as a key.
    assert render({"@template": "{{$.properties.name}}"}) == ""


def test_template_stringifies_like_javascript() -> None:
    payload = {"n": 1e21, "f": 0.1, "i": 3.0, "b": True, "a": [1, None, [2, 3]], "o": {"k": 1}}
    assert render({"@template": "{{n}} {{f}} {{i}} {{b}} {{a}} {{o}}"}, payload) == (
        "1e+21 0.1 3 true 1,,2,3 [object Object]"
    )


def test_template_expands_placeholders_inside_triple_brace_values() -> None:
    # actions-core runs the {{ }} pass over the result of the {{{ }}} pass.
    assert render({"@template": "{{{inner}}}"}, {"inner": "{{name}}", "name": "Ada"}) == "Ada"


def test_template_needs_a_string() -> None:
    with pytest.raises(MappingError, match="should be a string or a mapping directive"):
        validate_mapping({"x": {"@template": ["a"]}})


# --- @if and coalesce ----------------------------------------------------------------------


def test_if_exists_picks_a_branch() -> None:
    mapping = {"@if": {"exists": {"@path": "$.properties.name"}, "then": "yes", "else": "no"}}
    assert render(mapping) == "yes"
    missing = {"@if": {"exists": {"@path": "$.properties.nope"}, "then": "yes", "else": "no"}}
    assert render(missing) == "no"
    null = {"@if": {"exists": {"@path": "$.properties.coupon"}, "then": "yes", "else": "no"}}
    assert render(null) == "no"


def test_if_blank_treats_loosely_empty_values_as_blank() -> None:
    def blank(path: str) -> Any:
        return render({"@if": {"blank": {"@path": path}, "then": "filled", "else": "blank"}})

    assert blank("$.properties.name") == "filled"
    assert blank("$.properties.count") == "blank"  # 0 == '' in JavaScript
    assert blank("$.properties.active") == "blank"
    assert blank("$.properties.nope") == "blank"


def test_if_without_a_branch_or_with_a_falsy_else_is_absent() -> None:
    assert render({"@if": {"exists": {"@path": "$.properties.nope"}, "then": 1}}) == "<absent>"
    assert render({"@if": {"exists": {"@path": "$.nope"}, "then": 1, "else": False}}) == "<absent>"
    assert render({"@if": {"exists": {"@path": "$.properties.name"}, "then": None}}) is None


def test_if_bad_arguments() -> None:
    with pytest.raises(MappingError, match='requires an "exists" key or a "blank" key'):
        render({"@if": {"then": 1}})
    with pytest.raises(MappingError, match="should be an object but it is a string"):
        validate_mapping({"x": {"@if": "exists"}})


def test_ac_075_coalesce_falls_back_to_context_traits_email() -> None:
    coalesce = {
        "@if": {
            "exists": {"@path": "$.properties.email"},
            "then": {"@path": "$.properties.email"},
            "else": {"@path": "$.context.traits.email"},
        }
    }
    assert render(coalesce) == "ada@example.com"
    with_email = {**EVENT, "properties": {"email": "p@example.com"}}
    assert render(coalesce, with_email) == "p@example.com"


# --- @literal ------------------------------------------------------------------------------


def test_literal_returns_its_value_and_still_renders_directives() -> None:
    assert render({"@literal": {"a": [1, "x"]}}) == {"a": [1, "x"]}
    assert render({"@literal": "{{properties.name}}"}) == "{{properties.name}}"
    assert render({"@literal": {"@path": "$.properties.name"}}) == "Ada"
    assert render({"@literal": {"@path": "$.nope"}}) == "<absent>"
    with pytest.raises(MappingError, match="has an invalid directive: @nope"):
        validate_mapping({"x": {"@literal": {"@nope": 1}}})


# --- @arrayPath ----------------------------------------------------------------------------


def test_array_path_maps_each_item() -> None:
    mapping = {
        "@arrayPath": ["$.properties.products", {"id": {"@path": "$.sku"}, "p": {"@path": "price"}}]
    }
    assert render(mapping) == [{"id": "A1", "p": 10}, {"id": "B2", "p": 17.5}]


def test_array_path_treats_an_object_as_one_item_and_passes_other_values() -> None:
    mapping = {"@arrayPath": ["$.context.traits", {"e": {"@path": "$.email"}}]}
    assert render(mapping) == [{"e": "ada@example.com"}]
    assert render({"@arrayPath": ["$.properties.name", {"e": {"@path": "$.x"}}]}) == "Ada"
    assert render({"@arrayPath": ["$.properties.products"]}) == EVENT["properties"]["products"]
    assert render({"@arrayPath": ["$.nope", {"e": {"@path": "$.x"}}]}) == "<absent>"


def test_array_path_missing_item_fields_are_left_out() -> None:
    mapping = {"@arrayPath": ["$.properties.products", {"tags": {"@path": "$.tags"}}]}
    assert render(mapping) == [{"tags": ["x"]}, {}]


def test_array_path_bad_arguments() -> None:
    with pytest.raises(MappingError, match="should be an array but it is a string"):
        validate_mapping({"x": {"@arrayPath": "$.properties"}})
    with pytest.raises(
        MappingError, match="should be a string or a mapping directive but it is an undefined"
    ):
        validate_mapping({"x": {"@arrayPath": []}})


# --- @case ---------------------------------------------------------------------------------


def test_case_changes_strings_and_passes_everything_else() -> None:
    assert (
        render({"@case": {"operator": "upper", "value": {"@path": "$.properties.name"}}}) == "ADA"
    )
    assert render({"@case": {"operator": "lower", "value": "MiXeD"}}) == "mixed"
    assert (
        render({"@case": {"operator": "upper", "value": {"@path": "$.properties.total"}}}) == 27.5
    )
    assert render({"@case": {"operator": "upper", "value": {"@path": "$.nope"}}}) == "<absent>"
    assert render({"@case": {"operator": "upper", "value": ""}}) == "<absent>"


def test_case_bad_arguments() -> None:
    with pytest.raises(MappingError, match='requires a "operator" key'):
        render({"@case": {"value": "x"}})
    with pytest.raises(MappingError, match='"lower" or "upper"'):
        render({"@case": {"operator": "title", "value": "x"}})
    with pytest.raises(
        MappingError, match="should be a string or a mapping directive but it is a number"
    ):
        validate_mapping({"x": {"@case": {"operator": "upper", "value": 5}}})


# --- @replace ------------------------------------------------------------------------------


def test_ac_076_replace_yes_with_true_and_no_with_false() -> None:
    mapping = {
        "@replace": {
            "pattern": "yes",
            "replacement": "true",
            "pattern2": "no",
            "replacement2": "false",
            "value": {"@path": "$.properties.subscribed"},
        }
    }
    assert render(mapping, {"properties": {"subscribed": "yes"}}) == "true"
    assert render(mapping, {"properties": {"subscribed": "no"}}) == "false"
    # At most two replacements per field: pattern and pattern2; a third key does nothing.
    three = {"@replace": {**mapping["@replace"], "pattern3": "maybe", "replacement3": "x"}}
    assert render(three, {"properties": {"subscribed": "maybe"}}) == "maybe"


def test_replace_is_literal_global_and_optionally_case_insensitive() -> None:
    assert render({"@replace": {"pattern": ".", "replacement": "-", "value": "a.b.c"}}) == "a-b-c"
    first = {"@replace": {"pattern": ".", "replacement": "-", "global": False, "value": "a.b.c"}}
    assert render(first) == "a-b.c"
    assert render({"@replace": {"pattern": "ab", "value": "AbaB", "ignorecase": True}}) == ""
    assert render({"@replace": {"pattern": "ab", "value": "AbaB"}}) == "AbaB"


def test_replace_works_on_numbers_and_booleans_as_strings() -> None:
    assert (
        render(
            {
                "@replace": {
                    "pattern": ".",
                    "replacement": ",",
                    "value": {"@path": "$.properties.total"},
                }
            }
        )
        == "27,5"
    )
    assert (
        render(
            {
                "@replace": {
                    "pattern": "false",
                    "replacement": "no",
                    "value": {"@path": "$.properties.active"},
                }
            }
        )
        == "no"
    )


def test_replace_dollar_patterns_work_like_string_replace() -> None:
    mapping = {"@replace": {"pattern": "b", "replacement": "<$&$`$'$$>", "value": "abc"}}
    assert render(mapping) == "a<bac$>c"
    assert render({"@replace": {"pattern": "b", "replacement": "$1", "value": "abc"}}) == "a$1c"


def test_replace_of_missing_or_non_string_values_is_empty() -> None:
    assert render({"@replace": {"pattern": "a", "value": {"@path": "$.nope"}}}) == ""
    assert render({"@replace": {"pattern": "a", "value": {"@path": "$.context"}}}) == ""


def test_replace_bad_arguments() -> None:
    with pytest.raises(MappingError, match='should have field "pattern"'):
        validate_mapping({"x": {"@replace": {"value": "a"}}})
    with pytest.raises(MappingError, match="length 10 or less"):
        validate_mapping({"x": {"@replace": {"pattern": "abcdefghijk", "value": "a"}}})
    with pytest.raises(MappingError, match="should be a boolean"):
        validate_mapping({"x": {"@replace": {"pattern": "a", "value": "a", "global": "yes"}}})
    # pattern2 is not validated: actions-core only rejects it when it gets to use it.
    long_second = {
        "@replace": {"pattern": "a", "pattern2": "abcdefghijk", "value": {"@path": "$.v"}}
    }
    assert render(long_second, {}) == ""
    with pytest.raises(MappingError, match='"pattern" less than 10'):
        render(long_second, {"v": "abc"})


# --- @merge --------------------------------------------------------------------------------


def test_merge_right_lets_later_objects_win_and_left_earlier_ones() -> None:
    objects = [{"@path": "$.context.traits"}, {"plan": "Free", "extra": 1}]
    assert render({"@merge": {"objects": objects, "direction": "right"}}) == {
        "email": "ada@example.com",
        "plan": "Free",
        "extra": 1,
    }
    assert render({"@merge": {"objects": objects, "direction": "left"}}) == {
        "email": "ada@example.com",
        "plan": "Pro",
        "extra": 1,
    }


def test_merge_skips_missing_objects_and_a_missing_value_removes_a_key() -> None:
    objects = [{"@path": "$.nope"}, {"a": 1, "b": 2}, {"b": {"@path": "$.nope"}}]
    assert render({"@merge": {"objects": objects, "direction": "right"}}) == {"a": 1}


def test_merge_bad_arguments() -> None:
    with pytest.raises(MappingError, match='should have field "objects"'):
        validate_mapping({"x": {"@merge": {"direction": "left"}}})
    with pytest.raises(MappingError, match="should be one of left, right"):
        validate_mapping({"x": {"@merge": {"objects": [], "direction": "up"}}})
    with pytest.raises(
        MappingError, match="should be a object or a mapping directive but it is an array"
    ):
        validate_mapping({"x": {"@merge": {"objects": [[1]], "direction": "left"}}})
    with pytest.raises(MappingError, match='requires a "direction" key'):
        render({"@merge": {"objects": [{"a": 1}]}})


# --- @flatten ------------------------------------------------------------------------------


def test_ac_074_flatten_nested_object() -> None:
    mapping = {"@flatten": {"value": {"a": {"b": {"c": 1}, "d": 2}}, "separator": "."}}
    assert render(mapping) == {"a.b.c": 1, "a.d": 2}


def test_flatten_arrays_unless_omitted_and_rendered_values() -> None:
    value = {"@path": "$.properties.products"}
    flat = render({"@flatten": {"value": value, "separator": "_"}})
    assert flat["0_sku"] == "A1" and flat["0_tags_0"] == "x" and flat["1_price"] == 17.5
    kept = render({"@flatten": {"value": {"p": value}, "separator": "_", "omitArrays": True}})
    assert kept == {"p": EVENT["properties"]["products"]}


def test_flatten_missing_and_scalar_values() -> None:
    assert render({"@flatten": {"value": {"@path": "$.nope"}, "separator": "."}}) == {}
    assert render({"@flatten": {"value": "x", "separator": "."}}) == {"": "x"}


def test_flatten_bad_arguments() -> None:
    with pytest.raises(MappingError, match='should have field "value"'):
        validate_mapping({"x": {"@flatten": {"separator": "."}}})
    with pytest.raises(MappingError, match="should be a string but it is a number"):
        validate_mapping({"x": {"@flatten": {"separator": 1, "value": {}}}})
    with pytest.raises(MappingError, match='requires a "separator" key'):
        render({"@flatten": {"value": {"a": 1}}})


# --- @json ---------------------------------------------------------------------------------


def test_json_encode_matches_json_stringify() -> None:
    value = {
        "b": 1.0,
        "2": [1, {"@path": "$.nope"}],
        "c": {"@path": "$.nope"},
        "s": "é\n",
        "n": 1e21,
    }
    assert render({"@json": {"mode": "encode", "value": value}}) == (
        '{"2":[1,null],"b":1,"s":"é\\n","n":1e+21}'
    )


def test_json_decode_parses_and_passes_invalid_text_through() -> None:
    assert render({"@json": {"mode": "decode", "value": '{"a": [1, true]}'}}) == {"a": [1, True]}
    assert render({"@json": {"mode": "decode", "value": "{oops"}}) == "{oops"
    assert render({"@json": {"mode": "decode", "value": "NaN"}}) == "NaN"
    assert render({"@json": {"mode": "decode", "value": {"@path": "$.properties.total"}}}) == 27.5


def test_json_missing_values() -> None:
    assert render({"@json": {"mode": "encode", "value": {"@path": "$.nope"}}}) == "<absent>"
    # Validation lower-cases the mode, rendering does not: "ENCODE" renders nothing.
    assert render({"@json": {"mode": "ENCODE", "value": "x"}}) == "<absent>"


def test_json_bad_arguments() -> None:
    with pytest.raises(MappingError, match='should have field "mode"'):
        validate_mapping({"x": {"@json": {"value": "x"}}})
    with pytest.raises(MappingError, match="should be one of encode, decode"):
        validate_mapping({"x": {"@json": {"mode": "yaml", "value": "x"}}})
    with pytest.raises(MappingError, match='requires a "value" key'):
        render({"@json": {"mode": "encode", "value": None}})


# --- @excludeWhenNull, @transform -------------------------------------------------------------


def test_exclude_when_null() -> None:
    assert render({"@excludeWhenNull": {"@path": "$.properties.coupon"}}) == "<absent>"
    assert render({"@excludeWhenNull": {"@path": "$.properties.name"}}) == "Ada"
    nested = {"@excludeWhenNull": {"a": None, "b": {"c": None, "d": 1}, "e": [None]}}
    assert render(nested) == {"b": {"d": 1}, "e": [None]}


def test_transform_renders_a_mapping_against_another_mappings_output() -> None:
    mapping = {
        "@transform": {
            "apply": {"who": {"@path": "$.context.traits"}},
            "mapping": {"mail": {"@path": "$.who.email"}},
        }
    }
    assert render(mapping) == {"mail": "ada@example.com"}
    with pytest.raises(MappingError, match='should have field "mapping"'):
        validate_mapping({"x": {"@transform": {"apply": {}}}})


# --- validation in general -------------------------------------------------------------------


def test_unknown_directives_and_mixed_keys_are_invalid() -> None:
    with pytest.raises(MappingError) as caught:
        validate_mapping({"fields": {"data": {"order": {"@nope": 1}}}})
    assert caught.value.path == "fields.data.order"
    assert "invalid directive: @nope" in str(caught.value)
    with pytest.raises(MappingError, match="one @-prefixed key but it has 2 keys"):
        validate_mapping({"x": {"@path": "$.a", "other": 1}})
    with pytest.raises(MappingError, match="@liquid is not supported"):
        validate_mapping({"x": {"@liquid": "{{ a }}"}})
    validate_mapping({"x": {"@path": "$.a", "_metadata": {"label": "A"}}})


def test_arrays_are_only_checked_when_rendered_like_actions_core() -> None:
    mapping = {
        "x": {
            "@if": {
                "exists": {"@path": "$.properties.nope"},
                "then": [{"@nope": 1}],
                "else": "fine",
            }
        }
    }
    assert render_mapping(mapping, EVENT) == {"x": "fine"}
    with pytest.raises(MappingError, match="@nope is not a valid directive"):
        render_mapping({"x": [{"@nope": 1}]}, EVENT)


def test_the_root_must_be_an_object_and_the_payload_too() -> None:
    with pytest.raises(MappingError, match="must be an object"):
        compile_mapping([1, 2])  # type: ignore[arg-type]
    with pytest.raises(MappingError, match="data must be an object"):
        compile_mapping({"a": 1})([1])  # type: ignore[arg-type]


def test_compiled_mappings_are_reusable_and_share_nothing_with_their_output() -> None:
    compiled = compile_mapping({"fixed": {"a": [1]}, "traits": {"@path": "$.context.traits"}})
    first = compiled(EVENT)
    first["fixed"]["a"].append(2)
    first["traits"]["plan"] = "changed"
    assert compiled(EVENT) == {
        "fixed": {"a": [1]},
        "traits": {"email": "ada@example.com", "plan": "Pro"},
    }
    assert EVENT["context"]["traits"]["plan"] == "Pro"
    assert compiled({"context": {"traits": {"email": "b@example.com"}}}) == {
        "fixed": {"a": [1]},
        "traits": {"email": "b@example.com"},
    }


def test_absent_values_inside_arrays_become_null() -> None:
    assert render([{"@path": "$.nope"}, 1]) == [None, 1]


# --- destination-field paths -----------------------------------------------------------------


def test_ac_078_destination_field_paths_build_nesting_and_quotes_keep_dots() -> None:
    payload = {"traits": {"email": "ada@example.com"}}
    nested = render_mapping(
        {"info[0].email": {"@path": "$.traits.email"}}, payload, expand_keys=True
    )
    assert nested == {"info": [{"email": "ada@example.com"}]}
    literal = render_mapping(
        {'"user.email"': {"@path": "$.traits.email"}}, payload, expand_keys=True
    )
    assert literal == {"user.email": "ada@example.com"}


def test_destination_field_paths_more_forms() -> None:
    mapping = {
        "info.name": {"@path": "$.properties.name"},
        "info.email": {"@path": "$.context.traits.email"},
        "items.[0].sku": {"@path": "$.properties.products[0].sku"},
        "items[1].sku": {"@path": "$.properties.products[1].sku"},
        "missing.deep": {"@path": "$.nope"},
        "plain": 1,
    }
    assert render_mapping(mapping, EVENT, expand_keys=True) == {
        "info": {"name": "Ada", "email": "ada@example.com"},
        "items": [{"sku": "A1"}, {"sku": "B2"}],
        "plain": 1,
    }
    # Without the option keys are literal, as in actions-core.
    assert render_mapping({"info.name": "x"}, {}) == {"info.name": "x"}


def test_destination_field_paths_fill_gaps_with_null() -> None:
    mapping = {"a[0]": {"@path": "$.nope"}, "a[1]": 2}
    assert render_mapping(mapping, {}, expand_keys=True) == {"a": [None, 2]}


def test_destination_field_paths_refuse_conflicts_and_bad_syntax() -> None:
    with pytest.raises(MappingError, match="conflicts with the field 'a'"):
        compile_mapping({"a": 1, "a.b": 2}, expand_keys=True)
    with pytest.raises(MappingError, match="mixes array and object keys"):
        compile_mapping({"a[0]": 1, "a.b": 2}, expand_keys=True)
    for bad in ["a..b", ".a", "a.", "[0]", "a[x]", 'a"b"', ""]:
        with pytest.raises(MappingError):
            compile_mapping({bad: 1}, expand_keys=True)


# --- field schema ----------------------------------------------------------------------------

SCHEMA = {
    "email": FieldSpec(type="string", required=True),
    "total": FieldSpec(type="number", required=False),
    "count": FieldSpec(type="integer", required=False),
    "subscribed": FieldSpec(type="boolean", required=False),
    "tags": FieldSpec(type="string", required=False, multiple=True),
    "props": FieldSpec(type="object", required=False),
    "at": FieldSpec(type="datetime", required=False),
    "tier": FieldSpec(type="string", required=False, choices=("free", "pro")),
}


def test_check_fields_accepts_a_good_mapping() -> None:
    check_fields(
        {
            "email": {"@path": "$.context.traits.email"},
            "total": "27.5",
            "subscribed": {
                "@replace": {"pattern": "yes", "replacement": "true", "value": {"@path": "$.s"}}
            },
            "tags": ["a", {"@path": "$.t"}],
            "props": {"order": {"@path": "$.properties.order_id"}},
            "tier": "pro",
        },
        SCHEMA,
    )


def test_check_fields_rejects_unknown_missing_and_mistyped_fields() -> None:
    with pytest.raises(MappingError) as caught:
        check_fields({"email": "a@b.c", "nope": 1}, SCHEMA)
    assert caught.value.path == "nope"
    with pytest.raises(MappingError, match="required but not mapped"):
        check_fields({"total": 1}, SCHEMA)
    with pytest.raises(MappingError, match="should be a number"):
        check_fields({"email": "a@b.c", "total": "lots"}, SCHEMA)
    with pytest.raises(MappingError, match="should be an object"):
        check_fields({"email": "a@b.c", "props": "x"}, SCHEMA)
    with pytest.raises(MappingError, match="should be one of free, pro"):
        check_fields({"email": "a@b.c", "tier": "gold"}, SCHEMA)
    with pytest.raises(MappingError, match="cannot render an object"):
        check_fields({"email": "a@b.c", "props": [{"@path": "$.a"}, 1]}, SCHEMA)
    with pytest.raises(MappingError) as invalid:
        check_fields({"email": {"@path": 1}}, SCHEMA)
    assert invalid.value.path == "email.@path"


def test_coerce_output_drops_empty_optional_fields_and_coerces_like_ajv() -> None:
    rendered = {
        "email": "a@b.c",
        "total": "27.5",
        "count": "3",
        "subscribed": "true",
        "tags": "solo",
        "props": {"a": None},
        "at": "2024-03-05T10:00:00.000Z",
        "tier": None,
        "unknown": 1,
    }
    assert coerce_output(rendered, SCHEMA) == {
        "email": "a@b.c",
        "total": 27.5,
        "count": 3,
        "subscribed": True,
        "tags": ["solo"],
        "props": {"a": None},
        "at": "2024-03-05T10:00:00.000Z",
    }
    assert coerce_output(
        {"email": 12, "total": True, "tags": [None, "", 1], "at": 1709632800}, SCHEMA
    ) == {"email": "12", "total": 1, "tags": ["", "1"], "at": 1709632800}
    assert coerce_output({"email": ["only"], "count": [2]}, SCHEMA) == {"email": "only", "count": 2}


def test_coerce_output_rejects_missing_required_and_wrong_types() -> None:
    with pytest.raises(MappingError) as caught:
        coerce_output({"email": ""}, SCHEMA)
    assert caught.value.path == "email"
    with pytest.raises(MappingError, match="required"):
        coerce_output({"total": 1}, SCHEMA)
    with pytest.raises(MappingError, match="should be an integer"):
        coerce_output({"email": "a", "count": "1.5"}, SCHEMA)
    with pytest.raises(MappingError, match="should be a boolean"):
        coerce_output({"email": "a", "subscribed": "yes"}, SCHEMA)
    with pytest.raises(MappingError) as item:
        coerce_output({"email": "a", "tags": ["a", {"b": 1}]}, SCHEMA)
    assert item.value.path == "tags[1]"
    with pytest.raises(MappingError, match="should be a date"):
        coerce_output({"email": "a", "at": "soon"}, SCHEMA)


def test_ac_076_replace_output_becomes_a_boolean_field() -> None:
    fields = {
        "email": {"@path": "$.email"},
        "subscribed": {
            "@replace": {
                "pattern": "yes",
                "replacement": "true",
                "pattern2": "no",
                "replacement2": "false",
                "value": {"@path": "$.subscribed"},
            }
        },
    }
    check_fields(fields, SCHEMA)
    compiled = compile_mapping(fields)
    assert coerce_output(compiled({"email": "a@b.c", "subscribed": "no"}), SCHEMA) == {
        "email": "a@b.c",
        "subscribed": False,
    }


def test_field_spec_rejects_unknown_types() -> None:
    with pytest.raises(ValueError, match="unknown field type"):
        FieldSpec(type="text", required=False)  # type: ignore[arg-type]
