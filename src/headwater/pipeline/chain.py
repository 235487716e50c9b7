"""The stage chain: ingest log → per-source stages, in Segment's order → the processed stream.

Segment runs a dedupe step after its Kafka, then per source: suppression, privacy controls,
Protocols (validation, transformations), identity resolution. Here each of those is a
``Stage`` and the chain runs them in order over a pass of ingest log records, then writes in
ONE state-database transaction: the records that survived (the processed stream, which the
archive, counters, router and warehouses read), each stage's own durable state, and the
chain's new position in the ingest log. So a crash anywhere in a pass leaves no trace of it,
and the pass is done again, from the same position, with the same state: nothing is let
through twice, nothing dropped.

A stage drops an event by leaving it out of ``record.events`` and counting it on the record
(``duplicates`` for dedup); a record whose events all went still goes on, so the counters see
why. A record no stage changed is passed on byte for byte.

Ownership: the ingest log's partitions are keyed by workspace; a chain process leases
partitions (``store/positions.py``), so a workspace's events are seen, in order, by exactly
one chain at a time. A stage loads its state for a partition when the chain takes it over
(``acquire``) and forgets it when the lease goes (``release``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import msgspec
from sqlalchemy.engine import Connection, Engine

from headwater.errors import LeaseLost, RecordError
from headwater.store.database import write_transaction
from headwater.store.ingest_log import IngestLog
from headwater.store.log import EventLog
from headwater.store.positions import StagePositions
from headwater.store.record import LogRecord, decode_record

logger = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode


class Stage(Protocol):
    name: str

    def acquire(self, partition: int) -> None:
        """The chain owns ``partition`` from now on: load its state."""

    def release(self, partition: int) -> None:
        """Another process may own ``partition`` now: forget its state."""

    def process(self, partition: int, records: list[LogRecord]) -> None:
        """Drop or change events in place; count what was dropped on the record."""

    def commit_in(self, conn: Connection) -> None:
        """Write this pass's durable state inside the chain's transaction."""

    def committed(self) -> None:
        """The pass's transaction committed: make its state current."""

    def abandoned(self) -> None:
        """The pass rolled back: forget its state."""


class StageChain:
    def __init__(
        self,
        ingest_log: IngestLog,
        processed: EventLog,
        positions: StagePositions,
        stages: Sequence[Stage],
        *,
        state: Engine,
        owner: str | None = None,
        batch: int = 2000,
        interval: float = 0.05,
        lease_ttl: float = 10.0,
        clock: Callable[[], float] = time.time,
        on_processed: Callable[[int], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ingest_log = ingest_log
        self._processed = processed
        self._positions = positions
        self._stages = list(stages)
        self._state = state
        self.owner = owner or f"{os.uname().nodename}:{os.getpid()}:chain"
        self._batch = batch
        self._interval = interval
        self._lease_ttl = lease_ttl
        self._clock = clock
        self._on_processed = on_processed
        self._monotonic = monotonic
        self._held: list[int] = []
        self._leased_at = float("-inf")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failing: str | None = None
        self.full = False  # the last pass read as much as it may: go again at once
        positions.register(ingest_log.partitions)

    # --- one pass -----------------------------------------------------------------------------

    def run_once(self) -> int:
        """Read, run the stages, commit; the number of ingest log records handled."""
        self._renew_leases()
        if not self._held:
            return 0
        handled = 0
        self.full = False
        per_partition = max(1, self._batch // len(self._held))
        positions = self._positions.positions()
        for partition in self._held:
            start = positions.get(partition, 0)
            rows = self.ingest_log.read(partition, start, per_partition)
            if rows:
                self._pass(partition, start, rows)
                handled += len(rows)
                self.full = self.full or len(rows) >= per_partition
        return handled

    def _pass(self, partition: int, start: int, rows: list[tuple[int, bytes]]) -> None:
        records: list[LogRecord] = []
        originals: list[tuple[bytes, int, int]] = []  # payload, event count, duplicates
        for offset, payload in rows:
            try:
                record = decode_record(payload)
            except RecordError as exc:
                logger.error("stage chain: skipping ingest log record %d: %s", offset, exc)
                continue
            records.append(record)
            originals.append((payload, len(record.events), record.duplicates))
        try:
            for stage in self._stages:
                stage.process(partition, records)
            out = [
                payload if (len(r.events), r.duplicates) == (n, d) else _encode(r)
                for r, (payload, n, d) in zip(records, originals, strict=True)
            ]
            with write_transaction(self._state) as conn:
                for stage in self._stages:
                    stage.commit_in(conn)
                self._processed.append_in(conn, out)
                self._positions.advance_in(conn, partition, start, rows[-1][0], self.owner)
        except BaseException as exc:
            for stage in self._stages:
                stage.abandoned()
            if isinstance(exc, LeaseLost):
                self._leased_at = float("-inf")  # look again at what we hold
            raise
        for stage in self._stages:
            stage.committed()
        if self._on_processed is not None:
            self._on_processed(sum(len(r.events) for r in records))

    def _renew_leases(self) -> None:
        if self._monotonic() - self._leased_at <= self._lease_ttl / 3:
            return
        held = self._positions.acquire(self.owner, self._lease_ttl)
        self._leased_at = self._monotonic()
        for partition in set(self._held) - set(held):
            for stage in self._stages:
                stage.release(partition)
        for partition in set(held) - set(self._held):
            for stage in self._stages:
                stage.acquire(partition)
        self._held = held

    # --- retention and lag --------------------------------------------------------------------

    def trim(self) -> int:
        """Let the ingest log drop what the chain has committed past."""
        positions = self._positions.positions()
        return sum(
            self.ingest_log.drop_through(p, positions.get(p, 0)) for p in self.ingest_log.partitions
        )

    def lag(self) -> tuple[int, float]:
        """Ingest log records not yet through the chain, and the age in seconds of the oldest
        one (0 when there are none)."""
        positions = self._positions.positions()
        records, oldest = 0, None
        for partition in self.ingest_log.partitions:
            position = positions.get(partition, 0)
            behind = self.ingest_log.end(partition) - position
            if behind > 0:
                records += behind
                at = self.ingest_log.appended_at(partition, position + 1)
                if at is not None and (oldest is None or at < oldest):
                    oldest = at
        return records, 0.0 if oldest is None else max(0.0, self._clock() - oldest)

    # --- thread -------------------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="stage-chain", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop passing and give the partitions back (a no-op where the chain never ran)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        elif not self._held:
            return
        try:
            self._positions.release(self.owner)
        except Exception:
            logger.exception("could not release the stage chain's leases")
        for partition in self._held:
            for stage in self._stages:
                stage.release(partition)
        self._held = []

    def _run(self) -> None:
        last_trim = self._monotonic()
        while not self._stop.is_set():
            started = self._monotonic()
            try:
                self.run_once()
                self.failing = None
                if self._monotonic() - last_trim > 5:
                    self.trim()
                    last_trim = self._monotonic()
            except Exception as exc:
                self.failing = f"{type(exc).__name__}: {exc}"
                logger.exception("stage chain failed; retrying")
                self._stop.wait(1.0)
                continue
            if not self.full:
                self._stop.wait(max(0.0, self._interval - (self._monotonic() - started)))
