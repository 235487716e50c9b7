"""A workspace with a source, the event log, a router and a delivery engine on a test clock."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy.engine import Engine

from headwater.delivery.engine import DeliveryEngine
from headwater.destinations.store import DestinationCache, DestinationInfo, DestinationStore
from headwater.pipeline.consumer import Consumer
from headwater.pipeline.router import GROUP, Router
from headwater.privacy.consent import ConsentCache
from headwater.privacy.encryption import EncryptionCache
from headwater.store.counters import CounterStore, Total
from headwater.store.log import EventLog
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import format_timestamp
from tests.support.clock import Clock
from tests.support.receiver import Receiver
from tests.support.records import log_record

_ids = itertools.count(1)


def track(**extra: Any) -> dict[str, Any]:
    n = next(_ids)
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"u{n}",
        "messageId": f"m-{n}",
        "properties": {"total": n},
        **extra,
    }


@dataclass
class Pipeline:
    engine: Engine
    clock: Clock
    workspace: WorkspaceStore
    store: DestinationStore
    log: EventLog
    delivery: DeliveryEngine
    source_id: str
    sent: list[dict[str, Any]] = field(default_factory=list)

    def add(self, name: str, type_: str = "webhook", **kwargs: Any) -> DestinationInfo:
        return self.store.create(name, type_, "web", **kwargs)

    def send(self, *events: dict[str, Any]) -> None:
        """Events accepted by the Tracking API now, routed to the delivery queues."""
        received = format_timestamp_at(self.clock.now)
        stored = [{**e, "receivedAt": received, "timestamp": received} for e in events]
        self.sent += stored
        self.log.append([log_record(self.source_id, received, stored, workspace_id="ws")])
        consumer = Consumer(self.log, GROUP, self.router(), owner="router-1")
        while consumer.run_once():
            pass

    def router(self) -> Router:
        return Router(
            self.log,
            self.cache(),
            self.delivery.queue,
            owner="router-1",
            consent=ConsentCache(self.engine).current,
            encryption=EncryptionCache(self.engine).current,
        )

    def cache(self) -> DestinationCache:
        return DestinationCache(self.store, self.workspace)

    def deliver(self) -> int:
        return asyncio.run(self._deliver())

    async def _deliver(self) -> int:
        try:
            return await self.delivery.run_until_idle()
        finally:
            await self.delivery.close()

    def totals(self, destination: DestinationInfo) -> dict[tuple[str, str], int]:
        found: list[Total] = CounterStore(self.engine).totals(destination_id=destination.id)
        return {(t.step, t.reason): t.events for t in found}


def format_timestamp_at(epoch: float) -> str:
    from datetime import UTC, datetime

    return format_timestamp(datetime.fromtimestamp(epoch, UTC))


@pytest.fixture
def pipeline(engine: Engine, clock: Clock) -> Iterator[Pipeline]:
    workspace = WorkspaceStore(engine, clock=clock)
    workspace.ensure_workspace("test")
    source = workspace.create_source("web", write_key="WK_web")
    store = DestinationStore(workspace)
    log = EventLog(engine, clock=clock)
    log.register(GROUP)
    cache = DestinationCache(store, workspace)
    delivery = DeliveryEngine(engine, cache, owner="worker-1", clock=clock)
    yield Pipeline(engine, clock, workspace, store, log, delivery, source.id)


@pytest.fixture
def hook(receiver: Receiver) -> Receiver:
    return receiver
