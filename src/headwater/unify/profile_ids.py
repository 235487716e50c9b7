"""Profile ids: ``use_`` and a 27-character base62 KSUID, as Segment's ``segment_id`` (A-UE-1).

A KSUID is 4 bytes of seconds since 2014-05-13 16:53:20 UTC and 16 random bytes, written in
base62 (``0-9A-Za-z``) and padded to 27 characters, so ids sort roughly by creation time: a
B-tree index on them grows at its end. The seconds are the event's time, which keeps a
replay's ids in the same order as the first run's.
"""

from __future__ import annotations

import random
import re
import secrets
from typing import Final

PREFIX: Final = "use_"
KSUID_EPOCH: Final = 1_400_000_000
BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
LENGTH: Final = 27
_PATTERN = re.compile(r"use_[0-9A-Za-z]{27}")


def base62(number: int) -> str:
    """``number`` in base62, padded to a KSUID's 27 characters."""
    digits: list[str] = []
    while number:
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits)).rjust(LENGTH, "0")


def is_profile_id(text: str) -> bool:
    return _PATTERN.fullmatch(text) is not None


class ProfileIds:
    """Makes profile ids: from the OS's generator, or from ``seed`` (tests) so that the same
    events give the same ids."""

    def __init__(self, seed: int | None = None) -> None:
        self._rng = random.Random(seed) if seed is not None else None

    def new(self, at: float) -> str:
        """A new id for a profile created by an event of time ``at`` (seconds since 1970)."""
        payload = self._rng.randbytes(16) if self._rng is not None else secrets.token_bytes(16)
        seconds = min(max(int(at) - KSUID_EPOCH, 0), 2**32 - 1)
        return PREFIX + base62(int.from_bytes(seconds.to_bytes(4, "big") + payload, "big"))
