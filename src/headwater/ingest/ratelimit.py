"""Per-workspace ingest rate limit (AC-021), off unless configured.

Segment allows 1,000 events/s per workspace and may answer 429 with ``Retry-After`` and
``X-RateLimit-Reset`` (seconds) beyond it. A token bucket holding one second's worth of events
lets short bursts through and refuses sustained excess; a refused request is stored nowhere,
so the client's retry loses nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, events_per_second: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._rate = float(events_per_second)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # workspace -> (tokens, updated)

    def admit(self, workspace_id: str, events: int) -> int:
        """0 if admitted, else the seconds to wait before retrying."""
        now = self._clock()
        tokens, updated = self._buckets.get(workspace_id, (self._rate, now))
        tokens = min(self._rate, tokens + (now - updated) * self._rate)
        cost = min(float(events), self._rate)  # a batch larger than a second's worth may pass alone
        if tokens >= cost:
            self._buckets[workspace_id] = (tokens - cost, now)
            return 0
        self._buckets[workspace_id] = (tokens, now)
        return max(1, math.ceil((cost - tokens) / self._rate))
