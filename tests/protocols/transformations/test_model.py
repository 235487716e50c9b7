"""Transformations' checks and what they do to an event (A-TR-3 … A-TR-6, hashing, drop)."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

import pytest

from headwater.errors import InvalidError
from headwater.protocols.transformations import Transformations, from_api, updated


def body(**fields: Any) -> dict[str, Any]:
    return {"name": "t", "sourceId": "src", "enabled": True, "if": "event = 'Order'", **fields}


def run(event: dict[str, Any], **fields: Any) -> dict[str, Any] | None:
    return Transformations([from_api(body(**fields))]).apply_source("src", event)


def refused(**fields: Any) -> InvalidError:
    with pytest.raises(InvalidError) as caught:
        from_api(body(**fields))
    return caught.value


def test_a_tr_3_json_path_rename_moves_out_of_the_object() -> None:
    event = {"type": "track", "event": "Order", "properties": {"order": {"id": "1"}}}
    out = run(
        event,
        propertyRenames=[{"oldName": "properties.order.id", "newName": "properties.order_id"}],
    )
    assert out is not None
    assert out["properties"] == {"order": {}, "order_id": "1"}
    assert event["properties"] == {"order": {"id": "1"}}  # the input is never changed


def test_a_tr_3_escaped_dot_is_a_literal_key() -> None:
    event = {
        "type": "track",
        "event": "Order",
        "properties": {"ingredients.salad": "yum", "ingredients": {"salad": "nested"}},
    }
    out = run(
        event,
        propertyRenames=[{"oldName": "properties.ingredients\\.salad", "newName": "properties.s"}],
    )
    assert out is not None
    assert out["properties"] == {"ingredients": {"salad": "nested"}, "s": "yum"}
    nested = run(
        event,
        propertyRenames=[{"oldName": "properties.ingredients.salad", "newName": "properties.s"}],
    )
    assert nested is not None
    assert nested["properties"] == {"ingredients.salad": "yum", "ingredients": {}, "s": "nested"}


def test_simple_rename_in_place_and_into_an_object() -> None:
    event = {"type": "track", "event": "Order", "properties": {"revenue": 5}}
    out = run(
        event, propertyRenames=[{"oldName": "properties.revenue", "newName": "properties.o.total"}]
    )
    assert out is not None and out["properties"] == {"o": {"total": 5}}


def test_a_tr_4_array_elements_and_depth_five_are_refused() -> None:
    """A-TR-4."""
    error = refused(
        propertyRenames=[{"oldName": "properties.products.$.product_id", "newName": "properties.p"}]
    )
    assert error.field == "propertyRenames[0].oldName" and ".$." in error.message
    error = refused(
        propertyRenames=[{"oldName": "properties.a.b.c.d.e", "newName": "properties.a"}]
    )
    assert error.field == "propertyRenames[0].oldName" and "5 levels" in error.message
    # Four levels is the limit, and is taken.
    from_api(body(propertyRenames=[{"oldName": "properties.a.b.c.d", "newName": "properties.x"}]))


def test_top_level_fields_cannot_be_renamed() -> None:
    error = refused(propertyRenames=[{"oldName": "userId", "newName": "properties.user"}])
    assert error.field == "propertyRenames[0].oldName"
    assert "top-level" in error.message
    identify = {"if": "type = 'identify'"}
    error = refused(
        **identify, propertyRenames=[{"oldName": "properties.a", "newName": "properties.b"}]
    )
    assert "traits" in error.message


def test_a_tr_5_fql_defined_property() -> None:
    """A-TR-5."""
    event = {"type": "track", "event": "Order", "properties": {"prop1": "USA"}}
    out = run(
        event,
        fqlDefinedProperties=[
            {"fql": "lowercase(properties.prop1)", "propertyName": "properties.prop2"}
        ],
    )
    assert out is not None and out["properties"] == {"prop1": "USA", "prop2": "usa"}
    static = run(
        event,
        fqlDefinedProperties=[
            {"fql": 'uppercase("United States")', "propertyName": "properties.prop1"}
        ],
    )
    assert static is not None and static["properties"] == {"prop1": "UNITED STATES"}
    one = {"fql": "snakecase(properties.prop1)", "propertyName": "properties.p"}
    error = refused(fqlDefinedProperties=[one, {**one, "propertyName": "properties.q"}])
    assert error.field == "fqlDefinedProperties" and "less than or equal to 1" in error.message
    error = refused(fqlDefinedProperties=[one], newEventName="Other")
    assert error.field == "fqlDefinedProperties" and "newEventName" in error.message
    error = refused(
        fqlDefinedProperties=[one],
        propertyRenames=[{"oldName": "properties.a", "newName": "properties.b"}],
    )
    assert "propertyRenames" in error.message
    error = refused(fqlDefinedProperties=[{"fql": "lowercase(", "propertyName": "properties.p"}])
    assert error.field == "fqlDefinedProperties[0].fql"


def test_a_tr_6_value_transformations_and_conflicts() -> None:
    event = {"type": "track", "event": "Order", "properties": {"currency": "usd"}}
    values = [{"propertyPaths": ["properties.currency"], "propertyValue": "USD"}]
    out = run(event, propertyValueTransformations=values)
    assert out is not None and out["properties"] == {"currency": "USD"}
    eleven = [f"properties.p{i}" for i in range(11)]
    error = refused(propertyValueTransformations=[{"propertyPaths": eleven, "propertyValue": 1}])
    assert error.field == "propertyValueTransformations[0].propertyPaths"
    twice = ["properties.currency", "properties.currency"]
    error = refused(propertyValueTransformations=[{"propertyPaths": twice, "propertyValue": 1}])
    assert error.field == "propertyValueTransformations[0].propertyPaths[1]"
    assert "twice" in error.message
    error = refused(
        propertyValueTransformations=values,
        propertyRenames=[{"oldName": "properties.currency", "newName": "properties.cur"}],
    )
    assert error.field == "propertyValueTransformations[0].propertyPaths[0]"
    assert "propertyRenames" in error.message
    error = refused(
        propertyValueTransformations=[
            {"propertyPaths": ["properties.a"], "propertyValue": "X"},
            {"propertyPaths": ["properties.b"], "propertyValue": "X"},
        ]
    )
    assert error.field == "propertyValueTransformations[1].propertyValue"
    assert "already exists" in error.message


def test_static_values_on_top_level_and_context() -> None:
    event = {"type": "track", "event": "Order", "userId": "u"}
    out = run(
        event,
        propertyValueTransformations=[
            {"propertyPaths": ["userId", "context.app.name"], "propertyValue": "fixed"}
        ],
    )
    assert out is not None and out["userId"] == "fixed"
    assert out["context"] == {"app": {"name": "fixed"}}
    error = refused(propertyValueTransformations=[{"propertyPaths": ["type"], "propertyValue": 1}])
    assert error.field == "propertyValueTransformations[0].propertyPaths[0]"


def test_new_event_name_drop_allow_and_if() -> None:
    event = {"type": "track", "event": "Order", "properties": {"a": 1, "b": {"c": 2, "d": 3}}}
    out = run(event, newEventName="Order Completed")
    assert out is not None and out["event"] == "Order Completed"
    assert run(event, drop=True) is None
    other = {**event, "event": "Other"}
    assert run(other, drop=True) is other  # the if does not match: the same object
    allowed = run(event, allowProperties=["properties.a", "properties.b.d"])
    assert allowed is not None and allowed["properties"] == {"a": 1, "b": {"d": 3}}
    error = refused(newEventName="X", **{"if": "type = 'identify'"})
    assert error.field == "newEventName"
    assert refused(**{"if": "event = "}).field == "if"


@pytest.mark.parametrize(
    ("algorithm", "name"),
    [("MD5", "md5"), ("SHA-1", "sha1"), ("SHA-256", "sha256"), ("SHA512", "sha512")],
)
def test_hashing(algorithm: str, name: str) -> None:
    event = {"type": "track", "event": "Order", "properties": {"email": "jo@x.io", "n": 7}}
    out = run(
        event,
        hashPropertiesConfiguration={"algorithm": algorithm, "paths": ["properties.email"]},
    )
    assert out is not None
    assert out["properties"]["email"] == hashlib.new(name, b"jo@x.io").hexdigest()
    keyed = run(
        event,
        hashPropertiesConfiguration={
            "algorithm": algorithm,
            "key": "secret",
            "encoding": "BASE64URL",
            "paths": ["properties.email", "properties.n"],
        },
    )
    assert keyed is not None
    mac = hmac.new(b"secret", b"jo@x.io", name).digest()
    assert keyed["properties"]["email"] == base64.urlsafe_b64encode(mac).decode()
    assert (
        keyed["properties"]["n"]
        == base64.urlsafe_b64encode(hmac.new(b"secret", b"7", name).digest()).decode()
    )
    error = refused(hashPropertiesConfiguration={"algorithm": "CRC32", "paths": ["properties.a"]})
    assert error.field == "hashPropertiesConfiguration.algorithm"
    error = refused(
        hashPropertiesConfiguration={"algorithm": "MD5", "encoding": "HEX2", "paths": ["a"]}
    )
    assert error.field == "hashPropertiesConfiguration.encoding"


def test_unknown_and_missing_fields_are_named() -> None:
    assert refused(colour="red").field == "colour"
    with pytest.raises(InvalidError) as caught:
        from_api({"name": "x", "sourceId": "s", "enabled": True})
    assert caught.value.field == "if"


def test_patch_keeps_source_and_event() -> None:
    current = from_api(body(newEventName="A"))
    changed = updated(current, {"name": "renamed", "newEventName": "B", "enabled": False})
    assert (changed.name, changed.new_event_name, changed.enabled) == ("renamed", "B", False)
    for field, value in (("sourceId", "other"), ("if", "event = 'X'")):
        with pytest.raises(InvalidError) as caught:
            updated(current, {field: value})
        assert caught.value.field == field


def test_destination_scope_is_separate_and_disabled_ones_do_not_apply() -> None:
    scoped = from_api(body(destinationMetadataId="webhook", newEventName="Scoped"))
    off = from_api(body(enabled=False, newEventName="Off", **{"if": "event = 'Other'"}))
    compiled = Transformations([scoped, off])
    event = {"type": "track", "event": "Order"}
    assert compiled.apply_source("src", event) is event
    scope = compiled.for_destination("src", "webhook")
    assert scope is not None and scope.apply(event) == {"type": "track", "event": "Scoped"}
    assert compiled.for_destination("src", "other") is None
    assert compiled.apply_source("src", {"type": "track", "event": "Other"}) == {
        "type": "track",
        "event": "Other",
    }


def test_names_that_the_store_cannot_hold_are_refused() -> None:
    assert refused(name="n" * 201).field == "name"
    assert refused(destinationMetadataId="d" * 101).field == "destinationMetadataId"
