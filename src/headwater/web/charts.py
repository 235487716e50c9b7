"""Charts drawn on the server as SVG coordinates (no charting library, no JavaScript): the
template draws the rectangles and the axis, and shows the same numbers as a table for screen
readers and for anyone who wants the exact counts.

Colours come from CSS classes (the Content-Security-Policy blocks ``style`` attributes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

WIDTH = 720
HEIGHT = 240
LEFT = 56  # room for the count axis' labels
BOTTOM = 36  # room for the time axis' labels
TOP = 12
RIGHT = 8


@dataclass(frozen=True)
class Series:
    name: str  # "Delivered"
    css: str  # the class that colours its bars: "ok", "retrying", "bad"
    values: Sequence[int]


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    label: str  # what a hover shows: "14:00 · Delivered: 12"


@dataclass(frozen=True)
class Tick:
    position: float  # x for the time axis, y for the count axis
    label: str


@dataclass(frozen=True)
class StackedBars:
    title: str
    x_label: str
    y_label: str
    width: int
    height: int
    plot_left: int
    plot_bottom: int
    plot_right: int
    bars: list[Bar]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    labels: list[str]  # one per bucket: the table's rows
    series: list[Series]  # the table's columns, and the legend

    @property
    def rows(self) -> list[tuple[str, list[int]]]:
        """The table fallback: each bucket's label and its value in each series."""
        return [(label, [s.values[i] for s in self.series]) for i, label in enumerate(self.labels)]


def stacked_bars(
    title: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    every: int = 1,
) -> StackedBars:
    """One bar per label, its series stacked bottom-up in the given order; ``every``: label
    every n-th bar on the time axis (24 labels do not fit on a phone)."""
    count = max(len(labels), 1)
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    top = _nice(max(totals, default=0))
    slot = plot_width / count
    gap = min(4.0, slot * 0.2)
    bars: list[Bar] = []
    for i, label in enumerate(labels):
        base = 0
        for s in series:
            value = s.values[i]
            if value <= 0:
                continue
            y_top = HEIGHT - BOTTOM - (base + value) / top * plot_height
            height = value / top * plot_height
            bars.append(
                Bar(
                    round(LEFT + i * slot + gap / 2, 2),
                    round(y_top, 2),
                    round(slot - gap, 2),
                    round(height, 2),
                    s.css,
                    f"{label} · {s.name}: {value:,}",
                )
            )
            base += value
    x_ticks = [
        Tick(round(LEFT + (i + 0.5) * slot, 2), label)
        for i, label in enumerate(labels)
        if i % max(every, 1) == 0
    ]
    y_ticks = [
        Tick(round(HEIGHT - BOTTOM - step / 4 * plot_height, 2), f"{top * step // 4:,}")
        for step in range(5)
    ]
    return StackedBars(
        title,
        x_label,
        y_label,
        WIDTH,
        HEIGHT,
        LEFT,
        HEIGHT - BOTTOM,
        WIDTH - RIGHT,
        bars,
        x_ticks,
        y_ticks,
        list(labels),
        list(series),
    )


def _nice(peak: int) -> int:
    """The axis' top: a round number at least ``peak`` that divides into four whole ticks."""
    if peak <= 4:
        return 4
    magnitude = 1
    while magnitude * 10 < peak:
        magnitude *= 10
    for factor in (1, 2, 4, 5, 8, 10):
        top = factor * magnitude
        if top >= peak and top % 4 == 0:
            return top
    return -(-peak // 4) * 4
