"""A record the stage chain passes on unchanged is named, not copied: the processed stream
holds its ingest log position, readers get the ingest log's bytes, and the ingest log keeps
it until every consumer group has read it. On SQLite and PostgreSQL."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.errors import RecordError
from headwater.pipeline.chain import StageChain
from headwater.store import schema
from headwater.store.database import is_sqlite
from headwater.store.ingest_log import IngestLog, open_ingest_log
from headwater.store.log import EventLog, IngestRef
from headwater.store.record import decode_record
from headwater.store.segments import SegmentLog
from tests.support.chain import dedup_chain
from tests.support.clock import Clock
from tests.support.records import log_record, stored_event

GROUPS = ("first", "second")
RECEIVED_AT = "2024-03-05T10:00:00.000Z"


def batch(prefix: str, n: int = 100) -> bytes:
    """A request of ``n`` ~500-byte events: above the coalescing size, so it goes on alone."""
    return log_record(
        "src_a",
        RECEIVED_AT,
        [
            stored_event(f"{prefix}-{i}", RECEIVED_AT, properties={"pad": "x" * 400})
            for i in range(n)
        ],
    )


@dataclass
class Setup:
    engine: Engine
    ingest: IngestLog
    processed: EventLog
    chain: StageChain

    def read_all(self, group: str) -> list[tuple[int, int, bytes]]:
        return [
            (partition, offset, payload)
            for partition in self.processed.partitions
            for offset, payload in self.processed.poll(group, partition, 100_000)
        ]

    def stored_rows(self) -> list[tuple[bytes, int | None]]:
        r = schema.log_records.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(r.payload, r.ingest_offset).order_by(r.appended_at, r.offset)
            ).all()
        return [(bytes(payload), offset) for payload, offset in rows]

    def ingest_offsets(self) -> list[int]:
        return [
            offset
            for partition in self.ingest.partitions
            for offset, _ in self.ingest.read(partition, 0, 100_000)
        ]


@pytest.fixture
def setup(engine: Engine, tmp_path: Path) -> Iterator[Setup]:
    clock = Clock(1_709_632_800 + 3600)
    ingest: IngestLog
    if is_sqlite(engine):  # small segments, so retention has sealed ones to drop
        ingest = SegmentLog(tmp_path / "log", segment_bytes=64 * 1024, clock=clock)
    else:
        ingest = open_ingest_log(engine, tmp_path, durability="normal", clock=clock)
    processed, chain = dedup_chain(engine, ingest, clock, *GROUPS)
    yield Setup(engine, ingest, processed, chain)
    chain.stop()
    ingest.close()


def run(setup: Setup, payloads: list[bytes]) -> None:
    setup.ingest.append([("ws_1", p) for p in payloads])
    assert setup.chain.run_once() == len(payloads)


def test_an_unchanged_batch_is_named_and_read_back_byte_for_byte(setup: Setup) -> None:
    sent = [batch("a"), batch("b")]
    run(setup, sent)

    rows = setup.stored_rows()
    assert [payload for payload, _ in rows] == [b"", b""]  # no copy in the state database
    assert all(offset is not None for _, offset in rows)
    for group in GROUPS:
        assert [payload for _, _, payload in setup.read_all(group)] == sent


def test_a_record_a_stage_changed_is_stored_whole(setup: Setup) -> None:
    run(setup, [batch("a")])
    run(setup, [batch("a", n=3) + b""])  # the same messageIds again: three duplicates

    (_, named), (copy, offset) = setup.stored_rows()
    assert named is not None
    assert offset is None and copy
    record = decode_record(copy)
    assert (record.events, record.duplicates) == ([], 3)
    [_, (_, _, read)] = setup.read_all("first")
    assert read == copy


def test_the_ingest_log_keeps_what_a_group_has_not_read(setup: Setup) -> None:
    for n in range(6):  # ~50 KB each, one append each: several segments on SQLite
        setup.ingest.append([("ws_1", batch(f"r{n}"))])
    assert setup.chain.run_once() == 6
    kept = setup.ingest_offsets()
    assert len(kept) == 6

    setup.chain.trim()  # the chain is past all six, but no group has read them
    assert setup.ingest_offsets() == kept

    for group in GROUPS:
        read = setup.read_all(group)
        assert len(read) == 6
        if group == "first":  # one group done: the other still needs every record
            setup.processed.commit_many(group, {p: o for p, o, _ in read})
            setup.processed.truncate()
            setup.chain.trim()
            assert setup.ingest_offsets() == kept
    setup.processed.commit_many("second", {p: o for p, o, _ in setup.read_all("second")})
    assert setup.processed.truncate() == 6
    setup.chain.trim()
    left = setup.ingest_offsets()
    assert len(left) < 6  # SQLite keeps the newest segment; PostgreSQL keeps nothing
    assert left == kept[len(kept) - len(left) :]

    run(setup, [batch("later")])  # and the log goes on after the drop
    assert [
        msgspec.json.decode(p)["events"][0]["messageId"] for _, _, p in setup.read_all("second")
    ] == ["later-0"]


def test_a_named_record_the_ingest_log_lost_is_skipped_loudly(
    setup: Setup, caplog: pytest.LogCaptureFixture
) -> None:
    run(setup, [batch("a")])
    partition = setup.ingest.partitions[0]
    setup.processed.append([IngestRef(partition, 10**15)])  # never written

    with caplog.at_level(logging.ERROR, logger="headwater.store.log"):
        read = setup.read_all("first")
    assert [payload == b"" for _, _, payload in read] == [False, True]
    assert "gone" in caplog.text
    with pytest.raises(RecordError):  # what each consumer skips, with its own error line
        decode_record(read[1][2])


def test_a_stream_without_an_ingest_log_takes_payloads_only(engine: Engine) -> None:
    with pytest.raises(ValueError, match="no ingest log"):
        EventLog(engine).append([IngestRef(0, 1)])


class CountedReads:
    """The real ingest log, counting the reads made of it."""

    def __init__(self, log: IngestLog) -> None:
        self.log = log
        self.reads = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.log, name)

    def read(self, partition: int, after: int, limit: int) -> list[tuple[int, bytes]]:
        self.reads += 1
        return self.log.read(partition, after, limit)


def test_groups_of_the_chains_process_get_its_records_without_reading_them_back(
    setup: Setup,
) -> None:
    setup.read_all("first")  # the readers are caught up (nothing yet)
    counted = CountedReads(setup.ingest)
    setup.processed.ingest_log = counted  # type: ignore[assignment]
    setup.chain.ingest_log = counted  # type: ignore[assignment]
    sent = [batch("a"), batch("b")]
    run(setup, sent)
    reads = counted.reads  # the chain's own
    assert [p for _, _, p in setup.read_all("first")] == sent
    assert [p for _, _, p in setup.read_all("second")] == sent
    assert counted.reads == reads

    elsewhere = EventLog(setup.engine, ingest_log=counted)  # type: ignore[arg-type]
    assert [
        p for partition in elsewhere.partitions for _, p in elsewhere.poll("first", partition, 10)
    ] == sent
    assert counted.reads > reads  # another process (a fresh EventLog) reads them back
