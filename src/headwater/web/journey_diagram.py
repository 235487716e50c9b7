"""A journey's steps drawn as server-rendered SVG: the entry on the left, each step one column
to the right of its parent, a split's branches one row each, lines from parent to child (no
charting library, no JavaScript). The page lists the same steps in a table too."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from headwater.engage.journeys.model import ENTRY, Plan, Step, parse
from headwater.errors import InvalidError

COLUMN = 200  # pixels between two columns
ROW = 56
BOX_WIDTH = 168
BOX_HEIGHT = 40
PAD = 8
KINDS = {
    "delay": "Wait",
    "condition": "Condition",
    "send": "Send",
    "true_false": "True/false split",
    "multi_branch": "Multi-branch split",
    "randomized": "Randomized split",
    "hold_until": "Hold until",
    "branch": "Branch",
    "timeout": "Timed out",
}


@dataclass(frozen=True)
class Node:
    id: str
    x: int
    y: int
    name: str
    detail: str
    depth: int
    parent: str  # "" for the entry


@dataclass(frozen=True)
class Edge:
    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True)
class Diagram:
    width: int
    height: int
    nodes: list[Node]
    edges: list[Edge]


def _detail(step: Step) -> str:
    kind = KINDS.get(step.kind, step.kind)
    if step.kind == "delay" and step.seconds:
        return f"{kind} {_duration(step.seconds)}"
    if step.condition is not None and step.kind in ("condition", "branch"):
        word = "in" if step.condition.member else "not in"
        return f"{word} {step.condition.audience}"
    if step.kind == "branch" and step.percent:
        return f"{step.percent}%"
    if step.kind == "branch" and step.event:
        return f"on {step.event}"
    if step.send is not None:
        return "to " + ", ".join(t.name for t in step.send.targets)
    return kind


def _duration(seconds: int) -> str:
    for unit, size in (("days", 86_400), ("hours", 3600), ("minutes", 60)):
        if seconds % size == 0:
            return f"{seconds // size} {unit}"
    return f"{seconds} seconds"


def _entry(plan: Plan) -> str:
    entry = plan.entry
    if entry.condition is not None:
        return f"audience {entry.condition.audience}"
    if entry.event:
        return f"event {entry.event}"
    return plan.kind


def journey_diagram(definition: Mapping[str, Any]) -> Diagram | None:
    """The diagram of a journey's written definition; None when it no longer parses."""
    try:
        plan = parse(definition)
    except InvalidError:
        return None
    nodes: list[Node] = []
    edges: list[Edge] = []
    row = 0

    def place(step_id: str, depth: int, parent: Node | None) -> None:
        nonlocal row
        y = PAD + row * ROW
        if step_id == ENTRY:
            node = Node(step_id, PAD, y, "Entry", _entry(plan), depth, "")
        else:
            step = plan.steps[step_id]
            node = Node(
                step_id, PAD + depth * COLUMN, y, step.name, _detail(step), depth, step.parent
            )
        nodes.append(node)
        if parent is not None:
            middle = BOX_HEIGHT // 2
            edges.append(Edge(parent.x + BOX_WIDTH, parent.y + middle, node.x, node.y + middle))
        children = plan.children.get(step_id, ())
        if not children:
            row += 1
        for child in children:
            place(child, depth + 1, node)

    place(ENTRY, 0, None)
    depth = max(n.depth for n in nodes)
    return Diagram(
        PAD * 2 + depth * COLUMN + BOX_WIDTH,
        PAD * 2 + max(row, 1) * ROW - (ROW - BOX_HEIGHT),
        nodes,
        edges,
    )
