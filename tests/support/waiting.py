"""Polls with deadlines, instead of fixed sleeps before an assertion."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, TypeVar

T = TypeVar("T")


def wait_for(
    condition: Callable[[], T | Literal[False] | None],
    timeout: float,
    what: str,
    *,
    interval: float = 0.1,
) -> T:
    """The first truthy value of ``condition()``, polled every ``interval`` seconds
    (``lambda: ready() and value()`` waits for ``ready()`` and returns ``value()``).

    A fixed sleep is either too short on a loaded machine (a flaky failure) or too long
    everywhere else; a poll waits exactly as long as needed, up to ``timeout`` seconds, then
    fails saying what never happened.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)
