"""The stage chain as the server wires it (dedup, Protocols, MTU) over a real ingest log and
processed stream, with the Protocols lookup in the test's hands."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy.engine import Engine

from headwater.ingest.internal import InternalAppend
from headwater.pipeline.chain import Stage, StageChain
from headwater.pipeline.dedup import DedupStage
from headwater.protocols.compiled import Rule
from headwater.protocols.connected import SourceProtocols
from headwater.protocols.mtu import MtuStage
from headwater.protocols.stage import ProtocolsStage
from headwater.store.dedup import DedupRuns
from headwater.store.ingest_log import IngestLog, open_ingest_log
from headwater.store.log import EventLog
from headwater.store.positions import StagePositions
from headwater.timestamps import format_timestamp
from tests.support.clock import Clock
from tests.support.records import log_record

GROUP = "test-reader"
DRAFT7 = "http://json-schema.org/draft-07/schema#"


def track_rule(
    key: str, props: dict[str, Any], required: Sequence[str] = (), version: int = 1
) -> Rule:
    schema = {
        "$schema": DRAFT7,
        "type": "object",
        "properties": {
            "properties": {"type": "object", "properties": props, "required": list(required)}
        },
    }
    return Rule("TRACK", key, schema, version)


def traits_rule(kind: str, traits: dict[str, Any]) -> Rule:
    return Rule(kind, "", {"properties": {"traits": {"type": "object", "properties": traits}}})


@dataclass
class Harness:
    engine: Engine
    clock: Clock
    ingest: IngestLog
    chain: StageChain
    stage: ProtocolsStage
    sources: dict[str, SourceProtocols] = field(default_factory=dict)
    version: int = 1
    lookups: int = 0
    sent: int = 0

    def lookup(self) -> dict[str, SourceProtocols]:
        self.lookups += 1
        return dict(self.sources)

    def connect(self, *sources: SourceProtocols) -> None:
        for source in sources:
            self.sources[source.source_id] = source
        self.version += 1

    def send(self, source_id: str, *events: dict[str, Any], workspace: str = "ws_1") -> None:
        """One request's record, as the Tracking API appends it (ids and receivedAt set)."""
        received_at = format_timestamp(datetime.fromtimestamp(self.clock(), UTC))
        stored = []
        for event in events:
            self.sent += 1
            stored.append(
                {
                    "messageId": f"m{self.sent}",
                    "userId": "u1",
                    "receivedAt": received_at,
                    "timestamp": received_at,
                    **event,
                }
            )
        self.ingest.append(
            [(workspace, log_record(source_id, received_at, stored, workspace_id=workspace))]
        )

    def drain(self) -> None:
        while self.chain.run_once():
            pass

    def records(self, source_id: str | None = None) -> list[dict[str, Any]]:
        out = [msgspec.json.decode(payload) for payload in self.payloads()]
        return [r for r in out if source_id is None or r["source_id"] == source_id]

    def payloads(self) -> list[bytes]:
        log = EventLog(self.engine)
        return [p for part in log.partitions for _, p in log.poll(GROUP, part, 100_000)]

    def events(self, source_id: str | None = None) -> list[dict[str, Any]]:
        return [e for r in self.records(source_id) for e in r["events"]]

    def filtered(self, source_id: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for record in self.records(source_id):
            for reason, count in record.get("filtered", {}).items():
                out[reason] = out.get(reason, 0) + count
        return out


def build(engine: Engine, directory: Path, clock: Clock, *, after: Sequence[Stage] = ()) -> Harness:
    ingest = open_ingest_log(engine, directory, durability="normal", clock=clock)
    processed = EventLog(engine, clock=clock)
    processed.register(GROUP)
    holder: list[Harness] = []
    stage = ProtocolsStage(
        lambda: holder[0].lookup(),
        config_version=lambda: holder[0].version,
        engine=engine,
        clock=clock,
        appender=InternalAppend(ingest, clock=clock),
        refresh_interval=0.0,
    )
    chain = StageChain(
        ingest,
        processed,
        StagePositions(engine, clock=clock),
        [
            DedupStage(DedupRuns(engine, clock=clock), window_hours=48, clock=clock),
            stage,
            MtuStage(engine),
            *after,
        ],
        state=engine,
        owner="a",
        clock=clock,
        monotonic=clock,
        batch=100_000,
    )
    harness = Harness(engine, clock, ingest, chain, stage)
    holder.append(harness)
    return harness
