"""What a destination's answer means, and when to try again (Segment's integration error codes).

429, 5xx except 501 and 505, timeouts and connection errors are retried with randomized
exponential backoff until the retry window (four hours by default) has passed since the first
attempt; a ``Retry-After`` header sets the next attempt instead. Every other answer is final:
2xx is delivered, the rest is discarded with its code.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime

from headwater import reasons

BASE_DELAY_SECONDS = 5.0  # the first retry comes within seconds
MAX_DELAY_SECONDS = 3600.0


@dataclass(frozen=True)
class Verdict:
    delivered: bool
    retry: bool
    code: str  # "200", "429", "ECONNREFUSED", "MESSAGE_REJECTED", …

    @property
    def reason(self) -> str:
        """The code as Event Delivery shows it: errors.awaiting-retry.429, errors.discarded.400."""
        if self.delivered:
            return ""
        return f"errors.{'awaiting-retry' if self.retry else 'discarded'}.{self.code}"


def judge(code: str) -> Verdict:
    """The verdict for an HTTP status (as a string) or an error code."""
    if code.isdigit():
        status = int(code)
        if 200 <= status < 300:
            return Verdict(True, False, code)
        retry = status == 429 or (500 <= status < 600 and status not in (501, 505))
        return Verdict(False, retry, code)
    retry = code in reasons.CONNECTION_ERRORS or code == reasons.RETRY_REQUESTED
    return Verdict(False, retry, code)


def worst(verdicts: list[Verdict]) -> Verdict:
    """One message sent in several requests: retry beats discard beats delivered."""
    for verdict in verdicts:
        if verdict.retry:
            return verdict
    for verdict in verdicts:
        if not verdict.delivered:
            return verdict
    return verdicts[0]


def next_delay(attempt: int, rng: random.Random | None = None) -> float:
    """Seconds before retry number ``attempt`` (1 for the first retry): base·2ⁿ ±50 %, at
    most an hour, so a destination that comes back gets its backlog within the hour."""
    jitter: float = (rng or random).uniform(0.5, 1.5)
    return min(MAX_DELAY_SECONDS, BASE_DELAY_SECONDS * 2.0 ** min(30, attempt - 1) * jitter)


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), if it has one."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now)
