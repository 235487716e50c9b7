"""The dedup stage: the first stage after the ingest log drops a ``messageId`` seen before.

Segment deduplicates on ``messageId`` per workspace over at least the last 24 hours; Headwater
keeps ``server.dedup_window_hours`` (48 by default). A message is a duplicate when the same
(workspace, ``messageId``) was first seen in the same hour as this one's ``receivedAt`` or in
any of the ``window`` hours before (so the window is at least ``window`` hours, at most one
more). Deciding from ``receivedAt`` rather than from the time the stage runs makes a pass give
the same answer whenever it runs — after a crash, or behind a backlog.

The window's keys live in memory (a lookup is one dict probe, not a B-tree page); each pass's
new keys are written as packed runs (``store/dedup.py``) in the chain's transaction and read
back when the stage takes over a partition.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

import msgspec
from sqlalchemy.engine import Connection

from headwater.store.dedup import DedupRuns, dedup_key
from headwater.store.record import LogRecord

logger = logging.getLogger(__name__)


class _MessageId(msgspec.Struct):
    messageId: str = ""


_message_id = msgspec.json.Decoder(_MessageId).decode


class DedupIndex:
    """The window's keys for one partition: each key's first-seen hour, and per hour its keys
    (to forget a whole hour at once). About 90 bytes a key: 10 million keys, 0.9 GB."""

    def __init__(self) -> None:
        self._first_seen: dict[int, int] = {}
        self._by_hour: dict[int, array[int]] = {}

    def seen(self, key: int, since_hour: int) -> bool:
        hour = self._first_seen.get(key)
        return hour is not None and hour >= since_hour

    def add(self, hour: int, keys: Iterable[int]) -> None:
        first_seen = self._first_seen
        bucket = self._by_hour.setdefault(hour, array("q"))
        for key in keys:
            first_seen[key] = hour
            bucket.append(key)

    def forget_before(self, hour: int) -> None:
        first_seen = self._first_seen
        for old in [h for h in self._by_hour if h < hour]:
            for key in self._by_hour.pop(old):
                if first_seen.get(key) == old:
                    del first_seen[key]

    def __len__(self) -> int:
        return len(self._first_seen)


class DedupStage:
    name = "dedup"

    def __init__(
        self,
        runs: DedupRuns,
        *,
        window_hours: int,
        clock: Callable[[], float],
        on_duplicates: Callable[[int], None] | None = None,
    ) -> None:
        self._runs = runs
        self._window = window_hours
        self._clock = clock
        self._on_duplicates = on_duplicates
        self._indexes: dict[int, DedupIndex] = {}
        # This pass's new keys, by partition and hour; they join the index once committed.
        self._pending: dict[int, dict[int, list[int]]] = {}
        self._pending_keys: set[int] = set()
        self._pending_duplicates = 0
        self._hours: dict[str, int] = {}  # "YYYY-MM-DDTHH" → epoch hour, for recent hours

    def acquire(self, partition: int) -> None:
        index = DedupIndex()
        since = self._current_hour() - self._window - 1
        for hour, keys in self._runs.load(partition, since).items():
            index.add(hour, keys)
        self._indexes[partition] = index
        logger.info(
            "dedup: partition %d taken over with %d keys of the last %d hours",
            partition,
            len(index),
            self._window,
        )

    def release(self, partition: int) -> None:
        self._indexes.pop(partition, None)

    def process(self, partition: int, records: list[LogRecord]) -> None:
        index = self._indexes.get(partition)
        if index is None:  # taken over outside a lease renewal (tests, a restart)
            self.acquire(partition)
            index = self._indexes[partition]
        pending = self._pending.setdefault(partition, {})
        fresh = self._pending_keys
        for record in records:
            hour = self._hour_of(record.received_at)
            since = hour - self._window
            kept = []
            # A forwarded blocked event keeps the messageId it arrived with, which this
            # workspace has seen already: its copies are deduplicated among themselves.
            scope = record.workspace_id
            if record.forwarded_from:
                scope = f"{scope}\x00forwarded\x00{record.forwarded_from}"
            for raw in record.events:
                key = dedup_key(scope, _message_id(raw).messageId)
                if key in fresh or index.seen(key, since):
                    continue
                fresh.add(key)
                pending.setdefault(hour, []).append(key)
                kept.append(raw)
            dropped = len(record.events) - len(kept)
            if dropped:
                record.events = kept
                record.duplicates += dropped
                self._pending_duplicates += dropped

    def commit_in(self, conn: Connection) -> None:
        for partition, by_hour in self._pending.items():
            self._runs.write_in(conn, partition, by_hour)

    def committed(self) -> None:
        oldest = self._current_hour() - self._window - 1
        for partition, by_hour in self._pending.items():
            index = self._indexes.get(partition)
            if index is None:
                continue
            for hour, keys in by_hour.items():
                index.add(hour, keys)
            index.forget_before(oldest)
        if self._pending_duplicates and self._on_duplicates is not None:
            self._on_duplicates(self._pending_duplicates)
        self.abandoned()

    def abandoned(self) -> None:
        self._pending = {}
        self._pending_keys = set()
        self._pending_duplicates = 0

    def keys(self, partition: int) -> int:
        index = self._indexes.get(partition)
        return 0 if index is None else len(index)

    def _current_hour(self) -> int:
        return int(self._clock()) // 3600

    def _hour_of(self, received_at: str) -> int:
        """The epoch hour of a record's ``received_at`` (the committer's own ISO format)."""
        prefix = received_at[:13]
        hour = self._hours.get(prefix)
        if hour is None:
            try:
                parsed = datetime.strptime(prefix, "%Y-%m-%dT%H").replace(tzinfo=UTC)
                hour = int(parsed.timestamp()) // 3600
            except ValueError:
                hour = self._current_hour()
            if len(self._hours) > 1000:
                self._hours.clear()
            self._hours[prefix] = hour
        return hour
