"""One fake wall clock for every store, log and engine that takes ``clock=``."""

from __future__ import annotations

START = 1_700_000_000.0  # 2023-11-14T22:13:20Z


class Clock:
    """Epoch seconds that only move when a test moves them (``advance`` or set ``now``)."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
