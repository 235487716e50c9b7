"""The garbage collector's settings for a role process that moves events all day.

Decoding a request body makes thousands of short-lived dicts and lists, freed by reference
counting as soon as the request is committed; none of them forms a cycle. With Python's
default threshold (a collection every 700 new containers) the collector ran every few
messages and, once objects outlived a request, walked the process's whole long-lived heap
(modules, SQLAlchemy, caches): a third of the ingest process's CPU per event in batches.
Settled objects are frozen out of the collector's sight, and young ones are collected far less
often; cycles are still found, just later.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000  # new containers between collections of the youngest generation


def settle() -> None:
    """Call once the process has started up, before it takes traffic."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
