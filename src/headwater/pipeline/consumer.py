"""Running one consumer group of the event log in a background thread.

The handler gets a partition's records; the offset is committed only after it returns, so a
stage sees every record at least once and a failing handler is retried, never skipped.
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
        batch: int = 500,
        idle_sleep: float = 0.05,
        lease_ttl: float = 10.0,
    ) -> None:
        self.log = log
        self.group = group
        self._handler = handler
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:{id(self)}"
        self._batch = batch
        self._idle_sleep = idle_sleep
        self._lease_ttl = lease_ttl
        self._held: list[int] = []
        self._leased_at = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self) -> int:
        """One pass over the leased partitions; the number of records handled."""
        if time.monotonic() - self._leased_at > self._lease_ttl / 3:
            self._held = self.log.acquire(self.group, self.owner, self._lease_ttl)
            self._leased_at = time.monotonic()
        handled = 0
        for partition in self._held:
            if self._stop.is_set():
                break
            polled = self.log.poll(self.group, partition, self._batch)
            if not polled:
                continue
            self._handler([(partition, offset, payload) for offset, payload in polled])
            self.log.commit(self.group, partition, polled[-1][0], owner=self.owner)
            handled += len(polled)
        return handled

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"consumer-{self.group}",
                                        daemon=True)
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
            try:
                handled = self.run_once()
                if time.monotonic() - last_truncate > 5:
                    self.log.truncate()
                    last_truncate = time.monotonic()
            except Exception:
                logger.exception("consumer %s failed; retrying", self.group)
                handled = 0
                self._stop.wait(1.0)
            if not handled:
                self._stop.wait(self._idle_sleep)
