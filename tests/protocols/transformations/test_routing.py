"""Transformations in the router and in replay: what reaches a webhook on loopback, what is
counted, and that an event no transformation touches goes out as it came in."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from headwater import reasons
from headwater.delivery.replay import replay
from headwater.pipeline.consumer import Consumer
from headwater.pipeline.router import GROUP, Router
from headwater.protocols.transformations import Transformations
from headwater.protocols.transformations.store import TransformationCache, TransformationStore
from headwater.store.archive import Archive, ArchiveWriter
from tests.delivery.conftest import Pipeline, format_timestamp_at, track
from tests.support.receiver import Receiver
from tests.support.records import log_record


def create(pipeline: Pipeline, **fields: Any) -> None:
    TransformationStore(pipeline.workspace).create(
        {"name": "t", "sourceId": pipeline.source_id, "enabled": True, **fields}
    )


def route(pipeline: Pipeline, *events: dict[str, Any]) -> None:
    """As ``Pipeline.send``, with the router reading the stored transformations."""
    cache = TransformationCache(TransformationStore(pipeline.workspace), pipeline.workspace)
    router = Router(
        pipeline.log,
        pipeline.cache(),
        pipeline.delivery.queue,
        owner="router-1",
        transformations=cache.current,
    )
    received = format_timestamp_at(pipeline.clock.now)
    stored = [{**e, "receivedAt": received, "timestamp": received} for e in events]
    pipeline.log.append([log_record(pipeline.source_id, received, stored, workspace_id="ws")])
    consumer = Consumer(pipeline.log, GROUP, router, owner="router-1")
    while consumer.run_once():
        pass


def by_path(receiver: Receiver) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for request in receiver.requests:
        found.setdefault(request.path, []).append(request.json())
    return found


def test_drops_are_counted_per_destination_and_untouched_events_pass(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    a = pipeline.add("a", settings={"url": receiver.url + "/a"})
    b = pipeline.add("b", type_="webhook", settings={"url": receiver.url + "/b"})
    create(pipeline, **{"if": "event = 'Spam'", "drop": True})
    create(
        pipeline,
        **{"if": "properties.total > 100", "drop": True, "destinationMetadataId": "webhook"},
    )
    # explicit totals: the shared track() numbers its events, so its default total grows
    spam = track(event="Spam", properties={"total": 1})
    big, plain = track(properties={"total": 500}), track(properties={"total": 1})
    route(pipeline, spam, big, plain)
    pipeline.deliver()
    got = by_path(receiver)
    assert [m["messageId"] for m in got["/a"]] == [plain["messageId"]]
    assert [m["messageId"] for m in got["/b"]] == [plain["messageId"]]
    assert got["/a"][0]["properties"] == plain["properties"]
    for destination in (a, b):
        totals = pipeline.totals(destination)
        assert totals[(reasons.FILTERED_AT_DESTINATION, reasons.DROPPED_BY_TRANSFORMATION)] == 2


def test_replay_applies_the_transformations(
    pipeline: Pipeline, receiver: Receiver, tmp_path: Path
) -> None:
    """Destination-scoped ones to every replayed event (§5.1); source-scoped ones to the
    events that arrived after they were made, as live routing did."""
    pipeline.add("hook", enabled=False, settings={"url": receiver.url + "/in"})
    pipeline.log.register("archive")
    early = track(event="order_completed", properties={"currency": "usd"})
    pipeline.send(early)
    pipeline.clock.advance(60)
    create(pipeline, **{"if": "event = 'order_completed'", "newEventName": "Order Completed"})
    create(
        pipeline,
        **{
            "if": "properties.currency = 'usd'",
            "destinationMetadataId": "webhook",
            "propertyValueTransformations": [
                {"propertyPaths": ["properties.currency"], "propertyValue": "USD"}
            ],
        },
    )
    pipeline.clock.advance(60)
    late = track(event="order_completed", properties={"currency": "usd"})
    pipeline.send(late)
    archiver = Consumer(pipeline.log, "archive", ArchiveWriter(tmp_path), owner="archive")
    while archiver.run_once():
        pass
    start = datetime.fromtimestamp(pipeline.clock.now - 3600, UTC)
    end = datetime.fromtimestamp(pipeline.clock.now + 3600, UTC)
    result = replay(
        Archive(tmp_path),
        pipeline.delivery.queue,
        pipeline.store.require("hook"),
        start,
        end,
        transformations=Transformations(TransformationStore(pipeline.workspace).list()),
    )
    assert (result.read, result.queued) == (2, 2)
    pipeline.deliver()
    sent = {r.json()["messageId"]: r.json() for r in receiver.requests}
    assert (sent[early["messageId"]]["event"], sent[early["messageId"]]["properties"]) == (
        "order_completed",
        {"currency": "USD"},
    )
    assert (sent[late["messageId"]]["event"], sent[late["messageId"]]["properties"]) == (
        "Order Completed",
        {"currency": "USD"},
    )
    # The archive itself still holds the events as accepted.
    assert [e["event"] for e in Archive(tmp_path).read(pipeline.source_id, start, end)] == [
        "order_completed",
        "order_completed",
    ]
