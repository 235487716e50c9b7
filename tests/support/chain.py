"""A stage chain as the server wires it (the dedup stage, named processed records), on a
test clock, taking every request of a test in one pass."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from headwater.pipeline.chain import COALESCE_BYTES, StageChain
from headwater.pipeline.dedup import DedupStage
from headwater.store.dedup import DedupRuns
from headwater.store.ingest_log import IngestLog
from headwater.store.log import EventLog
from headwater.store.positions import StagePositions
from tests.support.clock import Clock


def dedup_chain(
    engine: Engine,
    ingest: IngestLog,
    clock: Clock,
    *groups: str,
    coalesce_bytes: int = COALESCE_BYTES,
) -> tuple[EventLog, StageChain]:
    """The processed stream (with ``groups`` registered) and the chain that feeds it."""
    processed = EventLog(engine, clock=clock, ingest_log=ingest)
    for group in groups:
        processed.register(group)
    chain = StageChain(
        ingest,
        processed,
        StagePositions(engine, clock=clock),
        [DedupStage(DedupRuns(engine, clock=clock), window_hours=48, clock=clock)],
        state=engine,
        owner="a",
        clock=clock,
        monotonic=clock,
        batch=100_000,  # every request of a test in one pass, also over PostgreSQL's partitions
        coalesce_bytes=coalesce_bytes,
    )
    return processed, chain
