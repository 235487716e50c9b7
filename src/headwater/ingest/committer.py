"""Group commit: many requests share one append to the ingest log.

The Tracking API answers 200 only after a request's events are committed. Committing each
request alone would cost one transaction per request; instead a single writer thread takes
every request that arrived while the previous append ran and appends them together, one record
per request. That append is all an acknowledgement waits for: deduplication, counters and
everything else run behind the log (``pipeline/chain.py``). Latency stays near one commit,
throughput grows with load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from headwater.errors import LogUnavailable, UnstorableSubmission
from headwater.store.ingest_log import IngestLog
from headwater.store.record import encode_record

logger = logging.getLogger(__name__)

# Raised by encoding a submission's own data, not by the database: the submission is at fault.
_DATA_ERRORS = (
    msgspec.EncodeError,
    RecursionError,
    UnicodeError,
    OverflowError,
    TypeError,
    ValueError,
)


@dataclass(slots=True)
class Submission:
    """One request's worth of messages for one source."""

    workspace_id: str
    source_id: str
    received_at: str
    events: list[dict[str, Any]]
    dropped: list[dict[str, Any]]
    flags: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Pending:
    submission: Submission
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None]


class GroupCommitter:
    def __init__(
        self,
        log: IngestLog,
        *,
        max_events_per_commit: int = 20_000,
        on_commit: Callable[[float, int], None] | None = None,
    ) -> None:
        self._log = log
        self._max_events = max_events_per_commit
        self._on_commit = on_commit
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self.healthy = True
        self.last_error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    async def submit(self, submission: Submission) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Pending(submission, loop, future))
        return await future

    # --- writer thread ----------------------------------------------------------------------

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            group = [first]
            events = len(first.submission.events)
            while events < self._max_events:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                group.append(item)
                events += len(item.submission.events)
            self._commit(group)

    def _commit(self, group: list[_Pending]) -> None:
        started = time.perf_counter()
        try:
            records = self._write(group)
        except _DATA_ERRORS as exc:
            # One request's messages broke the whole group's append, which never happened.
            # Commit each request alone, so only that one fails.
            if len(group) > 1:
                for pending in group:
                    self._commit([pending])
                return
            logger.error(
                "event log: a request's messages cannot be stored: %s: %s", type(exc).__name__, exc
            )
            unstorable = UnstorableSubmission(f"{type(exc).__name__}: {exc}")
            _resolve(group, lambda p: p.future.set_exception(unstorable))
            return
        except Exception as exc:  # the log is down, the disk is full, …
            self.healthy = False
            self.last_error = f"{type(exc).__name__}: {exc}"
            logger.error("event log write failed: %s", self.last_error)
            error = LogUnavailable(self.last_error)
            _resolve(group, lambda p: p.future.set_exception(error))
            return
        self.healthy = True
        if self._on_commit is not None:
            self._on_commit(time.perf_counter() - started, records)
        _resolve(group, lambda p: p.future.set_result(None))

    def _write(self, group: list[_Pending]) -> int:
        """Append one record per request that carried anything; return how many."""
        records: list[tuple[str, bytes]] = []
        for pending in group:
            sub = pending.submission
            if sub.events or sub.dropped or sub.flags:
                payload = encode_record(
                    sub.workspace_id,
                    sub.source_id,
                    sub.received_at,
                    sub.events,
                    sub.dropped,
                    sub.flags,
                )
                records.append((sub.workspace_id, payload))
        self._log.append(records)
        return len(records)


def _resolve(group: list[_Pending], action: Callable[[_Pending], None]) -> None:
    """Settle each future on its own event loop, with one wake-up per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
    for pending in group:
        by_loop.setdefault(pending.loop, []).append(pending)
    for loop, items in by_loop.items():

        def settle(items: list[_Pending] = items) -> None:
            for p in items:
                if not p.future.done():
                    action(p)

        # A closed loop raises RuntimeError: nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle)
