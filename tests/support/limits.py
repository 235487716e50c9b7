"""Helpers for hostile-input guards: a bounded stack and a bounded time."""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# Python frames the deepest accepted input may use, below the default limit of 1,000 with room
# for the server's own frames (an ASGI app, a thread pool and pydantic above the handler).
STACK_BUDGET = 600


def with_stack_budget(run: Callable[[], T], frames: int = STACK_BUDGET) -> T:
    """``run()`` with at most ``frames`` Python frames above the caller's."""
    depth = len(inspect.stack(0))
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + frames)
    try:
        return run()
    finally:
        sys.setrecursionlimit(previous)


def timed(run: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = run()
    return result, time.perf_counter() - started
