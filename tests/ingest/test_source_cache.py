"""The Tracking API's write-key map, shared by the threads of one process."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from headwater.ingest.sources import SourceCache
from headwater.store.workspace import SourceInfo, WorkspaceStore
from tests.support.loading import HeldLoad, during_first_load


class SlowIndex(WorkspaceStore):
    """The real store, whose write-key index read is held as a slow database would hold it."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine)
        self.load = HeldLoad()

    def write_key_index(self) -> dict[str, SourceInfo]:
        self.load.hold()
        return super().write_key_index()


def test_a_second_thread_waits_for_a_load_in_progress(engine: Engine) -> None:
    # A lookup during the first load used to answer from the empty map: 401 for a good key.
    setup = WorkspaceStore(engine)
    setup.ensure_workspace("test")
    source = setup.create_source("web", write_key="WK_cache")
    store = SlowIndex(engine)
    cache = SourceCache(store)

    def look() -> str | None:
        found = cache.lookup("WK_cache")
        return found.id if found else None

    assert during_first_load(store.load, look) == (source.id, source.id)
