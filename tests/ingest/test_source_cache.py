"""The Tracking API's write-key map, shared by the threads of one process."""

from __future__ import annotations

import threading

from sqlalchemy.engine import Engine

from headwater.ingest.sources import SourceCache
from headwater.store.workspace import SourceInfo, WorkspaceStore


class SlowIndex(WorkspaceStore):
    """Holds the first write-key index read until released, as a slow database would."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.entered = threading.Event()
        self.release = threading.Event()

    def write_key_index(self) -> dict[str, SourceInfo]:
        self.entered.set()
        self.release.wait(10)
        return super().write_key_index()


def test_a_second_thread_waits_for_a_load_in_progress(engine: Engine) -> None:
    # A lookup during the first load used to answer from the empty map: 401 for a good key.
    setup = WorkspaceStore(engine)
    setup.ensure_workspace("test")
    source = setup.create_source("web", write_key="WK_cache")
    store = SlowIndex(engine)
    cache = SourceCache(store)
    seen: dict[str, str | None] = {}

    def look(name: str) -> None:
        found = cache.lookup("WK_cache")
        seen[name] = found.id if found else None

    first = threading.Thread(target=look, args=("first",))
    first.start()
    assert store.entered.wait(5)
    second = threading.Thread(target=look, args=("second",))
    second.start()
    second.join(0.3)
    store.release.set()
    first.join(5)
    second.join(5)
    assert seen == {"first": source.id, "second": source.id}
