"""The validation and enforcement checks on the pure engine.

A-TP-1, A-TP-2, A-TP-3, A-TP-4, A-TP-5, A-TP-7, A-TP-8, A-TP-9, A-TP-10, A-TP-11, A-TP-12.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from headwater.protocols.compiled import PlanError, Rule, compile_plan
from headwater.protocols.enforce import SchemaSettings, enforce

DRAFT7 = "http://json-schema.org/draft-07/schema#"


def _track_rule(
    key: str, props: dict[str, Any], required: tuple[str, ...] = (), version: int = 1
) -> Rule:
    schema = {
        "$schema": DRAFT7,
        "type": "object",
        "properties": {
            "properties": {"type": "object", "properties": props, "required": list(required)}
        },
    }
    return Rule("TRACK", key, schema, version)


def _traits_rule(kind: str, traits: dict[str, Any]) -> Rule:
    schema = {"properties": {"traits": {"type": "object", "properties": traits}}}
    return Rule(kind, "", schema)


def _track(event: str, properties: dict[str, Any], **context: Any) -> dict[str, Any]:
    return {"type": "track", "event": event, "properties": properties, "context": context}


SUB = _track_rule(
    "Subscription Cancelled", {"subscription_id": {"type": "string"}}, ("subscription_id",)
)


def test_a_tp_1_unplanned_event_blocked_case_sensitively() -> None:
    plan = compile_plan([SUB])
    settings = SchemaSettings.from_segment({"track": {"allowUnplannedEvents": False}})
    verdict = enforce(_track("subscription_cancelled", {}), plan, settings, "src1")
    assert verdict.blocked == "unplanned_event"
    allowed = enforce(_track("subscription_cancelled", {}), plan, SchemaSettings(), "src1")
    assert allowed.blocked is None


def test_a_tp_2_unplanned_properties_omitted() -> None:
    plan = compile_plan([SUB])
    settings = SchemaSettings.from_segment({"track": {"allowUnplannedEventProperties": False}})
    event = _track(
        "Subscription Cancelled", {"subscription_id": "23r90jfs9ej", "subscription_name": "premium"}
    )
    before = copy.deepcopy(event)
    verdict = enforce(event, plan, settings, "src1")
    assert event == before  # pure
    assert verdict.blocked is None
    assert verdict.event["properties"] == {"subscription_id": "23r90jfs9ej"}
    assert verdict.event["context"]["protocols"] == {
        "omitted": ["subscription_name"],
        "omitted_on_violation": [],
        "violations": [],
        "sourceId": "src1",
    }


def test_a_tp_3_unplanned_traits_omitted() -> None:
    plan = compile_plan([_traits_rule("IDENTIFY", {"name": {}, "email": {}, "join_date": {}})])
    settings = SchemaSettings.from_segment({"identify": {"allowUnplannedTraits": False}})
    event = {
        "type": "identify",
        "userId": "fe923fjid",
        "traits": {"email": "roger@example.com", "first_name": "Roger"},
    }
    verdict = enforce(event, plan, settings, "s")
    assert verdict.event["traits"] == {"email": "roger@example.com"}
    assert verdict.omitted == ("first_name",)


def test_a_tp_4_required_violation_then_blocked() -> None:
    plan = compile_plan([SUB])
    event = _track("Subscription Cancelled", {"customer_type": "enterprise"})
    expected = {
        "type": "Required",
        "field": "properties.subscription_id",
        "description": "properties.subscription_id is required",
    }
    allowed = enforce(event, plan, SchemaSettings(), "s")
    assert allowed.blocked is None
    assert allowed.event["context"]["protocols"]["violations"] == [expected]
    assert allowed.event["properties"] == {"customer_type": "enterprise"}
    blocking = SchemaSettings.from_segment({"track": {"allowEventOnViolations": False}})
    blocked = enforce(event, plan, blocking, "s")
    assert blocked.blocked == "violations"
    assert blocked.event is event
    assert [v._asdict() for v in blocked.violations] == [expected]


def test_a_tp_5_omit_on_violation() -> None:
    rule = _track_rule(
        "Types", {"integer": {"type": "integer"}, "string": {"type": "string"}, "ok": {}}
    )
    settings = SchemaSettings.from_segment({"track": {"allowPropertiesOnViolations": False}})
    verdict = enforce(
        _track("Types", {"integer": 1.5, "string": 7, "ok": 1}), compile_plan([rule]), settings, "s"
    )
    assert verdict.event["properties"] == {"ok": 1}
    protocols = verdict.event["context"]["protocols"]
    assert protocols["omitted_on_violation"] == ["integer", "string"]
    assert sorted(v["description"] for v in protocols["violations"]) == [
        "Invalid type. Expected: integer, given: number",
        "Invalid type. Expected: string, given: integer",
    ]


def test_a_tp_7_permitted_values() -> None:
    plan = compile_plan(
        [_track_rule("Season", {"season": {"type": "string", "pattern": "fall|winter|spring"}})]
    )
    bad = enforce(_track("Season", {"season": "summer"}), plan, SchemaSettings(), "s")
    assert [v.type for v in bad.violations] == ["Pattern"]
    event = _track("Season", {"season": "winter"})
    good = enforce(event, plan, SchemaSettings(), "s")
    assert good.event is event and good.violations == ()


@pytest.mark.parametrize(
    ("version", "violated"),
    [(2, True), (None, False), (3.2, False), (3, False), ("2", False), (True, False)],
)
def test_a_tp_8_event_versions(version: Any, violated: bool) -> None:
    v1 = _track_rule("Order Completed", {"order_id": {}}, version=1)
    v2 = _track_rule("Order Completed", {"order_id": {}, "subtotal": {}}, ("subtotal",), version=2)
    plan = compile_plan([v2, v1])
    context = {} if version is None else {"protocols": {"event_version": version}}
    verdict = enforce(
        _track("Order Completed", {"order_id": "x"}, **context), plan, SchemaSettings(), "s"
    )
    assert bool(verdict.violations) is violated
    if violated:
        assert verdict.event["context"]["protocols"]["event_version"] == 2


def test_planned_names_come_from_the_oldest_version() -> None:
    v1 = _track_rule("Order Completed", {"order_id": {}}, version=1)
    v2 = _track_rule("Order Completed", {"order_id": {}, "subtotal": {}}, version=2)
    settings = SchemaSettings.from_segment({"track": {"allowUnplannedEventProperties": False}})
    event = _track(
        "Order Completed", {"order_id": "x", "subtotal": 3}, protocols={"event_version": 2}
    )
    verdict = enforce(event, compile_plan([v1, v2]), settings, "s")
    assert verdict.omitted == ("subtotal",)


COMMON = Rule(
    "COMMON",
    "",
    {
        "type": "object",
        "properties": {
            "context": {
                "type": "object",
                "properties": {"device": {"type": "object", "required": ["advertisingId"]}},
                "required": ["device"],
            }
        },
    },
)


def test_a_tp_9_common_schema_and_advanced_block() -> None:
    plan = compile_plan([COMMON])
    event = {"type": "identify", "userId": "u", "context": {"device": {}}}
    verdict = enforce(event, plan, SchemaSettings(), "s")
    assert [v._asdict() for v in verdict.violations] == [
        {
            "type": "Required",
            "field": "context.device.advertisingId",
            "description": "context.device.advertisingId is required",
        }
    ]
    blocking = SchemaSettings.from_segment({"identify": {"commonEventOnViolations": "Block"}})
    assert enforce(event, plan, blocking, "s").blocked == "common_schema"
    ok = {"type": "identify", "userId": "u", "context": {"device": {"advertisingId": "a"}}}
    assert enforce(ok, plan, blocking, "s").event is ok


def test_a_tp_10_all_of_at_root() -> None:
    plan = compile_plan([Rule("COMMON", "", {"allOf": [{"required": ["userId"]}]})])
    verdict = enforce(
        {"type": "track", "event": "X", "anonymousId": "a"}, plan, SchemaSettings(), "s"
    )
    assert verdict.violations[-1]._asdict() == {
        "type": "Number All Of",
        "field": "(root)",
        "description": "Must validate all the schemas (allOf)",
    }


def test_a_tp_11_lookahead_refused_not_pattern_enforced() -> None:
    with pytest.raises(
        PlanError, match="TRACK rule 'Signup' version 1: pattern '\\^\\(\\?!test\\)"
    ):
        compile_plan(
            [_track_rule("Signup", {"code": {"type": "string", "pattern": "^(?!test).*"}})]
        )
    plan = compile_plan(
        [_track_rule("Signup", {"code": {"type": "string", "not": {"pattern": "^test"}}})]
    )
    assert enforce(_track("Signup", {"code": "test1"}), plan, SchemaSettings(), "s").violations
    assert not enforce(_track("Signup", {"code": "prod"}), plan, SchemaSettings(), "s").violations


@pytest.mark.parametrize(
    ("call", "rule_key"), [("page", "Page Viewed"), ("screen", "Screen Viewed")]
)
def test_a_tp_12_page_and_screen_as_viewed_events(call: str, rule_key: str) -> None:
    plan = compile_plan([_track_rule(rule_key, {"path": {"type": "string"}})])
    event = {"type": call, "name": "Homepage", "properties": {"path": 3}}
    verdict = enforce(event, plan, SchemaSettings(), "s")
    assert [v.field for v in verdict.violations] == ["properties.path"]
    strict = SchemaSettings.from_segment({"track": {"allowUnplannedEvents": False}})
    assert enforce(event, compile_plan([SUB]), strict, "s").blocked is None  # never unplanned


def test_common_schema_sees_what_standard_controls_left() -> None:
    common = Rule(
        "COMMON", "", {"properties": {"properties": {"properties": {"extra": {"type": "string"}}}}}
    )
    plan = compile_plan([SUB, common])
    settings = SchemaSettings.from_segment({"track": {"allowUnplannedEventProperties": False}})
    event = _track("Subscription Cancelled", {"subscription_id": "a", "extra": 1})
    verdict = enforce(event, plan, settings, "s")
    assert verdict.violations == () and verdict.omitted == ("extra",)
    omit = SchemaSettings.from_segment({"track": {"commonEventOnViolations": "omit_properties"}})
    verdict = enforce(event, plan, omit, "s")
    assert verdict.omitted_on_violation == ("extra",)
    assert verdict.event["properties"] == {"subscription_id": "a"}


def test_settings_refuse_wrong_values() -> None:
    with pytest.raises(ValueError, match=r"track\.commonEventOnViolations"):
        SchemaSettings.from_segment({"track": {"commonEventOnViolations": "OMIT_TRAITS"}})
    with pytest.raises(ValueError, match=r"identify\.allowUnplannedTraits"):
        SchemaSettings.from_segment({"identify": {"allowUnplannedTraits": "no"}})
    settings = SchemaSettings.from_segment(
        {"forwardingViolationsTo": "", "forwardingBlockedEventsTo": "b"}
    )
    assert settings.forwarding_violations_to is None
    assert settings.forwarding_blocked_events_to == "b"


@pytest.mark.parametrize(
    ("schema", "reason"),
    [
        ({"type": 5}, "invalid JSON Schema"),
        ({"$schema": "https://json-schema.org/draft/2020-12/schema"}, "unsupported \\$schema"),
        (
            {"$ref": "#/definitions/a", "definitions": {"a": {"$ref": "#/definitions/a"}}},
            "\\$ref cycle",
        ),
        ({"properties": {"tree": {"items": {"$ref": "#"}}}}, "\\$ref cycle"),
        ({"$ref": "https://example.com/s.json"}, "not local"),
        ({"patternProperties": {"(a)\\1": {}}}, "backreference"),
        ({"properties": {"p": {"pattern": "(?<=a)b"}}}, "lookaround"),
    ],
)
def test_bad_plans_name_the_rule(schema: dict[str, Any], reason: str) -> None:
    good = _track_rule("Good", {})
    with pytest.raises(PlanError, match=f"^TRACK rule 'Bad' version 2: .*{reason}"):
        compile_plan([good, Rule("TRACK", "Bad", schema, 2)])


def test_drafts_04_06_07_accepted() -> None:
    for draft in ("04", "06", "07"):
        schema = {"$schema": f"http://json-schema.org/draft-{draft}/schema#", "required": ["event"]}
        plan = compile_plan([Rule("COMMON", "", schema)])
        assert enforce({"type": "alias"}, plan, SchemaSettings(), "s").violations
