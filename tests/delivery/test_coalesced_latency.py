"""A processed record that coalesces several requests: each delivery job keeps its own
request's arrival, so delivery latency is measured from when that event came in."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from headwater.pipeline.chain import coalesce
from headwater.pipeline.consumer import Consumer
from headwater.pipeline.router import GROUP
from headwater.store import schema
from headwater.store.record import decode_record
from headwater.timestamps import format_timestamp
from tests.delivery.conftest import Pipeline, track
from tests.support.receiver import Receiver
from tests.support.records import log_record


def test_each_job_of_a_coalesced_record_keeps_its_own_arrival(
    pipeline: Pipeline, hook: Receiver
) -> None:
    pipeline.add("hook", settings={"url": hook.url + "/in"})
    arrivals = [
        datetime(2024, 3, 5, 10, 0, 5, tzinfo=UTC),
        datetime(2024, 3, 5, 10, 0, 31, 250_000, tzinfo=UTC),
        datetime(2024, 3, 5, 10, 0, 59, 999_000, tzinfo=UTC),
    ]
    payloads = []
    for arrival in arrivals:
        received_at = format_timestamp(arrival)
        event = track(receivedAt=received_at, timestamp=received_at)
        payloads.append(log_record(pipeline.source_id, received_at, [event], workspace_id="ws"))
    records = [decode_record(p) for p in payloads]
    [merged] = coalesce(records, payloads, [len(p) for p in payloads])
    pipeline.log.append([merged])
    consumer = Consumer(pipeline.log, GROUP, pipeline.router(), owner="router-1")
    while consumer.run_once():
        pass
    t = schema.delivery_jobs.c
    with pipeline.engine.connect() as conn:
        got = list(conn.execute(sa.select(t.received_at_ms).order_by(t.id)).scalars())
    assert got == [int(a.timestamp() * 1000) for a in arrivals]
