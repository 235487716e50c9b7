"""Group commit: many requests share one append to the ingest log.

The Tracking API answers 200 only after a request's events are committed. Committing each
request alone would cost one transaction per request; instead the event loop that serves the
requests commits, once per turn of the loop, every request that arrived in that turn, one
record per request. That append is all an acknowledgement waits for: deduplication, counters
and everything else run behind the log (``pipeline/chain.py``). Latency stays near one commit,
throughput grows with load.

The commit runs on the loop's own thread. A writer thread of its own cost every request a
queue hand-off, a thread wake-up, a turn of the GIL and a cross-thread wake-up of the loop
back: measured on 2 cores, committing on the loop served 15 % more single-event requests and
12 % more batches, with a lower p99. While a commit runs the loop reads nothing, and nothing
is waiting to be read that the commit would not have made wait anyway.
"""

from __future__ import annotations

import asyncio
import logging
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
        # Requests waiting for their loop's next commit, per loop (a process may run several).
        self._waiting: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        self._lock = threading.Lock()  # held by a commit; ``stop`` waits for it
        self._stopped = False
        self.healthy = True
        self.last_error: str | None = None

    async def submit(self, submission: Submission) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        group = self._waiting.get(loop)
        if group is None:  # the turn's first request: commit once the turn's others are in
            group = self._waiting[loop] = []
            loop.call_soon(self._flush, loop)
        group.append(_Pending(submission, future))
        return await future

    def stop(self) -> None:
        """Commit nothing more: a request still waiting gets ``LogUnavailable`` (503)."""
        with self._lock:
            self._stopped = True

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        waiting = self._waiting.pop(loop, [])
        with self._lock:
            if self._stopped:
                error = LogUnavailable("the server is stopping")
                _resolve(waiting, lambda p: p.future.set_exception(error))
                return
            group: list[_Pending] = []
            events = 0
            for pending in waiting:
                group.append(pending)
                events += len(pending.submission.events)
                if events >= self._max_events:
                    self._commit(group)
                    group, events = [], 0
            if group:
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
    """Settle each request's future (a client that went away has cancelled its own)."""
    for pending in group:
        if not pending.future.done():
            action(pending)
