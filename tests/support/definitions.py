"""Comparing audience and computed-trait definition trees as the engines would read them.

``without_spans`` makes two trees equal when only their spans and text differ; ``shape`` also
tells ``Literal(1)`` from ``Literal(True)`` and ``Literal(1.0)``, which dataclass equality does
not (``1 == True == 1.0`` in Python).
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from typing import Any

from headwater.engage.definition import Definition
from headwater.engage.language import without_spans


def shape(node: Any) -> Any:
    """A nested tuple of type names and values, spans left out."""
    if isinstance(node, tuple):
        return tuple(shape(item) for item in node)
    if isinstance(node, frozenset):
        return ("frozenset", *sorted(node))
    if is_dataclass(node) and not isinstance(node, type):
        return (
            type(node).__name__,
            *(
                (spec.name, shape(getattr(node, spec.name)))
                for spec in fields(node)
                if spec.name not in ("span", "text")
            ),
        )
    return (type(node).__name__, node)


def assert_same_tree(actual: Definition, expected: Definition) -> None:
    assert without_spans(actual) == without_spans(expected)
    assert shape(actual) == shape(expected)
