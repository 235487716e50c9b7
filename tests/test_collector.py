"""The role processes' collector settings still collect cycles (in a child: pytest's own heap
must not be frozen)."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import gc, weakref
from headwater import collector

class Node:
    pass

kept = [Node() for _ in range(1000)]  # settled at startup: frozen, still alive
collector.settle()
assert gc.get_freeze_count() >= 1000, gc.get_freeze_count()

a, b = Node(), Node()
a.other, b.other = b, a  # a cycle: reference counting alone never frees it
gone = weakref.ref(a)
del a, b
# Requests in flight: containers alive for a while (the collector counts net growth).
junk = [{} for _ in range(3 * collector.YOUNG_THRESHOLD)]
assert gone() is None, "the cycle was never collected"
assert len(kept) == 1000
print("ok")
"""


def test_cycles_are_still_collected_after_settling() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
