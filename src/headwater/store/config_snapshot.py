"""Something built from the configuration, rebuilt when the configuration's version moves.

Hot paths (every record of the stage chain and the router, every settings document) read
configuration that changes rarely. A snapshot checks the version (one row in `meta`) at most
once an interval and rebuilds only when it moved. A reload happens under a lock and the time
of the check is set only once the value is built, so a reader on another thread never sees a
half-built value. When the database cannot be read, the last value is served and the failure
logged: the pipeline goes on with the configuration it had.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy.exc import OperationalError

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ConfigSnapshot(Generic[T]):
    def __init__(
        self,
        version: Callable[[], int],
        build: Callable[[], T],
        initial: T,
        *,
        clock: Callable[[], float] = time.monotonic,
        interval: float = 1.0,
    ) -> None:
        self._version_of = version
        self._build = build
        self._value = initial
        self._clock = clock
        self._interval = interval
        self._version: int | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()

    def get(self) -> T:
        if self._clock() - self._checked_at >= self._interval:
            try:
                self.refresh()
            except OperationalError as exc:
                self._checked_at = self._clock()
                logger.warning("configuration: cannot reload, keeping what was loaded: %s", exc)
        return self._value

    def refresh(self, force: bool = False) -> None:
        with self._lock:
            if not force and self._clock() - self._checked_at < self._interval:
                return
            version = self._version_of()
            if force or version != self._version:
                self._value = self._build()
                self._version = version
            self._checked_at = self._clock()
