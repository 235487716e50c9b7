"""Deep mappings and long triggers: a clear MappingError / TriggerError, never a RecursionError,
and the deepest accepted mapping well within Python's recursion limit."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import pytest

from headwater.destinations.catalog.webhook_actions import DEFINITION
from headwater.destinations.mapping import (
    MAX_DEPTH,
    check_fields,
    compile_mapping,
    validate_mapping,
)
from headwater.destinations.trigger import parse_trigger
from headwater.errors import MappingError, TriggerError
from tests.support.limits import timed, with_stack_budget

# "p" names itself, so a @path whose path comes from another @path finds it at every depth.
EVENT = {"type": "track", "event": "Order", "p": "p", "properties": {"list": [{"b": "B"}]}}


def nest(levels: int, wrap: Callable[[Any], Any], leaf: Any) -> Any:
    value = leaf
    for _ in range(levels):
        value = wrap(value)
    return value


def depth(value: Any) -> int:
    """How far below the mapping's root its deepest object or array sits (the root is 0)."""
    children = value.values() if isinstance(value, dict) else value
    if not isinstance(value, dict | list):
        return -1
    return 1 + max((depth(child) for child in children), default=-1) if children else 0


# Each builder wraps a leaf in n levels of one kind of nesting; the second item is the value
# the deepest accepted mapping renders (None: not checked).
BUILDERS: dict[str, tuple[Callable[[int], Any], Any]] = {
    "@if": (
        lambda n: nest(n, lambda v: {"@if": {"exists": {"@path": "$.event"}, "then": v}}, "x"),
        "x",
    ),
    "@if in exists": (
        lambda n: nest(n, lambda v: {"@if": {"exists": v, "then": "y"}}, {"@path": "$.event"}),
        "y",
    ),
    "@template": (lambda n: nest(n, lambda v: {"@template": v}, "{{event}}"), "Order"),
    "@path": (lambda n: nest(n, lambda v: {"@path": v}, "$.p"), "p"),
    "@arrayPath": (
        lambda n: nest(
            n, lambda v: {"@arrayPath": ["$.properties.list", v]}, {"b": {"@path": "$.b"}}
        ),
        None,
    ),
    "objects": (lambda n: nest(n, lambda v: {"k": v}, {"@path": "$.event"}), None),
    "arrays": (lambda n: nest(n, lambda v: [v], {"@path": "$.event"}), None),
    "@literal": (lambda n: nest(n, lambda v: {"@literal": v}, "z"), "z"),
}


SEND = DEFINITION.actions["send"].fields


def mapping_of_depth(kind: str, *, deeper: bool, below: int = 0) -> dict[str, Any]:
    """The deepest mapping of this kind within MAX_DEPTH, or the shallowest one past it, when
    its root sits ``below`` levels under the root of what is checked."""
    build = BUILDERS[kind][0]
    n = 0
    while below + depth({"out": build(n + 1)}) <= MAX_DEPTH:
        n += 1
    mapping = {"out": build(n + 1 if deeper else n)}
    assert (below + depth(mapping) > MAX_DEPTH) is deeper
    assert below + depth(mapping) >= MAX_DEPTH - 2
    return mapping


def as_fields(mapping: dict[str, Any]) -> dict[str, Any]:
    """Webhooks (Actions) send fields with the mapping as the body, one level down."""
    return {"url": "http://127.0.0.1:9/hook", "data": mapping}


@pytest.mark.parametrize("kind", sorted(BUILDERS))
def test_the_deepest_mapping_of_each_kind_renders_within_a_small_stack(kind: str) -> None:
    mapping = mapping_of_depth(kind, deeper=False)
    body = mapping_of_depth(kind, deeper=False, below=1)

    def every_step() -> Any:
        validate_mapping(mapping)
        check_fields(as_fields(body), SEND)
        return compile_mapping(mapping)(EVENT)

    rendered = with_stack_budget(every_step)
    assert isinstance(rendered, dict)
    if BUILDERS[kind][1] is not None:
        assert rendered == {"out": BUILDERS[kind][1]}


@pytest.mark.parametrize("kind", sorted(BUILDERS))
@pytest.mark.parametrize("much", [False, True])
def test_deeper_mappings_are_a_mapping_error(kind: str, much: bool) -> None:
    def deeper(below: int) -> dict[str, Any]:
        if much:
            return {"out": BUILDERS[kind][0](1000)}
        return mapping_of_depth(kind, deeper=True, below=below)

    mapping, body = deeper(0), deeper(1)
    for step in (
        lambda: validate_mapping(mapping),
        lambda: compile_mapping(mapping),
        lambda: check_fields(as_fields(body), SEND),
    ):
        with pytest.raises(MappingError, match=f"nests deeper than {MAX_DEPTH} levels"):
            with_stack_budget(step)


def test_nested_directives_are_validated_once_per_level() -> None:
    """Each @if's fields were validated twice, so 30 nested @if took 2^30 steps."""
    mapping = {"out": BUILDERS["@if"][0](30)}

    def both() -> Any:
        validate_mapping(mapping)
        return compile_mapping(mapping)(EVENT)

    _, seconds = timed(both)
    assert seconds < 1


def test_field_paths_have_at_most_max_depth_segments() -> None:
    fine = ".".join(["a"] * MAX_DEPTH)
    rendered = with_stack_budget(
        lambda: compile_mapping({fine: {"@path": "$.event"}}, expand_keys=True)(EVENT)
    )
    for _ in range(MAX_DEPTH):
        rendered = rendered["a"]
    assert rendered == "Order"
    for segments in (MAX_DEPTH + 1, 2000):
        name = ".".join(["a"] * segments)
        with pytest.raises(MappingError, match=f"more than {MAX_DEPTH} segments"):
            with_stack_budget(partial(compile_mapping, {name: 1}, expand_keys=True))


def test_an_event_nested_deeper_than_python_can_copy_is_rejected_not_a_crash() -> None:
    deep: Any = 1
    for _ in range(400):
        deep = {"a": deep}
    compiled = compile_mapping({"copy": {"@path": "$.properties.deep"}})
    with pytest.raises(MappingError, match="too deeply"):
        with_stack_budget(lambda: compiled({"properties": {"deep": deep}}), frames=300)


def test_parentheses_in_triggers_cannot_nest_at_any_depth() -> None:
    for depth in (2, 2000):
        text = "(" * depth + 'type = "track"' + ")" * depth
        with pytest.raises(TriggerError) as caught:
            with_stack_budget(partial(parse_trigger, text))
        assert caught.value.position == 1 and "cannot nest" in caught.value.reason


@pytest.mark.parametrize("joiner", ["and", "or"])
def test_a_trigger_of_thousands_of_conditions_evaluates_without_deep_recursion(joiner: str) -> None:
    conditions = [f'event = "e{i}"' for i in range(3000)]
    trigger = with_stack_budget(lambda: parse_trigger(f" {joiner} ".join(conditions)))
    grouped = with_stack_budget(
        lambda: parse_trigger(f'type = "track" and ({f" {joiner} ".join(conditions)})')
    )
    for event, any_matches in (
        ({"type": "track", "event": "e2999"}, True),
        ({"type": "track", "event": "e0"}, True),
        ({"type": "track", "event": "nope"}, False),
    ):
        expected = any_matches if joiner == "or" else False
        assert with_stack_budget(partial(trigger.matches, event), frames=100) is expected
        assert with_stack_budget(partial(grouped.matches, event), frames=100) is expected
    single = parse_trigger(" and ".join(['type = "track"'] * 3000))
    assert with_stack_budget(lambda: single.matches({"type": "track"}), frames=100) is True
    assert with_stack_budget(lambda: single.matches({"type": "page"}), frames=100) is False
