"""The observer stage: counters for Source Overview and entries for the Source Debugger.

It reads every log record once (consumer group ``observer``) and turns a whole poll into one
transaction: per-minute counts of received, accepted, duplicate and failed-on-ingest messages
(with samples of what was dropped), and debugger entries trimmed to the newest 500 per source.

The log delivers at least once, but counts must not double after a crash, so the stage keeps
its own high-water offset per partition in ``meta``, written in the same transaction as the
counts: a record at or below it has been counted already and is skipped.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import msgspec
from sqlalchemy.engine import Connection, Engine

from headwater.errors import RecordError
from headwater.store import counters
from headwater.store.consumer_offsets import claim_offsets, record_offsets
from headwater.store.counters import CounterKey, CounterStore, minute_of
from headwater.store.database import write_transaction
from headwater.store.debugger import DEBUGGER_CAP, append_entries
from headwater.store.record import Dropped, decode_processed
from headwater.timestamps import parse_timestamp

logger = logging.getLogger(__name__)

GROUP = "observer"


class Observer:
    """Log consumer handler: ``observer(records)`` with (partition, offset, payload) tuples."""

    def __init__(
        self, engine: Engine, *, group: str = GROUP, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._engine = engine
        self._clock = clock
        self._counters = CounterStore(engine)
        self._meta_prefix = f"consumer_offset/{group}/"
        self._debugger_budget = _SampleBudget(2 * DEBUGGER_CAP, per_second=DEBUGGER_CAP)

    def __call__(self, records: list[tuple[int, int, bytes]]) -> None:
        if not records:
            return
        with write_transaction(self._engine) as conn:
            done = claim_offsets(conn, self._meta_prefix, {p for p, _, _ in records})
            fresh = [r for r in records if r[1] > done.get(r[0], 0)]
            if not fresh:
                return
            batch = _Batch()
            for _partition, offset, payload in fresh:
                batch.add(payload, offset)
            for minute, increments in batch.increments().items():
                self._counters.add_in(conn, increments, batch.samples.get(minute, {}), minute)
            _append_debugger(conn, batch, self._debugger_budget, self._clock())
            record_offsets(conn, self._meta_prefix, ((p, o) for p, o, _ in fresh))


class _Batch:
    """Everything one poll adds: counts and samples per minute, and the records whose messages
    the debugger may show (made into entries only for the few its budget keeps)."""

    def __init__(self) -> None:
        # (minute, source) -> [received, accepted, duplicate]: one lookup a record, keys later
        self._tallies: dict[tuple[int, str], list[int]] = {}
        self._counts: dict[int, Counter[CounterKey]] = defaultdict(Counter)
        self.samples: dict[int, dict[CounterKey, list[Any]]] = defaultdict(
            lambda: defaultdict(list)
        )
        self.shown: list[tuple[str, str, list[msgspec.Raw], list[Dropped]]] = []
        self.wanted: Counter[str] = Counter()  # debugger entries per source, in first-seen order
        self._minutes: dict[str, int] = {}  # receivedAt -> minute: a busy millisecond repeats

    def increments(self) -> dict[int, Counter[CounterKey]]:
        counts: dict[int, Counter[CounterKey]] = defaultdict(Counter)
        for minute, extra in self._counts.items():
            counts[minute].update(extra)
        for (minute, source_id), (received, accepted, duplicates) in self._tallies.items():
            into = counts[minute]
            into[CounterKey(source_id, "", counters.RECEIVED, "")] += received
            into[CounterKey(source_id, "", counters.ACCEPTED, "")] += accepted
            into[CounterKey(source_id, "", counters.DUPLICATE, "")] += duplicates
        return counts

    def add(self, payload: bytes, offset: int) -> None:
        try:
            record = decode_processed(payload)
        except RecordError as exc:
            logger.error("observer: skipping log record at offset %d: %s", offset, exc)
            return
        source_id = record.source_id
        received_at = record.received_at[:40]
        minute = self._minutes.get(received_at)
        if minute is None:
            parsed = parse_timestamp(received_at)
            minute = minute_of(parsed if parsed is not None else time.time())
            if parsed is not None:
                self._minutes[received_at] = minute
        events, dropped, duplicates = record.events, record.dropped, record.duplicates

        tally = self._tallies.get((minute, source_id))
        if tally is None:
            tally = self._tallies[(minute, source_id)] = [0, 0, 0]
        tally[0] += len(events) + len(dropped) + duplicates
        tally[1] += len(events)
        tally[2] += duplicates
        for reason, count in record.filtered.items():
            tally[0] += count
            key = CounterKey(source_id, "", counters.FILTERED_AT_SOURCE, reason[:100])
            self._counts[minute][key] += count
        for flag in record.flags:
            self._counts[minute][CounterKey(source_id, "", counters.REQUEST_FLAG, flag[:100])] += 1
        for drop in dropped:
            key = CounterKey(source_id, "", counters.FAILED_ON_INGEST, drop.reason[:100])
            self._counts[minute][key] += 1
            self.samples[minute][key].append(drop.message)
        if events or dropped:
            self.shown.append((source_id, received_at, events, dropped))
            self.wanted[source_id] += len(events) + len(dropped)


class _Arrival(msgspec.Struct):
    receivedAt: Any = None


_arrival = msgspec.json.Decoder(_Arrival).decode


def _received_at(event: msgspec.Raw, record_received_at: str) -> str:
    """An accepted event's own arrival: a coalesced record holds several requests' events."""
    try:
        at = _arrival(event).receivedAt
    except msgspec.DecodeError:
        return record_received_at
    return at[:40] if isinstance(at, str) else record_received_at


def _entries(
    source_id: str,
    received_at: str,
    events: list[msgspec.Raw],
    dropped: list[Dropped],
    newest: int,
) -> list[dict[str, Any]]:
    """A record's newest ``newest`` debugger entries, in the order its messages came."""
    # Messages left undecoded: the engine's JSON serialiser (msgspec) writes Raw as it is.
    skip = max(0, len(events) + len(dropped) - newest)
    out: list[dict[str, Any]] = [
        {
            "source_id": source_id,
            "received_at": _received_at(event, received_at),
            "status": "accepted",
            "reason": None,
            "entry": {"message": event},
        }
        for event in events[skip:]
    ]
    # A record with dropped messages is one request's (never coalesced): they share its arrival.
    for drop in dropped[max(0, skip - len(events)) :]:
        entry: dict[str, Any] = {"message": drop.message}
        if drop.detail:
            entry["detail"] = drop.detail
        out.append(
            {
                "source_id": source_id,
                "received_at": received_at,
                "status": "dropped",
                "reason": drop.reason[:100],  # the column's width
                "entry": entry,
            }
        )
    return out


class _SampleBudget:
    """How many debugger entries a source may add now: a token bucket per source.

    Segment's debugger is a live sample, "not an exhaustive view". A burst of up to 1,000 is
    written whole, so the debugger then shows exactly its newest 500; under sustained load a
    source adds about 500 entries a second, so the debugger stays live without writing a row
    for every event.
    """

    def __init__(self, burst: int, per_second: float) -> None:
        self._burst = burst
        self._rate = per_second
        self._tokens: dict[str, tuple[float, float]] = {}  # source -> (tokens, at)

    def take(self, source_id: str, wanted: int, now: float) -> int:
        tokens, at = self._tokens.get(source_id, (float(self._burst), now))
        tokens = min(float(self._burst), tokens + (now - at) * self._rate)
        granted = min(wanted, int(tokens))
        self._tokens[source_id] = (tokens - granted, now)
        return granted


def _append_debugger(conn: Connection, batch: _Batch, budget: _SampleBudget, now: float) -> None:
    """Insert the newest entries each source's budget allows, then trim each to the newest 500.

    The poll is walked from its newest record and only until every budget is spent, so under
    load only the entries that are written are ever made.
    """
    allowed = {source: budget.take(source, n, now) for source, n in batch.wanted.items()}
    left = sum(allowed.values())
    kept: list[dict[str, Any]] = []
    per_source: Counter[str] = Counter()
    for shown in reversed(batch.shown):  # newest first, so the budget keeps the newest
        if not left:
            break
        room = allowed[shown[0]] - per_source[shown[0]]
        if room <= 0:
            continue
        newest = _entries(*shown, room)
        per_source[shown[0]] += len(newest)
        left -= len(newest)
        kept.extend(reversed(newest))
    if not kept:
        return
    kept.reverse()
    append_entries(conn, kept)
