"""The Source Schema behind a real stage chain: a stage standing in for the Protocols stage
blocks ``Foo`` and reports it with ``SchemaObserver.blocked``, writing the counts in the chain's
own transaction; the schema consumer reads the processed stream."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest
from sqlalchemy.engine import Connection, Engine

from headwater.pipeline.chain import StageChain
from headwater.pipeline.consumer import Consumer
from headwater.protocols.source_schema import GROUP, TRACK, SchemaObserver, SchemaStore
from headwater.store.ingest_log import open_ingest_log
from headwater.store.log import EventLog
from headwater.store.positions import StagePositions
from headwater.store.record import LogRecord
from headwater.timestamps import format_timestamp
from tests.support.clock import Clock
from tests.support.records import log_record


class BlockFoo:
    """What the Protocols stage does with a blocked event, as far as the schema sees it."""

    name = "block-foo"

    def __init__(self, schema: SchemaObserver) -> None:
        self.schema = schema

    def acquire(self, partition: int) -> None: ...

    def release(self, partition: int) -> None: ...

    def process(self, partition: int, records: list[LogRecord]) -> None:
        for record in records:
            kept = []
            for raw in record.events:
                event: dict[str, Any] = msgspec.json.decode(raw)
                if event.get("event") == "Foo":
                    self.schema.blocked(record.source_id, event)
                else:
                    kept.append(raw)
            record.events = kept

    def commit_in(self, conn: Connection) -> None:
        self.schema.write_blocked(conn)

    def committed(self) -> None: ...

    def abandoned(self) -> None:
        self.schema.forget_blocked()


class FailOnce:
    """A later stage whose first pass fails: before the commit, then inside it."""

    name = "fail-once"

    def __init__(self, where: str) -> None:
        self.where = where

    def acquire(self, partition: int) -> None: ...

    def release(self, partition: int) -> None: ...

    def _fail(self, where: str) -> None:
        if self.where == where:
            self.where = ""
            raise RuntimeError(f"the pass fails in {where}")

    def process(self, partition: int, records: list[LogRecord]) -> None:
        self._fail("process")

    def commit_in(self, conn: Connection) -> None:
        self._fail("commit")

    def committed(self) -> None: ...

    def abandoned(self) -> None: ...


@pytest.mark.parametrize("where", ["process", "commit"])
def test_blocked_and_allowed_counts_through_the_chain(
    engine: Engine, tmp_path: Path, where: str
) -> None:
    clock = Clock(1_709_632_810.0)
    ingest = open_ingest_log(engine, tmp_path / "ingest", durability="normal", clock=clock)
    processed = EventLog(engine, clock=clock, ingest_log=ingest)
    processed.register(GROUP)
    observer = SchemaObserver(engine, clock=clock)
    chain = StageChain(
        ingest,
        processed,
        StagePositions(engine, clock=clock),
        [BlockFoo(observer), FailOnce(where)],
        state=engine,
        owner="a",
        clock=clock,
        monotonic=clock,
        batch=100_000,
    )
    received_at = format_timestamp(datetime.fromtimestamp(clock(), UTC))
    events = [
        {"type": "track", "event": name, "userId": "u", "messageId": f"m{n}", "properties": {}}
        for n, name in enumerate(["Foo", "Bar", "Foo"])
    ]
    ingest.append([("ws_1", log_record("src_a", received_at, events))])
    with pytest.raises(RuntimeError):
        chain.run_once()  # rolled back: its blocked counts must not stay behind
    while chain.run_once():
        pass
    consumer = Consumer(processed, GROUP, observer, owner="test")
    while consumer.run_once():
        pass
    ingest.close()
    listed = {
        i.event: (i.allowed, i.blocked)
        for i in SchemaStore(engine, clock=clock).items("src_a", TRACK, "24h", properties=False)
    }
    assert listed == {"Bar": (1, 0), "Foo": (0, 2)}
