"""The destination cache shared by the router and the delivery engine, on two threads."""

from __future__ import annotations

import threading

from headwater.destinations.store import DestinationCache, DestinationInfo
from tests.delivery.conftest import Pipeline


class SlowList:
    """Holds the first ``list()`` until released, as a slow database would."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._store = pipeline.store
        self.entered = threading.Event()
        self.release = threading.Event()

    def list(self) -> list[DestinationInfo]:
        self.entered.set()
        self.release.wait(10)
        return self._store.list()


def test_a_second_thread_waits_for_a_load_in_progress(pipeline: Pipeline) -> None:
    # The router used to get no destinations (and skip the record) while the delivery
    # engine's thread was loading the cache for the first time.
    hook = pipeline.add("hook", settings={"url": "http://127.0.0.1:9/"})
    slow = SlowList(pipeline)
    cache = DestinationCache(slow, pipeline.workspace)  # type: ignore[arg-type]
    seen: dict[str, list[str]] = {}

    def look(name: str) -> None:
        seen[name] = [d.id for d in cache.for_source(pipeline.source_id)]

    first = threading.Thread(target=look, args=("first",))
    first.start()
    assert slow.entered.wait(5)
    second = threading.Thread(target=look, args=("second",))
    second.start()
    second.join(0.3)
    slow.release.set()
    first.join(5)
    second.join(5)
    assert seen == {"first": [hook.id], "second": [hook.id]}
