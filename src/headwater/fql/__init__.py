"""FQL, Segment's filter query language: ``parse(text).matches(event)``.

Parse errors name their position (``FQLSyntaxError``); an event a statement cannot be
evaluated on raises ``FQLEvaluationError``, and callers drop it (fail closed, as Segment does
to protect PII). ``to_ir`` gives the browser matcher's form of a statement.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from headwater.errors import FQLEvaluationError, FQLSyntaxError, NotRepresentable
from headwater.fql.evaluate import Evaluator, compile_node
from headwater.fql.ir import to_ir
from headwater.fql.syntax import MAX_BYTES, MAX_DEPTH, Node
from headwater.fql.syntax import parse as parse_tree

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "Expression",
    "FQLEvaluationError",
    "FQLSyntaxError",
    "NotRepresentable",
    "parse",
]


@dataclass(frozen=True)
class Expression:
    source: str
    tree: Node = field(repr=False)
    _evaluate: Evaluator = field(repr=False, compare=False)

    def evaluate(self, event: Mapping[str, Any]) -> Any:
        """The statement's value (any FQL type) for this event."""
        try:
            return self._evaluate(event)
        except RecursionError:
            # The statement's depth is bounded when parsed; comparing values the event nests
            # deeper than Python can walk has no answer, so the caller fails closed.
            raise FQLEvaluationError("the event nests values too deeply to compare") from None

    def matches(self, event: Mapping[str, Any]) -> bool:
        """True only when the statement's value is literally ``true``."""
        try:  # evaluate()'s body again: one call fewer on the router's path
            return self._evaluate(event) is True
        except RecursionError:
            raise FQLEvaluationError("the event nests values too deeply to compare") from None

    def to_ir(self) -> Any:
        """The browser matcher's form; raises ``NotRepresentable`` outside its subset."""
        return to_ir(self.tree)


def parse(text: str) -> Expression:
    tree = parse_tree(text)
    return Expression(text, tree, compile_node(tree))
