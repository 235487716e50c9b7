"""The dedup stage between the ingest log and the processed stream, on SQLite and PostgreSQL:
the window, restarts, a pass that dies before its commit (an exception, and a real SIGKILL),
and a partition handed over between two processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy.engine import Connection, Engine

from headwater.errors import LeaseLost
from headwater.pipeline.chain import Stage, StageChain
from headwater.pipeline.dedup import DedupStage
from headwater.store.database import open_engine
from headwater.store.dedup import DedupRuns
from headwater.store.ingest_log import IngestLog, open_ingest_log
from headwater.store.log import EventLog
from headwater.store.positions import StagePositions
from headwater.store.record import LogRecord
from headwater.store.schema import dedup_runs
from headwater.timestamps import format_timestamp
from tests.support.clock import Clock
from tests.support.records import log_record
from tests.support.waiting import wait_for

HOUR = 3600.0
GROUP = "test-reader"


@dataclass
class Pipeline:
    ingest: IngestLog
    processed: EventLog
    chain: StageChain
    stage: DedupStage

    def append(self, clock: Clock, *message_ids: str) -> None:
        received_at = format_timestamp(datetime.fromtimestamp(clock(), UTC))
        events = [{"type": "track", "messageId": m, "userId": "u"} for m in message_ids]
        self.ingest.append([("ws_1", log_record("src_a", received_at, events))])

    def drain(self) -> None:
        while self.chain.run_once():
            pass


def build(
    engine: Engine,
    directory: Path,
    clock: Clock,
    owner: str = "a",
    window: int = 48,
    extra: Sequence[Stage] = (),
) -> Pipeline:
    ingest = open_ingest_log(engine, directory, durability="normal", clock=clock)
    processed = EventLog(engine, clock=clock)
    processed.register(GROUP)
    stage = DedupStage(DedupRuns(engine, clock=clock), window_hours=window, clock=clock)
    chain = StageChain(
        ingest,
        processed,
        StagePositions(engine, clock=clock),
        [stage, *extra],
        state=engine,
        owner=owner,
        clock=clock,
        monotonic=clock,
    )
    return Pipeline(ingest, processed, chain, stage)


def processed(engine: Engine) -> list[dict[str, Any]]:
    log = EventLog(engine)
    return [
        msgspec.json.decode(payload)
        for partition in log.partitions
        for _, payload in log.poll(GROUP, partition, 10_000)
    ]


def passed_ids(engine: Engine) -> list[str]:
    return [e["messageId"] for r in processed(engine) for e in r["events"]]


def duplicates(engine: Engine) -> int:
    return sum(r["duplicates"] for r in processed(engine))


@pytest.fixture
def pipeline(engine: Engine, tmp_path: Path, clock: Clock) -> Iterator[Pipeline]:
    built = build(engine, tmp_path, clock)
    yield built
    built.chain.stop()
    built.ingest.close()


def test_the_same_message_id_within_the_window_goes_through_once(
    pipeline: Pipeline, engine: Engine, clock: Clock
) -> None:
    pipeline.append(clock, "m1", "m2", "m1")  # a repeat inside one request
    pipeline.drain()
    clock.advance(47 * HOUR)
    pipeline.append(clock, "m1", "m3")
    pipeline.drain()
    assert passed_ids(engine) == ["m1", "m2", "m3"]
    assert duplicates(engine) == 2
    # The second record lost its only duplicate but still goes on, to be counted.
    assert [r["duplicates"] for r in processed(engine)] == [1, 1]


def test_outside_the_window_the_same_message_id_goes_through_again(
    pipeline: Pipeline, engine: Engine, clock: Clock
) -> None:
    pipeline.append(clock, "m1")
    pipeline.drain()
    clock.advance(50 * HOUR)
    pipeline.append(clock, "m1")
    pipeline.drain()
    assert passed_ids(engine) == ["m1", "m1"]
    assert duplicates(engine) == 0


def test_a_record_nothing_was_dropped_from_passes_byte_for_byte(
    pipeline: Pipeline, engine: Engine, clock: Clock
) -> None:
    pipeline.append(clock, "b1", "b2")
    ingest = pipeline.ingest
    [(_, original)] = [row for p in ingest.partitions for row in ingest.read(p, 0, 10)]
    pipeline.drain()
    log = EventLog(engine)
    [(_, copied)] = [row for p in log.partitions for row in log.poll(GROUP, p, 10)]
    assert copied == original


def test_dedup_survives_a_restart(
    engine: Engine, tmp_path: Path, clock: Clock, pipeline: Pipeline
) -> None:
    pipeline.append(clock, "r1")
    pipeline.drain()
    pipeline.chain.stop()
    pipeline.ingest.close()

    again = build(engine, tmp_path, clock)  # a new process: nothing in memory
    try:
        clock.advance(HOUR)
        again.append(clock, "r1", "r2")
        again.drain()
    finally:
        again.chain.stop()
        again.ingest.close()
    assert passed_ids(engine) == ["r1", "r2"]
    assert duplicates(engine) == 1


def test_a_pass_that_fails_before_its_commit_leaves_no_trace(
    pipeline: Pipeline, engine: Engine, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline.append(clock, "c1", "c2")
    real = EventLog.append_in
    calls = {"n": 0}

    def failing_once(self: EventLog, conn: Connection, payloads: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("disk gone for a moment")
        return real(self, conn, payloads)

    monkeypatch.setattr(EventLog, "append_in", failing_once)
    with pytest.raises(OSError):
        pipeline.chain.run_once()
    assert processed(engine) == []
    pipeline.drain()  # the same pass again: its keys were never taken, so nothing is dropped
    pipeline.append(clock, "c1")
    pipeline.drain()
    assert passed_ids(engine) == ["c1", "c2"]
    assert duplicates(engine) == 1


class _HangInCommit:
    """A stage that stops the pass inside the chain's transaction, after the dedup stage's
    work and before the commit, and says so in a file."""

    name = "hang"

    def __init__(self, marker: Path) -> None:
        self._marker = marker

    def acquire(self, partition: int) -> None: ...
    def release(self, partition: int) -> None: ...
    def process(self, partition: int, records: list[LogRecord]) -> None: ...
    def committed(self) -> None: ...
    def abandoned(self) -> None: ...

    def commit_in(self, conn: Connection) -> None:
        self._marker.write_text("in the transaction")
        time.sleep(600)


def hang_in_commit(url: str, directory: str, marker: str) -> None:
    """Run in a child process by the SIGKILL test."""
    engine = open_engine(url)
    clock = time.time
    chain = StageChain(
        open_ingest_log(engine, Path(directory), durability="normal", clock=clock),
        EventLog(engine, clock=clock),
        StagePositions(engine, clock=clock),
        [
            DedupStage(DedupRuns(engine, clock=clock), window_hours=48, clock=clock),
            _HangInCommit(Path(marker)),
        ],
        state=engine,
        owner="doomed",
    )
    chain.run_once()


def test_a_sigkill_between_the_stage_and_its_commit_loses_and_doubles_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    clock = Clock(time.time())
    first = build(engine, tmp_path, clock)
    first.append(clock, "k1", "k2")
    first.ingest.close()
    marker = tmp_path / "marker"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from tests.pipeline.test_dedup_stage import hang_in_commit; "
            f"hang_in_commit({str(engine.url.render_as_string(hide_password=False))!r}, "
            f"{str(tmp_path)!r}, {str(marker)!r})",
        ],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        wait_for(marker.exists, 60, "the child to be inside its commit")
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert processed(engine) == []

    clock.advance(60)  # the dead owner's lease runs out
    after = build(engine, tmp_path, clock, owner="heir")
    try:
        after.drain()
        after.append(clock, "k1", "k3")
        after.drain()
    finally:
        after.chain.stop()
        after.ingest.close()
    assert passed_ids(engine) == ["k1", "k2", "k3"]
    assert duplicates(engine) == 1


class _Interloper:
    """A stage that lets another chain take the partition over while this pass runs."""

    name = "interloper"

    def __init__(self, clock: Clock, other: Pipeline) -> None:
        self._clock = clock
        self._other = other
        self.armed = False

    def acquire(self, partition: int) -> None: ...
    def release(self, partition: int) -> None: ...
    def commit_in(self, conn: Connection) -> None: ...
    def committed(self) -> None: ...
    def abandoned(self) -> None: ...

    def process(self, partition: int, records: list[LogRecord]) -> None:
        if self.armed:
            self.armed = False
            self._clock.advance(60)  # this owner stalls past its lease…
            self._other.drain()  # …and the other takes over and does the work


def test_a_partition_handed_over_keeps_dedup_and_fences_the_old_owner(
    engine: Engine, tmp_path: Path, clock: Clock
) -> None:
    new = build(engine, tmp_path, clock, owner="new")
    interloper = _Interloper(clock, new)
    old = build(engine, tmp_path, clock, owner="old", extra=[interloper])
    try:
        old.append(clock, "h1")
        old.drain()
        assert passed_ids(engine) == ["h1"]

        old.append(clock, "h1", "h2")
        interloper.armed = True
        with pytest.raises(LeaseLost):
            old.chain.run_once()  # its commit is refused: the new owner did this pass
        assert passed_ids(engine) == ["h1", "h2"]  # the new owner knew h1 from the runs
        assert duplicates(engine) == 1

        old.drain()  # the old owner holds nothing any more
        assert passed_ids(engine) == ["h1", "h2"]
    finally:
        for p in (old, new):
            p.chain.stop()
            p.ingest.close()


def test_runs_merge_into_one_row_an_hour_and_expire(
    pipeline: Pipeline, engine: Engine, clock: Clock
) -> None:
    for n in range(5):
        pipeline.append(clock, f"x{n}")
        pipeline.drain()
    runs = DedupRuns(engine, clock=clock)
    hour = int(clock()) // 3600

    def keys() -> list[int]:
        return sorted(
            key
            for p in pipeline.ingest.partitions
            for hour_keys in runs.load(p, 0).values()
            for key in hour_keys
        )

    def rows() -> int:
        with engine.connect() as conn:
            return len(conn.execute(dedup_runs.select()).all())

    before = keys()
    assert len(before) == 5 and rows() == 5
    runs.maintain(before_hour=0, closed_before_hour=hour + 1)
    assert rows() == 1 and keys() == before
    assert runs.maintain(before_hour=hour + 1, closed_before_hour=0) == 1
    assert keys() == []
