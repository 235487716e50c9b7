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
(``duplicates`` for dedup, ``filtered`` by reason for Protocols); a record whose events all went
still goes on, so the counters see why. A stage that changes an event assigns the record a new
``events`` list; a record no stage changed is passed on byte for byte.

Then the pass's small records are coalesced (``coalesce``): a run of a workspace's records of
one source, arrived in the same UTC minute, with nothing dropped on ingest and no request
flags, goes on as ONE processed record, up to ``COALESCE_BYTES``. Every processed record costs
each consumer group a poll, decode, handle, commit and truncate whatever it holds; a
single-event request alone paid that for one event. What the consumers file by the record's
``received_at`` (the counters' minute, the archive's hour) is the same for every request of
the run; what needs an event's own arrival (delivery latency, the debugger) reads its
``receivedAt``.

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
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import msgspec
from sqlalchemy.engine import Connection, Engine

from headwater.errors import LeaseLost, RecordError
from headwater.store.database import write_transaction
from headwater.store.ingest_log import IngestLog
from headwater.store.log import EventLog, IngestRef
from headwater.store.positions import StagePositions
from headwater.store.record import VERSION, LogRecord, decode_record

logger = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode

# A record up to this size may be coalesced with its neighbours (Segment's cap on a single
# message is 32 KB, so every single-event request qualifies); batches (~100 KB of events) are
# left alone, and go on byte for byte when no stage changed them.
COALESCE_RECORD_BYTES = 32 * 1024
# A coalesced record stops growing here. Measured (bench/consumers.py, single events): the
# consumers' cost a request is the same with caps of 16 KB to 1 MB, since a record of a dozen
# events shares its fixed cost already; the smaller cap keeps a consumer's pass (up to 2,000
# records) to a bounded amount of memory.
COALESCE_BYTES = 64 * 1024


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
        coalesce_bytes: int = COALESCE_BYTES,  # 0: every record goes on alone
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
        self._coalesce_bytes = coalesce_bytes
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
        # what an unchanged record goes on as, its payload's length, its events, duplicates
        originals: list[tuple[bytes | IngestRef, int, list[msgspec.Raw], int]] = []
        named = self._processed.ingest_log is self.ingest_log
        for offset, payload in rows:
            try:
                record = decode_record(payload)
            except RecordError as exc:
                logger.error("stage chain: skipping ingest log record %d: %s", offset, exc)
                continue
            records.append(record)
            same = IngestRef(partition, offset) if named else payload
            originals.append((same, len(payload), record.events, record.duplicates))
        try:
            for stage in self._stages:
                stage.process(partition, records)
            out = coalesce(
                records,
                [
                    same if r.events is events and r.duplicates == d and not r.filtered else None
                    for r, (same, _, events, d) in zip(records, originals, strict=True)
                ],
                [size for _, size, _, _ in originals],
                max_bytes=self._coalesce_bytes,
            )
            with write_transaction(self._state) as conn:
                for stage in self._stages:
                    stage.commit_in(conn)
                appended = self._processed.append_in(conn, out)
                self._positions.advance_in(conn, partition, start, rows[-1][0], self.owner)
        except BaseException as exc:
            for stage in self._stages:
                stage.abandoned()
            if isinstance(exc, LeaseLost):
                self._leased_at = float("-inf")  # look again at what we hold
            raise
        for stage in self._stages:
            stage.committed()
        read = dict(rows)
        self._processed.remember(
            appended, [read[p.offset] if isinstance(p, IngestRef) else p for p in out]
        )
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
        """Let the ingest log drop what the chain has committed past and no processed record
        still names. The positions are read first: a record named after that names an offset
        above them."""
        positions = self._positions.positions()
        dropped = 0
        for p in self.ingest_log.partitions:
            through = positions.get(p, 0)
            named = self._processed.oldest_reference(p)
            if named is not None:
                through = min(through, named - 1)
            dropped += self.ingest_log.drop_through(p, through)
        return dropped

    def behind(self, before: float) -> bool:
        """Whether an ingest log record appended at or before ``before`` has yet to go through
        the chain (a deletion waits for it to reach the archive before rewriting)."""
        positions = self._positions.positions()
        for partition in self.ingest_log.partitions:
            following = self.ingest_log.read(partition, positions.get(partition, 0), 1)
            if following:
                at = self.ingest_log.appended_at(partition, following[0][0])
                if at is not None and at <= before:
                    return True
        return False

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


def _sum_filtered(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for by_reason in counts:
        for reason, n in by_reason.items():
            out[reason] = out.get(reason, 0) + n
    return out


def _minute_key(received_at: str) -> str | None:
    """``YYYY-MM-DDTHH:MM`` of a received_at in the stored form (UTC); None for any other form,
    whose minute is not read off its characters (such a record is not coalesced)."""
    if len(received_at) == 24 and received_at[10] == "T" and received_at[23] == "Z":
        return received_at[:16]
    return None


def coalesce(
    records: Sequence[LogRecord],
    unchanged: Sequence[bytes | IngestRef | None],
    sizes: Sequence[int],
    *,
    record_bytes: int = COALESCE_RECORD_BYTES,
    max_bytes: int = COALESCE_BYTES,
) -> list[bytes | IngestRef]:
    """The processed records for a pass's ``records``, in order, small ones coalesced.

    ``unchanged[i]`` is what record ``i`` goes on as when no stage changed it and it stays
    alone (its payload, or a reference to it), else None; ``sizes[i]`` its original
    payload's length.
    Records coalesce when they are of one workspace and source, arrived in the same UTC minute,
    and have neither ``dropped`` messages nor ``flags`` nor ``forwarded_from``: those are per
    request (a debugger entry's arrival, MULTI_USER_ERROR, events Protocols forwarded, which
    the source schema leaves out), everything else a consumer reads from a record is a count
    it may add up. Only a workspace's consecutive records coalesce, so its events keep
    their order; a run is placed where its first record was. The coalesced record's
    ``received_at`` is its first request's.
    """
    groups: list[list[int]] = []
    open_runs: dict[str, tuple[int, tuple[str, str], int]] = {}  # workspace -> group, key, bytes
    for i, record in enumerate(records):
        workspace = record.workspace_id
        minute = _minute_key(record.received_at)
        size = sizes[i]
        if (
            minute is None
            or record.dropped
            or record.flags
            or record.forwarded_from
            or size > record_bytes
        ):
            open_runs.pop(workspace, None)
            groups.append([i])
            continue
        key = (record.source_id, minute)
        run = open_runs.get(workspace)
        if run is not None and run[1] == key and run[2] + size <= max_bytes:
            groups[run[0]].append(i)
            open_runs[workspace] = (run[0], key, run[2] + size)
            continue
        open_runs[workspace] = (len(groups), key, size)
        groups.append([i])
    out: list[bytes | IngestRef] = []
    for group in groups:
        if len(group) == 1:
            i = group[0]
            payload = unchanged[i]
            out.append(payload if payload is not None else _encode(records[i]))
            continue
        first = records[group[0]]
        out.append(
            _encode(
                LogRecord(
                    v=VERSION,
                    workspace_id=first.workspace_id,
                    source_id=first.source_id,
                    received_at=first.received_at,
                    events=[event for i in group for event in records[i].events],
                    duplicates=sum(records[i].duplicates for i in group),
                    filtered=_sum_filtered(records[i].filtered for i in group),
                )
            )
        )
    return out
