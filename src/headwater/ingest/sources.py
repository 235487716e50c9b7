"""The Tracking API's view of sources: an in-memory map from write key to source.

Looking a write key up must not cost a database round trip per request. The map is rebuilt
when the workspace's config version changes (checked at most once a second), so a source
created, disabled or given a new key through the API or ``headwater apply`` — by this process
or another one — takes effect within about a second.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from sqlalchemy.exc import OperationalError

from headwater.store.workspace import SourceInfo, WorkspaceStore

logger = logging.getLogger(__name__)

REFRESH_INTERVAL = 1.0
# Rotated-out write keys expire without a config change; rebuild now and then to drop them.
REBUILD_INTERVAL = 30.0


class SourceCache:
    def __init__(self, store: WorkspaceStore, clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._clock = clock
        self._index: dict[str, SourceInfo] = {}
        self._version = -1
        self._checked_at = float("-inf")
        self._built_at = float("-inf")
        self._lock = threading.Lock()

    def lookup(self, write_key: str) -> SourceInfo | None:
        if self._clock() - self._checked_at >= REFRESH_INTERVAL:
            try:
                self.refresh()
            except OperationalError as exc:
                # The database is down: answer from the map we have. The commit that
                # follows fails too, and the client gets a 503 and retries.
                self._checked_at = self._clock()
                logger.warning("sources: cannot refresh the write keys: %s", exc)
        return self._index.get(write_key)

    def refresh(self, force: bool = False) -> None:
        # Threads share the cache (replay, internal appends): one rebuilds while the others
        # wait, and the check time is set only once the map is built, so none of them answers
        # 401 from the empty map of a cache that is still loading.
        with self._lock:
            if not force and self._clock() - self._checked_at < REFRESH_INTERVAL:
                return  # another thread refreshed while this one waited
            now = self._clock()
            version = self._store.config_version()
            if force or version != self._version or now - self._built_at >= REBUILD_INTERVAL:
                # Read the version first: a change racing with the rebuild is caught next time.
                self._index = self._store.write_key_index()
                self._version = version
                self._built_at = now
            self._checked_at = now
