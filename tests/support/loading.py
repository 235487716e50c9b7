"""Two threads asking a cache while its first load is still in progress."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class HeldLoad:
    """Stands in a cache's loading call: the first call waits until ``release`` is set."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def hold(self) -> None:
        self.entered.set()
        self.release.wait(10)


def during_first_load(load: HeldLoad, look: Callable[[], T]) -> tuple[T | None, T | None]:
    """What ``look`` answers on a first thread (which starts the load) and on a second one
    that asks while the load is held; the load is released after the second had 0.3 s."""
    seen: list[T | None] = [None, None]

    def run(index: int) -> None:
        seen[index] = look()

    first = threading.Thread(target=run, args=(0,))
    first.start()
    assert load.entered.wait(5), "the first lookup never started a load"
    second = threading.Thread(target=run, args=(1,))
    second.start()
    second.join(0.3)
    load.release.set()
    first.join(5)
    second.join(5)
    return seen[0], seen[1]
