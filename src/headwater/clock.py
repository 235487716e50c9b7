"""The server's wall clock: every time-based rule (dedup windows, retries, schedules) reads it.

In production it is ``time.time``. Tests of a running server move it: with
``HEADWATER_CLOCK_OFFSET_FILE`` set, every process of the server adds the number of seconds
written in that file, so a test can jump a live server two days ahead by writing ``172800``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

Clock = Callable[[], float]

OFFSET_FILE_VARIABLE = "HEADWATER_CLOCK_OFFSET_FILE"


def wall_clock() -> Clock:
    path = os.environ.get(OFFSET_FILE_VARIABLE)
    return OffsetClock(Path(path)) if path else time.time


class OffsetClock:
    """``time.time()`` plus the seconds in a file (none or empty: 0).

    The file is read at most every 50 ms, so the clock stays cheap on hot paths.
    """

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0.0
        self._checked = float("-inf")

    def __call__(self) -> float:
        now = time.monotonic()
        if now - self._checked > 0.05:
            self._checked = now
            self._offset = self.offset()
        return time.time() + self._offset

    def offset(self) -> float:
        try:
            return float(self._path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0.0
        except ValueError:
            return self._offset  # half-written: keep the old offset, read again next time

    def move(self, seconds: float) -> None:
        """Move every process's clock ``seconds`` further (tests)."""
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(repr(self.offset() + seconds))
        tmp.replace(self._path)
        self._checked = float("-inf")
