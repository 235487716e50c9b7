"""Deep FQL: a clear FQLSyntaxError past MAX_DEPTH, and no step of the deepest accepted
statement (parse, compile, evaluate, the browser's IR) near Python's recursion limit."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from headwater import fql
from tests.support.limits import with_stack_budget

D = fql.MAX_DEPTH

# Each nesting form at exactly MAX_DEPTH levels, with the event and the answer it gives.
DEEPEST: dict[str, tuple[str, dict[str, Any], Any]] = {
    "not": ("!" * D + "event = 'x'", {"event": "x"}, True),  # an even number of "!"
    "parentheses": ("(" * D + "event = 'x'" + ")" * D, {"event": "y"}, False),
    "lists": ("[" * D + "]" * D + " = " + "[" * D + "]" * D, {}, True),
    "calls": ("lowercase(" * D + "event" + ")" * D, {"event": "ABC"}, "abc"),
    "mixed": (
        "!(" * ((D - 1) // 2) + "contains(event, 'x')" + ")" * ((D - 1) // 2),
        {"event": "xyz"},
        False,
    ),
}


@pytest.mark.parametrize("kind", sorted(DEEPEST))
def test_the_deepest_statement_of_each_kind_runs_within_a_small_stack(kind: str) -> None:
    text, event, answer = DEEPEST[kind]

    def every_step() -> Any:
        expression = fql.parse(text)
        value = expression.evaluate(event)
        with contextlib.suppress(fql.NotRepresentable):  # the browser has no lowercase()
            expression.to_ir()
        return value

    assert with_stack_budget(every_step) == answer


@pytest.mark.parametrize(
    ("text", "position"),
    [
        ("!" * 1000 + "true", D),
        ("(" * 2000 + "true" + ")" * 2000, D),
        ("[" * 2000 + "]" * 2000, D),
        ("lowercase(" * 400 + "event" + ")" * 400, len("lowercase(") * D),
        ("!" * (D + 1) + "true", D),
        ("(" * D + "[" + "]" + ")" * D + " = []", D),
        ("event = 'x' and " + "(" * (D + 1) + "true" + ")" * (D + 1), len("event = 'x' and ") + D),
    ],
)
def test_deeper_statements_are_a_syntax_error_naming_the_position(text: str, position: int) -> None:
    with pytest.raises(fql.FQLSyntaxError) as caught:
        with_stack_budget(lambda: fql.parse(text))
    assert caught.value.position == position
    assert f"deeper than {D} levels" in str(caught.value)
    assert f"at position {position}" in str(caught.value)


def test_siblings_do_not_add_up_to_depth() -> None:
    """Depth is nesting, not length: many conditions side by side are fine."""
    text = " and ".join(["(!(event = 'x'))"] * 200)
    assert len(text.encode()) <= fql.MAX_BYTES
    expression = with_stack_budget(lambda: fql.parse(text))
    assert with_stack_budget(lambda: expression.matches({"event": "y"})) is True
    assert len(with_stack_budget(expression.to_ir)) == 201


def test_an_event_nested_deeper_than_python_can_compare_fails_closed() -> None:
    deep: Any = 1
    for _ in range(400):
        deep = {"a": deep}
    expression = fql.parse("properties.deep = properties.other")
    with pytest.raises(fql.FQLEvaluationError, match="too deeply"):
        with_stack_budget(
            lambda: expression.matches({"properties": {"deep": deep, "other": deep}}), frames=300
        )
