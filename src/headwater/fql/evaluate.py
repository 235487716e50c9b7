"""FQL trees compiled to closures: parse once per configuration change, then one call per event.

Missing paths are null. ``and``/``or``/``!`` and the final answer count only a literal ``true``
as true, so a bare path, a null or a function result that is not a bool never lets an event
through by accident. Top-level snake_case names of envelope fields (``received_at``) read the
camelCase field when the event has no such key, as in Segment's own filter examples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from headwater.fql import functions
from headwater.fql.syntax import Call, Compare, ListOf, Literal, Logic, Node, Not, Path

Evaluator = Callable[[Mapping[str, Any]], Any]

ENVELOPE_ALIASES = {
    "received_at": "receivedAt",
    "sent_at": "sentAt",
    "original_timestamp": "originalTimestamp",
    "message_id": "messageId",
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "group_id": "groupId",
    "previous_id": "previousId",
}


def compile_node(node: Node) -> Evaluator:
    if isinstance(node, Literal):
        value = node.value
        return lambda _event: value
    if isinstance(node, Path):
        return _path(node.segments)
    if isinstance(node, ListOf):
        items = [compile_node(item) for item in node.items]
        return lambda event: [item(event) for item in items]
    if isinstance(node, Call):
        function = functions.FUNCTIONS[node.function]
        arguments = [compile_node(a) for a in node.arguments]
        if len(arguments) == 1:
            [only] = arguments
            return lambda event: function(only(event))
        return lambda event: function(*(a(event) for a in arguments))
    if isinstance(node, Not):
        operand = compile_node(node.operand)
        return lambda event: operand(event) is not True
    if isinstance(node, Logic):
        operands = [compile_node(o) for o in node.operands]
        if len(operands) == 2:  # the common case, without a generator per event
            first, second = operands
            if node.operator == "and":
                return lambda event: first(event) is True and second(event) is True
            return lambda event: first(event) is True or second(event) is True
        if node.operator == "and":
            return lambda event: all(o(event) is True for o in operands)
        return lambda event: any(o(event) is True for o in operands)
    return _compare(node)


def _compare(node: Compare) -> Evaluator:
    left, right = compile_node(node.left), compile_node(node.right)
    operator = node.operator
    if (
        operator in ("=", "!=")
        and isinstance(node.right, Literal)
        and isinstance(node.right.value, str)
    ):
        text = node.right.value  # path = 'text', the most common statement: no type dispatch
        if operator == "=":
            return lambda event: (found := left(event)).__class__ is str and found == text
        return lambda event: not ((found := left(event)).__class__ is str and found == text)
    if operator == "=":
        return lambda event: functions.equal(left(event), right(event))
    if operator == "!=":
        return lambda event: not functions.equal(left(event), right(event))
    if operator == "in":
        return lambda event: functions.member(left(event), right(event))
    return lambda event: functions.ordered(operator, left(event), right(event))


def _path(segments: tuple[str, ...]) -> Evaluator:
    alias = ENVELOPE_ALIASES.get(segments[0])

    def get(event: Mapping[str, Any]) -> Any:
        value: Any = event
        for i, segment in enumerate(segments):
            if isinstance(value, Mapping):
                if i == 0 and alias is not None and segment not in value:
                    segment = alias
                value = value.get(segment)
            elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
                value = value[int(segment)]
            else:
                return None
        return value

    return get
