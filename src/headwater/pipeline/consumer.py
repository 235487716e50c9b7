"""Running one consumer group of the event log in a background thread.

Each pass polls every partition the consumer leases and hands the handler all their records at
once, so a stage turns a pass into one transaction (or one file write) whatever the partition
count. Offsets are committed only after the handler returns, so a stage sees every record at
least once and a failing handler is retried, never skipped. Passes start at most every
``interval`` seconds unless the previous one was full: under load a pass carries many records
and its fixed cost is shared, while the hot path keeps the CPU between passes.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from headwater.store.log import EventLog

logger = logging.getLogger(__name__)

Handler = Callable[[list[tuple[int, int, bytes]]], None]


class Consumer:
    def __init__(
        self,
        log: EventLog,
        group: str,
        handler: Handler,
        *,
        owner: str | None = None,
        batch: int = 2000,
        interval: float = 0.25,
        lease_ttl: float = 10.0,
        exclusive: bool = False,
        idle: Callable[[], int] | None = None,
    ) -> None:
        self.log = log
        self.group = group
        self._handler = handler
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{id(self)}"
        self._batch = batch
        self._interval = interval
        self._lease_ttl = lease_ttl
        self._exclusive = exclusive  # one owner holds every partition (store/leases.py)
        # Work the group's owner does when no record is waiting (identity resolution's
        # replays); it returns how much it did, and a pass that did some is followed at once.
        self._idle = idle
        self._held: list[int] = []
        self._leased_at = float("-inf")
        self._full = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Why the handler failed on the records it is retrying; None when it is not stuck.
        self.failing: str | None = None

    def run_once(self) -> int:
        """One pass over the leased partitions; the number of records handled."""
        if time.monotonic() - self._leased_at > self._lease_ttl / 3:
            self._held = self.log.acquire(
                self.group, self.owner, self._lease_ttl, exclusive=self._exclusive
            )
            self._leased_at = time.monotonic()
        if not self._held:
            self.failing = None  # another process has the partitions now
            return 0
        per_partition = max(1, self._batch // len(self._held))
        polled = self.log.poll_many(self.group, self._held, per_partition)
        records = [(p, offset, payload) for p, rows in polled.items() for offset, payload in rows]
        if not records:
            self.failing = None
            if self._idle is None:
                return 0
            done = self._idle()
            self._full = done > 0
            return done
        try:
            self._handler(records)
        except Exception as exc:
            self.failing = f"{type(exc).__name__}: {exc}"
            raise
        self.failing = None
        self.log.commit_many(
            self.group, {p: rows[-1][0] for p, rows in polled.items() if rows}, owner=self.owner
        )
        self._full = any(len(rows) >= per_partition for rows in polled.values())
        return len(records)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"consumer-{self.group}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self.log.release(self.group, self.owner)
        except Exception:
            logger.exception("could not release the leases of %s", self.group)

    def _run(self) -> None:
        last_truncate = time.monotonic()
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._full = False
                self.run_once()
                if time.monotonic() - last_truncate > 5:
                    self.log.truncate()
                    last_truncate = time.monotonic()
            except Exception:
                logger.exception("consumer %s failed; retrying", self.group)
                self._stop.wait(1.0)
            if not self._full:
                self._stop.wait(max(0.0, self._interval - (time.monotonic() - started)))
