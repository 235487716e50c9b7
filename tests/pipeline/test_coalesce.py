"""The stage chain coalesces small ingest records into fewer processed records, on SQLite and
PostgreSQL: every event once and in order, each minute's counters, each hour's archive file,
the debugger and a batch's bytes as they were with one processed record per request."""

from __future__ import annotations

import gzip
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.pipeline.chain import COALESCE_BYTES, StageChain
from headwater.pipeline.observer import Observer
from headwater.store import schema
from headwater.store.archive import ArchiveWriter
from headwater.store.counters import RECEIVED, minute_of
from headwater.store.database import database_url, open_engine
from headwater.store.ingest_log import IngestLog, open_ingest_log
from headwater.store.log import EventLog
from headwater.store.migrations import migrate
from headwater.timestamps import format_timestamp, parse_timestamp
from tests.support.chain import dedup_chain
from tests.support.clock import Clock
from tests.support.records import log_record, stored_event

GROUP = "test-reader"
T0 = datetime(2024, 3, 5, 10, 0, 0, tzinfo=UTC).timestamp()


def at(seconds: float) -> str:
    """A receivedAt ``seconds`` after 10:00:00 UTC, as the Tracking API stores it."""
    return format_timestamp(datetime.fromtimestamp(T0 + seconds, UTC))


def event(message_id: str, received_at: str, pad: int = 0) -> dict[str, Any]:
    return stored_event(
        message_id, received_at, timestamp=received_at, properties={"pad": "x" * pad}
    )


@dataclass
class Request:
    received_at: str
    events: Sequence[dict[str, Any]] = ()
    dropped: Sequence[dict[str, Any]] = ()
    flags: Sequence[str] = ()
    source: str = "src_a"
    workspace: str = "ws_1"

    def payload(self) -> bytes:
        return log_record(
            self.source,
            self.received_at,
            self.events,
            dropped=self.dropped,
            flags=self.flags,
            workspace_id=self.workspace,
        )


def single(message_id: str, seconds: float, **kwargs: Any) -> Request:
    pad = kwargs.pop("pad", 0)
    received_at = at(seconds)
    return Request(received_at, [event(message_id, received_at, pad)], **kwargs)


@dataclass
class Chain:
    engine: Engine
    ingest: IngestLog
    processed: EventLog
    chain: StageChain

    def run(self, requests: Sequence[Request]) -> list[bytes]:
        """Append the requests to the ingest log, run the chain once over all of them, and
        give the processed records in the order they were appended."""
        self.ingest.append([(r.workspace, r.payload()) for r in requests])
        assert self.chain.run_once() == len(requests)  # one pass per partition
        return [
            payload
            for partition in self.processed.partitions
            for _, payload in self.processed.poll(GROUP, partition, 100_000)
        ]


def build(engine: Engine, directory: Path, coalesce_bytes: int = COALESCE_BYTES) -> Chain:
    clock = Clock(T0 + 3600)
    ingest = open_ingest_log(engine, directory, durability="normal", clock=clock)
    processed, chain = dedup_chain(engine, ingest, clock, GROUP, coalesce_bytes=coalesce_bytes)
    return Chain(engine, ingest, processed, chain)


@pytest.fixture
def chain(engine: Engine, tmp_path: Path) -> Iterator[Chain]:
    built = build(engine, tmp_path / "ingest")
    yield built
    built.chain.stop()
    built.ingest.close()


def decoded(payloads: Sequence[bytes]) -> list[dict[str, Any]]:
    return [msgspec.json.decode(p) for p in payloads]


def ids(records: Sequence[dict[str, Any]], workspace: str | None = None) -> list[str]:
    return [
        e["messageId"]
        for r in records
        if workspace is None or r["workspace_id"] == workspace
        for e in r["events"]
    ]


def test_a_pass_of_single_event_requests_becomes_few_records_in_order(chain: Chain) -> None:
    requests = []
    for n in range(500):
        requests.append(single(f"a{n}", n * 0.05))
        if n % 10 == 0:
            requests.append(single(f"b{n}", n * 0.05, source="src_b", workspace="ws_2"))
    records = decoded(chain.run(requests))
    # Another workspace's requests in between do not cut a workspace's run: only the cap does.
    ws_1 = sum(len(r.payload()) for r in requests if r.workspace == "ws_1")
    assert sorted({(r["workspace_id"], r["source_id"]) for r in records}) == [
        ("ws_1", "src_a"),
        ("ws_2", "src_b"),
    ]
    assert len(records) <= ws_1 // COALESCE_BYTES + 2
    assert ids(records, "ws_1") == [f"a{n}" for n in range(500)]
    assert ids(records, "ws_2") == [f"b{n}" for n in range(0, 500, 10)]
    for record in records:
        # The first request's arrival; each event keeps its own.
        assert record["received_at"] == record["events"][0]["receivedAt"]
        assert record["dropped"] == [] and record["duplicates"] == 0


def test_a_workspace_keeps_its_order_across_its_sources(chain: Chain) -> None:
    requests = [
        single("a1", 1),
        single("a2", 2),
        single("b1", 3, source="src_b"),
        single("a3", 4),
        single("a4", 5),
        single("b2", 6, source="src_b"),
        single("b3", 7, source="src_b"),
    ]
    records = decoded(chain.run(requests))
    assert [(r["source_id"], ids([r])) for r in records] == [
        ("src_a", ["a1", "a2"]),
        ("src_b", ["b1"]),
        ("src_a", ["a3", "a4"]),
        ("src_b", ["b2", "b3"]),
    ]


def test_a_coalesced_record_stops_at_its_size_cap(chain: Chain) -> None:
    requests = [single(f"big{n}", 1, pad=3000) for n in range(200)]  # ~3 KB each
    payloads = chain.run(requests)
    assert ids(decoded(payloads)) == [f"big{n}" for n in range(200)]
    total = sum(len(r.payload()) for r in requests)
    assert total / COALESCE_BYTES <= len(payloads) < len(requests) / 10
    assert all(len(p) <= COALESCE_BYTES for p in payloads)


def test_a_batch_passes_byte_for_byte_between_coalesced_singles(chain: Chain) -> None:
    received_at = at(5)
    batch = Request(received_at, [event(f"batch{n}", received_at, pad=900) for n in range(100)])
    original = batch.payload()
    assert len(original) > 90_000
    requests = [single("s1", 1), single("s2", 2), batch, single("s3", 6), single("s4", 7)]
    payloads = chain.run(requests)
    assert len(payloads) == 3
    assert payloads[1] == original
    assert [ids([r]) for r in decoded(payloads)[::2]] == [["s1", "s2"], ["s3", "s4"]]


def test_records_across_a_minute_or_hour_boundary_stay_in_their_minute_and_hour(
    chain: Chain, tmp_path: Path
) -> None:
    seconds = [1799.5, 1799.9, 1800.1, 1800.6, 3599.2, 3599.8, 3600.0, 3600.4]  # 10:29:59.5 …
    requests = [single(f"m{n}", s) for n, s in enumerate(seconds)]
    payloads = chain.run(requests)
    assert [ids([r]) for r in decoded(payloads)] == [
        ["m0", "m1"],
        ["m2", "m3"],
        ["m4", "m5"],
        ["m6", "m7"],
    ]
    consume(chain, tmp_path / "archive")
    received = received_per_minute(chain.engine)
    minute = minute_of(T0)
    assert received == {minute + 29: 2, minute + 30: 2, minute + 59: 2, minute + 60: 2}
    archive = archived(tmp_path / "archive")
    assert {path: [e["messageId"] for e in events] for path, events in archive.items()} == {
        "src_a/2024-03-05/10.ndjson.gz": ["m0", "m1", "m2", "m3", "m4", "m5"],
        "src_a/2024-03-05/11.ndjson.gz": ["m6", "m7"],
    }


def test_counters_archive_and_debugger_are_what_they_were_with_a_record_per_request(
    chain: Chain, tmp_path: Path
) -> None:
    """A mix of what a source sends, run through the chain with and without coalescing."""

    def dropped(reason: str, n: int) -> dict[str, Any]:
        return {"reason": reason, "detail": f"why {n}", "message": {"n": n}}

    requests: list[Request] = []
    for n in range(120):
        s = n * 0.9  # two minutes
        if n % 15 == 3:  # a single message dropped on ingest
            requests.append(Request(at(s), [], [dropped("no_user_anon_id", n)]))
        elif n % 15 == 7:  # a batch with a bad message: Segment's multi_user_error
            requests.append(
                Request(
                    at(s),
                    [event(f"e{n}-1", at(s)), event(f"e{n}-2", at(s))],
                    [dropped("message_too_large", n)],
                    ["multi_user_error"],
                )
            )
        elif n % 15 == 11:  # a batch with nothing left
            requests.append(Request(at(s), [], [dropped("bad_request", n)], ["empty_batch_result"]))
        elif n % 15 == 13:  # a repeat of an earlier message: a duplicate
            requests.append(single(f"e{n - 13}", s))
        else:
            requests.append(single(f"e{n}", s, source="src_b" if n % 7 == 0 else "src_a"))
    coalesced = chain.run(requests)
    (tmp_path / "reference").mkdir()
    engine = open_engine(database_url(tmp_path / "reference", None))
    migrate(engine)
    reference = build(engine, tmp_path / "reference-ingest", coalesce_bytes=0)
    try:
        alone = reference.run(requests)
        consume(chain, tmp_path / "archive")
        consume(reference, tmp_path / "reference-archive")
        assert len(alone) == len(requests)
        assert len(coalesced) < len(requests) * 0.7
        assert ids(decoded(coalesced)) == ids(decoded(alone))
        assert counters(chain.engine) == counters(reference.engine)
        assert samples(chain.engine) == samples(reference.engine)
        assert debugger(chain.engine) == debugger(reference.engine)
        assert archived(tmp_path / "archive") == archived(tmp_path / "reference-archive")
    finally:
        reference.chain.stop()
        reference.ingest.close()
        reference.engine.dispose()
    by_step: Counter[tuple[str, str]] = Counter()
    for (_, _, _, step, reason), n in counters(chain.engine).items():
        by_step[(step, reason)] += n
    assert by_step[("duplicate", "")] == 8  # the counters did see the mix
    assert by_step[("request_flag", "multi_user_error")] == 8


def consume(chain: Chain, archive_dir: Path) -> None:
    """Run the archive and observer consumer groups over the whole processed stream."""
    records = [
        (partition, offset, payload)
        for partition in chain.processed.partitions
        for offset, payload in chain.processed.poll(GROUP, partition, 100_000)
    ]
    ArchiveWriter(archive_dir)(records)
    Observer(chain.engine)(records)


def counters(engine: Engine) -> dict[tuple[Any, ...], int]:
    c = schema.counters.c
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.minute, c.source_id, c.destination_id, c.step, c.reason, c["count"])
        )
        return {tuple(row[:5]): int(row[5]) for row in rows}


def received_per_minute(engine: Engine) -> dict[int, int]:
    return {
        key[0]: n for key, n in counters(engine).items() if key[3] == RECEIVED and key[1] == "src_a"
    }


def samples(engine: Engine) -> list[tuple[Any, ...]]:
    c = schema.counter_samples.c
    query = sa.select(
        c.source_id, c.destination_id, c.step, c.reason, c.recorded_at, c.sample
    ).order_by(c.id)
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]


def debugger(engine: Engine) -> list[tuple[Any, ...]]:
    t = schema.debugger_entries.c
    query = sa.select(t.source_id, t.received_at, t.status, t.reason, t.entry).order_by(t.id)
    with engine.connect() as conn:
        rows = [tuple(row) for row in conn.execute(query)]
    assert rows and all(parse_timestamp(row[1]) for row in rows)
    return rows


def archived(archive_dir: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        str(path.relative_to(archive_dir)): [
            msgspec.json.decode(line) for line in gzip.decompress(path.read_bytes()).splitlines()
        ]
        for path in sorted(archive_dir.rglob("*.ndjson.gz"))
    }
