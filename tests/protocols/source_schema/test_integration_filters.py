"""Schema integration filters in the router (A-SC-7): a real router, delivery engine and a
loopback receiver standing in for the destination."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from headwater import reasons
from headwater.delivery.replay import replay
from headwater.destinations.routing import schema_integration_filter
from headwater.pipeline.consumer import Consumer
from headwater.pipeline.router import GROUP, Router
from headwater.protocols.schema_controls import IntegrationFilterCache, save_controls
from headwater.store.archive import Archive, ArchiveWriter
from tests.delivery.conftest import Pipeline, format_timestamp_at, track
from tests.support.receiver import Receiver
from tests.support.records import log_record


def send(pipeline: Pipeline, *events: dict[str, Any]) -> None:
    """Route events with the schema integration filters on, as the server wires the router."""
    received = format_timestamp_at(pipeline.clock.now)
    stored = [{**e, "receivedAt": received, "timestamp": received} for e in events]
    pipeline.log.append([log_record(pipeline.source_id, received, stored, workspace_id="ws")])
    schema_filter = schema_integration_filter(IntegrationFilterCache(pipeline.engine).turned_off)
    router = Router(
        pipeline.log,
        pipeline.cache(),
        pipeline.delivery.queue,
        owner="r",
        schema_filter=schema_filter,
    )
    consumer = Consumer(pipeline.log, GROUP, router, owner="r")
    while consumer.run_once():
        pass


def test_a_schema_filter_turns_a_destination_off_for_one_event(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    hook = pipeline.add("hook", settings={"url": receiver.url + "/in"})
    save_controls(
        pipeline.workspace,
        pipeline.source_id,
        {
            "integrationFilters": {
                "Order Completed": {"Webhooks": False},
                "Page Viewed": {"Webhooks": False},
            }
        },
    )
    off = track()
    other = track(event="Signed Up")
    page = {**track(type="page", name="Home"), "event": None}
    named = track(integrations={"Webhooks": {"some": "option"}})  # A-SC-7: the event decides
    named_off = track(integrations={"Webhook": False})
    all_only = track(integrations={"All": True})  # All does not name the destination
    send(pipeline, off, other, page, named, named_off, all_only)
    pipeline.deliver()
    got = sorted(r.json()["messageId"] for r in receiver.requests)
    assert got == sorted([other["messageId"], named["messageId"]])
    totals = pipeline.totals(hook)
    assert totals[(reasons.FILTERED_AT_DESTINATION, reasons.FILTERED_BY_INTEGRATIONS_OBJECT)] == 4


def test_turning_the_filter_back_on_lets_the_event_through(
    pipeline: Pipeline, receiver: Receiver
) -> None:
    pipeline.add("hook", settings={"url": receiver.url + "/in"})
    save_controls(
        pipeline.workspace,
        pipeline.source_id,
        {"integrationFilters": {"Order Completed": {"Webhooks": False}}},
    )
    send(pipeline, track())
    save_controls(
        pipeline.workspace,
        pipeline.source_id,
        {"integrationFilters": {"Order Completed": {"Webhooks": True}}},
    )
    later = track()
    send(pipeline, later)
    pipeline.deliver()
    assert [r.json()["messageId"] for r in receiver.requests] == [later["messageId"]]


def test_replay_applies_the_schema_filters_in_force(
    pipeline: Pipeline, receiver: Receiver, tmp_path: Path
) -> None:
    """A replay routes archived events again, with the filters as they are now."""
    pipeline.add("hook", enabled=False, settings={"url": receiver.url + "/in"})
    pipeline.log.register("archive")
    off, other = track(), track(event="Signed Up")
    pipeline.send(off, other)
    archiver = Consumer(pipeline.log, "archive", ArchiveWriter(tmp_path), owner="archive")
    while archiver.run_once():
        pass
    save_controls(
        pipeline.workspace,
        pipeline.source_id,
        {"integrationFilters": {"Order Completed": {"Webhooks": False}}},
    )
    result = replay(
        Archive(tmp_path),
        pipeline.delivery.queue,
        pipeline.store.require("hook"),
        datetime.fromtimestamp(pipeline.clock.now - 3600, UTC),
        datetime.fromtimestamp(pipeline.clock.now + 3600, UTC),
        schema_filter=schema_integration_filter(IntegrationFilterCache(pipeline.engine).turned_off),
    )
    assert (result.read, result.queued) == (2, 1)
    assert result.filtered == {reasons.FILTERED_BY_INTEGRATIONS_OBJECT: 1}
    pipeline.deliver()
    assert [r.json()["messageId"] for r in receiver.requests] == [other["messageId"]]
