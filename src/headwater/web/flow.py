"""The Home page's picture: sources on the left, destinations on the right, a line for each
connection, drawn on the server as SVG coordinates (no charting library, no JavaScript)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

ROW = 56  # pixels between two boxes
BOX_WIDTH = 240
BOX_HEIGHT = 40
GAP = 200  # between the two columns
PAD = 8


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    name: str
    detail: str  # "1,204 events" / "1,180 delivered · 3 failed"
    failing: bool
    href: str


@dataclass(frozen=True)
class Line:
    x1: int
    y1: int
    x2: int
    y2: int
    failing: bool


@dataclass(frozen=True)
class Flow:
    width: int
    height: int
    boxes: list[Box]
    lines: list[Line]


def flow_diagram(
    sources: Sequence[Mapping[str, Any]], destinations: Sequence[Mapping[str, Any]]
) -> Flow:
    ordered = sorted(
        destinations,
        key=lambda d: ([s["id"] for s in sources] + [d["sourceId"]]).index(d["sourceId"]),
    )
    rows = max(len(sources), len(ordered), 1)
    right = PAD + BOX_WIDTH + GAP
    boxes: list[Box] = []
    anchor: dict[str, int] = {}
    for i, source in enumerate(sources):
        y = PAD + i * ROW
        anchor[source["id"]] = y + BOX_HEIGHT // 2
        boxes.append(
            Box(
                PAD,
                y,
                source["name"],
                f"{source['received']:,} events",
                source["failedOnIngest"] > 0,
                f"/sources/{source['id']}",
            )
        )
    lines: list[Line] = []
    for i, destination in enumerate(ordered):
        y = PAD + i * ROW
        failing = destination["failed"] > 0
        detail = f"{destination['delivered']:,} delivered"
        if destination["failed"]:
            detail += f" · {destination['failed']:,} failed"
        boxes.append(
            Box(
                right, y, destination["name"], detail, failing, f"/destinations/{destination['id']}"
            )
        )
        start = anchor.get(destination["sourceId"])
        if start is not None:
            lines.append(Line(PAD + BOX_WIDTH, start, right, y + BOX_HEIGHT // 2, failing))
    return Flow(right + BOX_WIDTH + PAD, PAD * 2 + rows * ROW - (ROW - BOX_HEIGHT), boxes, lines)
