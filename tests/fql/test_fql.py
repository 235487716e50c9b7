"""FQL against the tables of Segment's FQL reference (AC-040 … AC-056) and its stated rules."""

from __future__ import annotations

from typing import Any

import pytest

from headwater.errors import FQLEvaluationError, FQLSyntaxError, NotRepresentable
from headwater.fql import MAX_BYTES, parse

DOCS_EVENT = {
    "event": "Button Clicked",
    "type": "track",
    "context": {"library": {"name": "analytics.js", "version": "1.0"}},
    "properties": {"features": ["discounts", "dark-mode"]},
}


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("event = 'Button Clicked'", True),  # AC-040
        ("event = 'Screen Tapped'", False),  # AC-041
        ("context.path.path = '/login'", False),  # AC-042
        ("type = 'identify' or type = 'track'", True),  # AC-043
        ("event = 'Button Clicked' and type = 'track'", True),  # AC-044
        ("match( context.library.version, '1.*' )", True),  # AC-045
        ("match( context.library.version, '2.*' )", False),  # AC-046
        ("type = 'track' and ( event = 'Click' or match( event, 'Button *' ) )", True),  # AC-047
        ("!contains( context.library.name, 'js' )", False),  # AC-048
        ("'dark-mode' in properties.features", True),  # AC-049
        ("'blink' in properties.features", False),  # AC-050
    ],
)
def test_the_reference_table(statement: str, expected: bool) -> None:
    assert parse(statement).matches(DOCS_EVENT) is expected


@pytest.mark.parametrize(
    ("text", "pattern", "expected"),
    [
        ("abcd", "a*d", True),
        ("", "*", True),
        ("abc", "ab", False),
        ("abcd", "a??d", True),
        ("abcd", "*d", True),
        ("ab*d", "ab\\*d", True),
        ("abCd", "ab[cC]d", True),
        ("abcd", "ab[a-z]d", True),
        ("abcd", "ab[A-Z]d", False),  # AC-051
        ("ab/c", "a*", True),  # "/" is an ordinary character
        ("abd", "ab[^a-c]", True),
        ("abc", "ab[^a-c]", False),
        ("a.c", "a.c", True),
        ("abc", "a.c", False),  # no regular-expression meaning leaks in
        ("abc", "ab[c", False),
        ("abc", "abc\\", False),  # malformed patterns match nothing
        ("Order Completed", "order*", False),  # case sensitive
    ],
)
def test_glob_table(text: str, pattern: str, expected: bool) -> None:
    assert parse(f"match('{text}', '{_quote(pattern)}')").matches({}) is expected


def _quote(pattern: str) -> str:
    return pattern.replace("\\", "\\\\").replace("'", "\\'")


@pytest.mark.parametrize(
    ("statement", "value"),
    [
        ("contains(null, 'x')", False),
        ("length(null)", 0),
        ("lowercase(null)", None),
        ("typeof(null)", "null"),
        ("match(null, '*')", False),  # AC-052
        ("length('ア')", 3),
        ("length('a')", 1),
        ("length(properties.features)", 2),
        ("kebabcase('test string')", "test-string"),
        ("snakecase('test string')", "test_string"),
        ("titlecase('test string')", "Test String"),  # AC-055
        ("snakecase('orderCompleted')", "order_completed"),
        ("kebabcase('Order Completed')", "order-completed"),
        ("uppercase(event)", "BUTTON CLICKED"),
        ("lowercase(event)", "button clicked"),
        ("typeof('a')", "string"),
        ("typeof(1.5)", "number"),
        ("typeof(true)", "bool"),
        ("typeof(properties.features)", "list"),
        ("typeof(context)", "object"),
        ("typeof(missing)", "null"),
        ("number('12')", 12),
        ("number('1.5')", 1.5),
        ("number(true)", 1),
        ("string(12)", "12"),
        ("string(true)", "true"),
        ("string(properties.features)", '["discounts","dark-mode"]'),
        ("bool('true')", True),
        ("bool(0)", False),
        ("bool(null)", None),
        ("semver(context.library.version, '>=', '1.0.0')", True),
        ("semver(context.library.version, '<', '0.9')", False),
    ],
)
def test_functions_and_null_rules(statement: str, value: Any) -> None:
    result = parse(statement).evaluate(DOCS_EVENT)
    assert result == value and type(result) is type(value)


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("'1' = 1", False),
        ("1 != '1'", True),
        ("'a' > 'b'", False),
        ("'b' > 'a'", False),  # AC-054
        ("1 = 1.0", True),
        ("true = 1", False),
        ("null = null", True),
        ("missing = null", True),
        ("properties.features = ['discounts', 'dark-mode']", True),
        ("properties.features = ['dark-mode', 'discounts']", False),
        ("context.library = context.library", True),
        ("2 > 1", True),
        ("2 >= 2", True),
        ("1 < 2", True),
        ("1 <= 0", False),
        ("'2' > 1", False),
        ("null < 1", False),
        ("length(userId) > 0", False),  # A-FQL-9: no userId
        ("type in ['track', 'identify']", True),
        ("!( type in ['track', 'identify'] )", False),
        ("1 in ['1']", False),
        ("properties.features in ['x']", False),
        ("event", False),
        ("properties.features", False),  # a bare value is true only if `true`
        ("!missing", True),
        ("event = 'Button Clicked' or missing", True),
        ("missing or missing", False),
        ("type = 'track' and event = 'x' or type = 'track'", True),  # and binds tighter than or
    ],
)
def test_type_strictness_and_logic(statement: str, expected: bool) -> None:
    assert parse(statement).matches(DOCS_EVENT) is expected


def test_escaped_path() -> None:  # AC-053
    event = {"properties": {"product 1": {"price": "19.99"}, "a.b": 1, "list": [{"id": 7}]}}
    assert parse("properties.product\\ 1.price = '19.99'").matches(event)
    assert parse("properties.a\\.b = 1").matches(event)
    assert parse("properties.list.0.id = 7").matches(event)
    assert parse("properties.list.1.id = null").matches(event)


def test_envelope_fields_by_their_snake_case_names() -> None:
    event = {"receivedAt": "2023-04-21T19:55:01.000Z", "userId": "u1"}
    assert parse("received_at >= '2023-04-21T19:55:00.933Z'").matches(event)
    assert not parse("received_at < '2023-04-21T19:55:00.933Z'").matches(event)
    assert parse("user_id = 'u1'").matches(event)
    assert parse("received_at > '2023-04-21T21:55:00.933+02:00'").matches(event)
    assert not parse("received_at > 'yesterday'").matches(event)


@pytest.mark.parametrize(
    ("statement", "position"),
    [
        ('userId = oops"', 13),  # AC-056: the string never closes
        ("event = ", 8),
        ("event = 'a' and", 15),
        ("(event = 'a'", 12),
        ("event = 'a')", 11),
        ("nosuch(event)", 0),
        ("contains(event)", 0),
        ("event == 'a'", 7),
        ("properties..x = 1", 11),
        ("[1, 2", 5),
        ("event = 'a' event", 12),
        ("event # 1", 6),
    ],
)
def test_syntax_errors_name_the_position(statement: str, position: int) -> None:
    with pytest.raises(FQLSyntaxError) as raised:
        parse(statement)
    assert raised.value.position == position
    assert f"at position {position}" in str(raised.value)


def test_statements_over_5_kb_are_refused() -> None:  # AC-066
    clause = " or event = 'x'"
    text = "event = 'x'" + clause * ((MAX_BYTES - 11) // len(clause))
    text += " " * (MAX_BYTES - len(text.encode()))
    parse(text)  # exactly 5 KB
    with pytest.raises(FQLSyntaxError, match="longer than 5120 bytes"):
        parse(text + " ")


@pytest.mark.parametrize(
    "statement",
    [
        "length(context) > 0",
        "length(1) = 1",
        "number('abc') = 1",
        "bool('maybe')",
    ],
)
def test_statements_without_an_answer_raise(statement: str) -> None:
    with pytest.raises(FQLEvaluationError):
        parse(statement).evaluate(DOCS_EVENT)


def test_browser_form() -> None:
    assert parse(
        "event = 'Order Completed' and contains(properties.email, '@segment.com')"
    ).to_ir() == [
        "and",
        ["=", "event", {"value": "Order Completed"}],
        ["contains", "properties.email", {"value": "@segment.com"}],
    ]
    assert parse("!(type in ['track', 'identify'])").to_ir() == [
        "!",
        ["in", "type", [{"value": "track"}, {"value": "identify"}]],
    ]
    for statement in (
        "uppercase(event) = 'X'",
        "contains(lowercase(event), 'x')",
        "properties.a\\.b = 1",
    ):
        with pytest.raises(NotRepresentable):
            parse(statement).to_ir()
