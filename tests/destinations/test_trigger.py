"""Mapping triggers answer as @segment/destination-subscriptions 3.37 (parseFql + validate) does.

Every expectation here was checked against the package under Node; the quirky ones (no
precedence, ``!= 5`` not matching a missing field, ``match`` without ``*``) are the package's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from headwater.destinations.trigger import Trigger, parse_trigger, to_condition
from headwater.errors import TriggerError

TRACK: dict[str, Any] = {
    "type": "track",
    "event": "Order Completed",
    "userId": "u1",
    "properties": {
        "total": 101,
        "plan": "pro",
        "coupon": None,
        "flag": True,
        "off": False,
        "zero": 0,
        "empty": "",
        "count": "5",
        "items": [{"sku": "A1"}, {"sku": "B2"}],
        "nested": {"level": {"deep": "yes"}},
        "my key": "spaced",
        "a.b": "dotted",
    },
    "context": {"traits": {"username": "testing-123"}, "app": {"name": "Shop"}},
}
IDENTIFY: dict[str, Any] = {
    "type": "identify",
    "userId": "u1",
    "traits": {"email": "a@example.com", "age": 30, "vip": False},
}
PAGE: dict[str, Any] = {"type": "page", "name": "Home", "properties": {"path": "/"}}


def props(**values: Any) -> dict[str, Any]:
    return {"type": "track", "event": "E", "properties": values}


Case = tuple[str, dict[str, Any], bool]


def check(cases: list[Case]) -> None:
    wrong = [
        (text, event, expected)
        for text, event, expected in cases
        if parse_trigger(text).matches(event) is not expected
    ]
    assert wrong == []


# --- type, event, name, userId ----------------------------------------------------------------

EVENT_FIELDS: list[Case] = [
    ('type = "track"', TRACK, True),
    ('type = "track"', IDENTIFY, False),
    ('type = "Track"', TRACK, False),  # case sensitive
    ('type != "track"', IDENTIFY, True),
    ('type != "track"', TRACK, False),
    ('type != "track"', {"event": "x"}, True),  # a missing type is "not track"
    ('event = "Order Completed"', TRACK, True),
    ('event = "order completed"', TRACK, False),
    ('event = "Order Completed"', IDENTIFY, False),  # no event at all
    ('event != "Order Completed"', IDENTIFY, True),
    ('event != "Order Completed"', {"event": None}, True),
    ("event = 5", {"event": "5"}, True),  # the value is compared as text
    ("event = 5", {"event": 5}, False),  # ... and the event's value must be a string
    ("event != 5", {"event": 5}, True),
    ("event = null", {"event": "null"}, True),  # no "exists" on event: null is just text
    ("event = null", {}, False),
    ("event = true", {"event": True}, False),
    ("event = 1.50", {"event": "1.5"}, True),  # numbers as JavaScript prints them
    ("event = 100000000000000000000000", {"event": "1e+23"}, True),
    ('name = "Home"', PAGE, True),
    ('name != "Home"', PAGE, False),
    ("name != null", PAGE, True),
    ("name = null", TRACK, True),
    ("name = true", {"name": "true"}, True),  # only userId has "is true"
    ('userId = "u1"', TRACK, True),
    ("userId != null", TRACK, True),
    ("userId != null", {"userId": None}, False),
    ("userId = null", {"anonymousId": "a"}, True),
    ("userId = true", {"userId": True}, True),
    ("userId = true", {"userId": "true"}, False),
    ("userId = false", {"userId": False}, True),
    ("userId = 42", {"userId": "42"}, True),
    ("userId = 42", {"userId": 42}, False),
]


def test_event_type_name_and_user_id() -> None:
    check(EVENT_FIELDS)


# --- property operators -------------------------------------------------------------------------

PROPERTY_OPERATORS: list[Case] = [
    # = / != with text: the actual value must be that exact string
    ('properties.plan = "pro"', TRACK, True),
    ('properties.plan = "Pro"', TRACK, False),
    ('properties.plan = "pro"', props(), False),
    ('properties.plan = "pro"', props(plan=None), False),
    ('properties.count = "5"', props(count="5"), True),
    ('properties.count = "5"', props(count=5), False),
    ('properties.plan != "pro"', props(plan="free"), True),
    ('properties.plan != "pro"', props(), True),  # missing, null and numbers are all "not pro"
    ('properties.plan != "pro"', props(plan=None), True),
    ('properties.plan != "pro"', props(plan=5), True),
    ('properties.plan != "pro"', TRACK, False),
    ("properties.plan = pro", TRACK, True),  # an unquoted word is text too
    # = / != with a number: the actual value must be a number
    ("properties.total = 101", TRACK, True),
    ("properties.total = 101", props(total=101.0), True),
    ("properties.total = 101", props(total="101"), False),
    ("properties.total = 101", props(), False),
    ("properties.total = 101", props(total=None), False),
    ("properties.total != 100", TRACK, True),
    ("properties.total != 101", TRACK, False),
    ("properties.total != 100", props(), False),  # not a number, so not "not 100" either
    ("properties.total != 100", props(total="99"), False),
    ("properties.total = -1.5", props(total=-1.5), True),
    ("properties.total = +3", props(total=3), True),
    ("properties.total = 007", props(total=7), True),
    ("properties.total = 9007199254740993", props(total=9007199254740992), True),  # doubles
    # < <= > >=: numbers only; the value goes through JavaScript's Number()
    ("properties.total > 100", TRACK, True),
    ("properties.total > 101", TRACK, False),
    ("properties.total >= 101", TRACK, True),
    ("properties.total < 101", TRACK, False),
    ("properties.total <= 101", TRACK, True),
    ("properties.total < 200", props(total=-3.5), True),
    ("properties.total > 100", props(total="101"), False),
    ("properties.total > 100", props(), False),
    ("properties.total > 100", props(total=None), False),
    ("properties.total > 0", props(total=True), False),
    ('properties.total > "100"', TRACK, True),
    ('properties.total > " 0x10 "', props(total=17), True),
    ('properties.total > "abc"', TRACK, False),  # NaN: never
    ('properties.total < "abc"', TRACK, False),
    ('properties.total >= ""', props(total=0), True),  # Number("") is 0
    ("properties.total >= true", props(total=1), True),  # Number(true) is 1
    ("properties.total > -", props(total=1), False),  # a lone sign is NaN
    # = true / = false: that boolean only
    ("properties.flag = true", TRACK, True),
    ("properties.flag = true", props(flag="true"), False),
    ("properties.flag = true", props(flag=1), False),
    ("properties.flag = true", props(), False),
    ("properties.off = false", TRACK, True),
    ("properties.off = false", props(off=0), False),
    ("properties.off = false", props(off=None), False),
    ('properties.flag = "true"', props(flag="true"), True),
    ("properties.flag != true", props(flag=False), True),  # != true is text: "not the string"
    # != null (exists) / = null (does not exist)
    ("properties.plan != null", TRACK, True),
    ("properties.coupon != null", TRACK, False),
    ("properties.missing != null", TRACK, False),
    ("properties.zero != null", TRACK, True),  # 0, "" and false exist
    ("properties.empty != null", TRACK, True),
    ("properties.off != null", TRACK, True),
    ("properties.items != null", TRACK, True),
    ("properties.missing = null", TRACK, True),
    ("properties.coupon = null", TRACK, True),
    ("properties.zero = null", TRACK, False),
    # contains / starts with / ends with, and their negations: strings only
    ('contains(event, "Order")', TRACK, True),
    ('contains(event, "order")', TRACK, False),
    ('contains(event, "Order")', {"event": 5}, False),
    ('!contains(event, "Refund")', TRACK, True),
    ('!contains(event, "Order")', TRACK, False),
    ('!contains(event, "Refund")', IDENTIFY, False),  # missing: neither contains nor not
    ('!contains(event, "Refund")', {"event": 5}, False),
    ('contains(properties.plan, "r")', TRACK, True),
    ("contains(properties.total, 10)", props(total="1010"), True),
    ("contains(properties.total, 10)", props(total=1010), False),
    ('contains(properties.plan, "")', props(plan=""), True),
    ('contains(context.app.name, "ho")', TRACK, True),
    ('contains(traits.email, "@example.")', IDENTIFY, True),
    ('contains(name, "om")', PAGE, True),
    ('contains(userId, "u")', TRACK, True),
    ('event = "Order Completed" and contains(type, "zz")', TRACK, True),  # not for type: skipped
    ('match(event, "Order*")', TRACK, True),
    ('match(event, "Order*")', {"event": "Refund Order"}, False),
    ('match(event, "*Completed")', TRACK, True),
    ('match(event, "*Completed")', {"event": "Completed Order"}, False),
    ('!match(event, "Order*")', TRACK, False),
    ('!match(event, "Refund*")', TRACK, True),
    ('!match(event, "*Started")', TRACK, True),
    ('!match(event, "*Started")', IDENTIFY, False),
    ('match(event, "Xompleted")', TRACK, True),  # no "*": ends with all but the first character
    ('match(event, "*")', {"event": ""}, True),
    ('match(properties.plan, "p*")', TRACK, True),
    ('match(properties.plan, "*ro")', TRACK, True),
    ('match(properties.plan, "*ro")', props(plan=["pro"]), False),
    # words the package happens to accept in operator position
    ("properties.plan contains r", TRACK, True),
    ('properties.plan starts_with "p"', TRACK, True),
    ("properties.coupon exists", TRACK, False),
    ("properties.plan exists", TRACK, True),
    ("properties.coupon !exists", TRACK, False),  # read as operator "!": never matches
    ("properties.coupon !exists", props(), False),
    ('properties.plan == "pro"', TRACK, False),  # "=" then "=" as the value
]


def test_property_operators() -> None:
    check(PROPERTY_OPERATORS)


# --- traits, context, paths ---------------------------------------------------------------------

PATHS: list[Case] = [
    ('traits.email = "a@example.com"', IDENTIFY, True),
    ("traits.age >= 30", IDENTIFY, True),
    ("traits.vip = false", IDENTIFY, True),
    ("traits.email != null", TRACK, False),  # traits is the top-level object, not context.traits
    ('context.traits.username = "testing-123"', TRACK, True),
    ('context.app.name = "Shop"', TRACK, True),
    ("context.app != null", TRACK, True),
    ('properties.nested.level.deep = "yes"', TRACK, True),
    ("properties.nested.level.missing = null", TRACK, True),
    ("properties.nested.nope.deep = null", TRACK, True),
    ('properties.items.\\1.sku = "B2"', TRACK, True),  # \1: a digit must be escaped to be a key
    ("properties.items.\\2 = null", TRACK, True),
    ('properties.items\\[0\\].sku = "A1"', TRACK, True),
    ("properties.items.length = 2", TRACK, True),
    ("properties.plan.length > 2", TRACK, True),
    ('properties.plan.\\0 = "p"', TRACK, True),
    ('properties.my\\ key = "spaced"', TRACK, True),
    ('properties.a\\.b = "dotted"', TRACK, False),  # "." splits the path even when escaped
    ('properties.a\\.b = "deep"', props(a={"b": "deep"}), True),
    ("properties.zero.below = 0", TRACK, True),  # a falsy value ends the walk and is the answer
    ('properties.empty.below = ""', TRACK, True),
    ("properties.off.below = false", TRACK, True),
    ("properties.flag.below != null", TRACK, False),
    ("properties.constructor != null", props(), True),  # JavaScript's Object.prototype
    ("properties.total.toFixed != null", TRACK, True),
    ("properties.constructor = null", {"type": "track"}, True),  # no properties at all
    ('properties.x-y = "z"', props(**{"x-y": "z"}), True),
    ("properties.total > 1", {"type": "track", "properties": "not an object"}, False),
    ("properties.length = 13", {"type": "track", "properties": "not an object"}, True),
    ("properties.emoji.length = 3", props(emoji="a😀"), True),  # UTF-16 code units
    ('contains(properties.e, "😀")', props(e="x😀y"), True),
]


def test_traits_context_and_paths() -> None:
    check(PATHS)


# --- and / or, parentheses ----------------------------------------------------------------------

COMBINATIONS: list[Case] = [
    ('type = "track" and event = "Order Completed"', TRACK, True),
    ('type = "track" and event = "Order Started"', TRACK, False),
    ('type = "identify" or type = "group"', IDENTIFY, True),
    ('type = "identify" or type = "group"', {"type": "group"}, True),
    ('type = "identify" or type = "group"', TRACK, False),
    # no precedence: the last and/or of a group joins all of its conditions
    ('type = "identify" or type = "track" and event = "nope"', TRACK, False),
    ('type = "identify" or type = "track" and event = "nope"', IDENTIFY, False),
    ('type = "page" and type = "track" or event = "Order Completed"', TRACK, True),
    ('type = "page" and type = "page" or type = "track"', TRACK, True),
    ('type = "track" event = "Order Completed"', TRACK, True),  # no joiner: and
    ('type = "page" event = "Order Completed"', TRACK, False),
    ('type = "identify" OR type = "track"', TRACK, False),  # OR is not a keyword: and
    # parentheses group once
    ('(type = "identify" or type = "track") and event = "Order Completed"', TRACK, True),
    ('(type = "identify" or type = "track") and event = "Order Completed"', IDENTIFY, False),
    ('event = "x" or (type = "track" and properties.total > 100)', TRACK, True),
    ('event = "x" or (type = "track" and properties.total > 500)', TRACK, False),
    ('(type = "page")', PAGE, True),
    ('(type = "identify" or type = "track")or(event = "x")', TRACK, False),  # "or(" is a word
    ('(contains(event, "Order") and type = "track")', TRACK, True),
    # "exists" as a word takes the next token as its value, joiner included
    ('properties.coupon exists or type = "track"', TRACK, False),
    ('type = "track" or properties.plan exists', IDENTIFY, False),
]


def test_and_or_and_parentheses() -> None:
    check(COMBINATIONS)


# --- quoting, escapes, whitespace ---------------------------------------------------------------

QUOTING: list[Case] = [
    ("event = 'Order Completed'", TRACK, False),  # single quotes stay part of the value
    ("event = 'Order Completed'", {"event": "'Order Completed'"}, True),
    ('event = "a\\b"', {"event": "a\\b"}, True),  # no escapes in strings
    ('event = "a\\"b"', {"event": "a\\"}, True),  # the string ends at the first quote
    ('event = "it\'s"', {"event": "it's"}, True),
    ('event = ""', {"event": ""}, True),
    ('event = "two  spaces\tand tab"', {"event": "two  spaces\tand tab"}, True),
    ('event = "😀"', {"event": "😀"}, True),
    ('event="Order Completed"and type="track"', TRACK, True),  # 'and"...' reads as strings
    ('event="Order Completed"and type="page"', TRACK, True),
    ('type="track"', TRACK, True),
    ('\ttype\n=\n"track"\n', TRACK, True),
    ("properties.total <=101", TRACK, False),  # "<" with "=" as its value
    ("properties.total <= 101", TRACK, True),
    ("event = an", {"event": "a"}, True),  # fql-ts drops the last letter of a cut-off "and"
    ("event = nul", {"event": "n"}, True),
]


def test_quoting_escapes_and_whitespace() -> None:
    check(QUOTING)


# --- acceptance criteria ------------------------------------------------------------------------


def test_ac_073_does_not_exist_matches_null_or_missing() -> None:
    trigger = parse_trigger("properties.coupon = null")  # "properties.coupon does not exist"
    assert trigger.matches({"type": "track", "event": "E", "properties": {"coupon": None}})
    assert trigger.matches({"type": "track", "event": "E", "properties": {}})
    assert not trigger.matches({"type": "track", "event": "E", "properties": {"coupon": "X"}})


@pytest.mark.parametrize(
    "text",
    [
        'event = "Button Clicked" and context.traits != null',
        'event = "Button Clicked" and context.traits exists',
        'event = "Button Clicked" and context.traits.username != null',
    ],
)
def test_ac_070_mapping_b_fires_on_button_clicked_with_context_traits(text: str) -> None:
    event = {
        "type": "track",
        "event": "Button Clicked",
        "userId": "u1",
        "context": {"traits": {"username": "testing-123"}},
    }
    trigger = parse_trigger(text)
    assert trigger.matches(event)
    assert not trigger.matches({**event, "context": {}})
    assert not trigger.matches({**event, "event": "Button Hovered"})


# --- invalid triggers ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "reason", "position"),
    [
        ("", "no condition", 0),
        ("   ", "no condition", 0),
        ('Event = "x"', "no condition", 0),  # field names are case sensitive
        ('foo = "x" and bar = 1', "no condition", 0),
        ('event = "Order', "unterminated string", 8),
        ("properties.items.$.price = 1", "invalid character '$'", 17),  # no .$ array paths
        ("properties.$x = 1", "invalid character '$'", 11),
        ('event = "x" \r', "invalid character '\\r'", 12),
        ('event = "x"\r', "unterminated string", 10),  # the quote before \r opens a new string
        ('event = "😀" and properties.$x = 1', "invalid character '$'", 27),  # in characters
        ('event !="x"', "expected '=' and a space after '!', got '='", 6),
        ("properties.total>5", "unexpected '>' after 'total'", 16),
        ('event = "x" and type', "'type' needs an operator and a value", 16),
        ("event", "'event' needs an operator and a value", 0),
        ("contains", "contains() is missing its 1st argument", 0),
        ("match(event", "match() is missing its 2nd argument", 0),
        ('(event = "x"', "'(' is never closed", 0),
        ('((event = "x"))', "parentheses cannot nest", 1),
        ('event = "x" and (type = "a" or (type = "b"))', "parentheses cannot nest", 31),
        ('event = "x" and ()', "'( )' holds no condition", 16),
        ("properties.\\. != null", "'properties..' names no field", 0),
        ("properties.total = 5.", "a number cannot end with '.'", 20),
        ("properties.total = 1.2.3", "a number has two decimal points", 22),
        ("properties.x\\", "a backslash at the end escapes nothing", 12),
        ('event = "x" and toString', "'toString' needs an operator and a value", 16),
    ],
)
def test_invalid_triggers_say_what_and_where(text: str, reason: str, position: int) -> None:
    with pytest.raises(TriggerError) as caught:
        parse_trigger(text)
    assert caught.value.reason.startswith(reason)
    assert caught.value.position == position
    assert caught.value.source == text
    assert f"at position {position}" in str(caught.value)
    assert isinstance(caught.value, ValueError)


# --- parse trees --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "condition"),
    [
        (
            'type = "track" and event = "Order Completed"',
            {
                "type": "group",
                "operator": "and",
                "children": [
                    {"type": "event-type", "operator": "=", "value": "track"},
                    {"type": "event", "operator": "=", "value": "Order Completed"},
                ],
            },
        ),
        (
            '(type = "a" or type = "b")',
            {
                "type": "group",
                "operator": "or",
                "children": [
                    {"type": "event-type", "operator": "=", "value": "a"},
                    {"type": "event-type", "operator": "=", "value": "b"},
                ],
            },
        ),
        (
            "properties.coupon = null and context.traits != null and traits.vip = false",
            {
                "type": "group",
                "operator": "and",
                "children": [
                    {"type": "event-property", "name": "coupon", "operator": "not_exists"},
                    {"type": "event-context", "name": "traits", "operator": "exists"},
                    {"type": "event-trait", "name": "vip", "operator": "is_false"},
                ],
            },
        ),
        (
            'properties.total = 5 or properties.total != 6 or properties.total < "7"',
            {
                "type": "group",
                "operator": "or",
                "children": [
                    {
                        "type": "event-property",
                        "name": "total",
                        "operator": "number_equals",
                        "value": 5,
                    },
                    {
                        "type": "event-property",
                        "name": "total",
                        "operator": "number_not_equals",
                        "value": 6,
                    },
                    {"type": "event-property", "name": "total", "operator": "<", "value": "7"},
                ],
            },
        ),
        (
            '!contains(name, "x") and match(properties.a.b, "p*") and !match(userId, "*q")',
            {
                "type": "group",
                "operator": "and",
                "children": [
                    {"type": "name", "operator": "not_contains", "value": "x"},
                    {
                        "type": "event-property",
                        "name": "a.b",
                        "operator": "starts_with",
                        "value": "p",
                    },
                    {"type": "userId", "operator": "not_ends_with", "value": "q"},
                ],
            },
        ),
        (
            "context.traits exists",
            {
                "type": "group",
                "operator": "and",
                "children": [
                    {
                        "type": "event-context",
                        "name": "traits",
                        "operator": "exists",
                        "value": "eos",
                    }
                ],
            },
        ),
        (
            "properties.total > -",
            {
                "type": "group",
                "operator": "and",
                "children": [
                    {"type": "event-property", "name": "total", "operator": ">", "value": None}
                ],
            },
        ),
        (
            'match(event, "😀abc")',
            {
                "type": "group",
                "operator": "and",
                "children": [{"type": "event", "operator": "ends_with", "value": "\ude00abc"}],
            },
        ),
    ],
)
def test_to_condition_is_parse_fql_json(text: str, condition: dict[str, Any]) -> None:
    assert to_condition(parse_trigger(text)) == condition


# --- the Trigger object -------------------------------------------------------------------------


def test_trigger_is_a_frozen_value_named_by_its_source() -> None:
    trigger = parse_trigger('type = "track"')
    assert trigger == Trigger('type = "track"')
    assert hash(trigger) == hash(Trigger('type = "track"'))
    assert trigger.source == 'type = "track"'
    assert repr(trigger) == "Trigger(source='type = \"track\"')"
    with pytest.raises(dataclasses.FrozenInstanceError):
        trigger.source = "x"  # type: ignore[misc]


def test_one_trigger_serves_many_events() -> None:
    trigger = parse_trigger('type = "track" and properties.total >= 100')
    events = [props(total=n) for n in range(0, 200, 10)]
    assert [trigger.matches(event) for event in events] == [n >= 100 for n in range(0, 200, 10)]
