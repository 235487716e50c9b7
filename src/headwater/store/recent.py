"""The newest processed-stream records one process has read, kept for its other readers.

The worker's consumer groups (archive, observer, router) poll the same records within a
fraction of a second of each other; without this each of them reads every payload from the
state database. A committed record never changes and its offset is never given to another, so
whatever was read once can be handed out again until it is trimmed.

Per partition one window of consecutive offsets: reads that continue it extend it, a read past
a gap replaces it, and it is trimmed from its oldest end to its share of the byte budget.
"""

from __future__ import annotations

import threading

Span = tuple[int, int]  # (after, limit): offsets after ``after``, at most ``limit`` of them


class RecentRecords:
    def __init__(self, partitions: int, budget_bytes: int) -> None:
        self._cap = budget_bytes // max(1, partitions)
        self._lock = threading.Lock()
        # partition -> (first offset, payloads of first, first + 1, ...), and their bytes
        self._windows: dict[int, tuple[int, list[bytes]]] = {}
        self._bytes: dict[int, int] = {}

    def lookup(self, partition: int, after: int, last: int) -> tuple[list[Span], int, list[bytes]]:
        """What of ``after + 1 .. last`` is here: the spans still to read (before and after
        the window), and the first offset and payloads of the part found here."""
        with self._lock:
            first, payloads = self._windows.get(partition, (0, []))
            end = first + len(payloads) - 1
            lo, hi = max(after + 1, first), min(last, end)
            if not payloads or lo > hi:
                return [(after, last - after)], 0, []
            found = payloads[lo - first : hi - first + 1]
        spans = []
        if lo > after + 1:
            spans.append((after, lo - after - 1))
        if hi < last:
            spans.append((hi, last - hi))
        return spans, lo, found

    def keep(self, partition: int, rows: list[tuple[int, bytes]], *, replace: bool = True) -> None:
        """Remember ``rows`` (ascending, as read) where they continue or replace the window.

        ``replace=False`` for records just appended: they only continue a window, so readers
        that are behind keep sharing what they read."""
        with self._lock:
            first, payloads = self._windows.get(partition, (0, []))
            end = first + len(payloads) - 1
            tail = [row for row in rows if row[0] > end] if payloads else rows
            if not tail or tail[-1][0] - tail[0][0] != len(tail) - 1:
                return  # older than the window, or not consecutive: nothing to add
            if payloads and tail[0][0] != end + 1 and not replace:
                return
            if payloads and tail[0][0] == end + 1:
                payloads.extend(p for _, p in tail)
                size = self._bytes[partition] + sum(len(p) for _, p in tail)
            else:  # the window fell behind (or there is none): start over from these
                first, payloads = tail[0][0], [p for _, p in tail]
                size = sum(len(p) for p in payloads)
            drop = 0
            while size > self._cap and drop < len(payloads):
                size -= len(payloads[drop])
                drop += 1
            if drop:
                del payloads[:drop]
                first += drop
            self._windows[partition] = (first, payloads)
            self._bytes[partition] = size
