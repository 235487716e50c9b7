"""The destination cache shared by the router and the delivery engine, on two threads."""

from __future__ import annotations

from headwater.destinations.store import DestinationCache, DestinationInfo, DestinationStore
from tests.delivery.conftest import Pipeline
from tests.support.loading import HeldLoad, during_first_load


class SlowList(HeldLoad):
    """The real store, whose ``list()`` is held as a slow database would hold it."""

    def __init__(self, store: DestinationStore) -> None:
        super().__init__()
        self._store = store

    def list(self) -> list[DestinationInfo]:
        self.hold()
        return self._store.list()


def test_a_second_thread_waits_for_a_load_in_progress(pipeline: Pipeline) -> None:
    # The router used to get no destinations (and skip the record) while the delivery
    # engine's thread was loading the cache for the first time.
    hook = pipeline.add("hook", settings={"url": "http://127.0.0.1:9/"})
    slow = SlowList(pipeline.store)
    cache = DestinationCache(slow, pipeline.workspace)  # type: ignore[arg-type]
    first, second = during_first_load(
        slow, lambda: [d.id for d in cache.for_source(pipeline.source_id)]
    )
    assert first == second == [hook.id]
