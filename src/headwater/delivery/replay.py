"""Replay: deliver a time range of archived events to one destination instance again.

As Segment's Replay: the events come from the archive (what was accepted, after dedup), go
through the same per-destination checks as live traffic (method, integrations object, the
instance's stages), and reach the destination even while it is disabled. Replayed jobs are
marked, so they do not count in Event Delivery.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from headwater import reasons
from headwater.delivery.queue import DeliveryQueue, NewJob
from headwater.destinations.routing import (
    Encrypts,
    Stage,
    consent_stages,
    default_stages,
    encryption_stages,
    route,
)
from headwater.destinations.store import DestinationInfo
from headwater.errors import InvalidError
from headwater.privacy.consent import ConsentMap
from headwater.protocols.transformations import Transformations
from headwater.store.archive import Archive
from headwater.timestamps import format_timestamp, parse_timestamp

BATCH = 1000
_encode = msgspec.json.Encoder().encode


@dataclass
class ReplayResult:
    read: int = 0
    queued: int = 0  # a message still waiting in the queue is not queued twice
    filtered: dict[str, int] = field(default_factory=dict)


def replay(
    archive: Archive,
    queue: DeliveryQueue,
    destination: DestinationInfo,
    start: datetime,
    end: datetime,
    *,
    types: Sequence[str] = (),
    events: Sequence[str] = (),
    stages: Sequence[Stage] | None = None,
    transformations: Transformations | None = None,
    schema_filter: Stage | None = None,
    consent: ConsentMap | None = None,
    encryption: Mapping[str, Encrypts] | None = None,
    progress: Callable[[ReplayResult], None] | None = None,
    oldest: datetime | None = None,
) -> ReplayResult:
    """Queue the archived events of ``[start, end)``; ``types``/``events`` narrow them.

    ``stages`` defaults to the instance's own (its destination filters still apply), with its
    destination-scoped ``transformations`` after them; the source-scoped ones run first, as
    live, on the events that arrived after they were made (the archive holds events as they
    were accepted). ``schema_filter``, the sources' schema integration filters as they are now,
    goes before the stages, as in the router, then ``consent`` (the consent map as it is now:
    a replayed event is enforced as a live one would be); ``encryption`` last. ``oldest`` is
    the data retention's bound (``store/retention.py``): a window starting before it is
    refused, since what it asks for is purged or about to be (A-DS-10)."""
    if oldest is not None and _utc(start) < oldest:
        raise InvalidError(
            f"the replay window starts before the workspace's data retention: events received "
            f"before {format_timestamp(oldest)} are no longer kept; start at or after it",
            "start",
        )
    transformations = transformations or Transformations()
    source_scope = transformations.for_source(destination.source_id)
    if stages is None:
        scope = transformations.for_destination(destination.source_id, destination.type)
        stages = default_stages(destination, None if scope is None else scope.stage)
    stages = (
        *consent_stages(destination, consent or {}),
        *stages,
        *encryption_stages(destination, encryption or {}),
    )
    if schema_filter is not None:
        stages = (schema_filter, *stages)
    result = ReplayResult()
    pending: list[NewJob] = []
    for event in _selected(archive.read(destination.source_id, start, end), types, events):
        result.read += 1
        if source_scope is not None:
            # As Segment's archive would hold it: source-scoped transformations from their
            # creation on (destination-scoped ones apply to every replayed event, §5.1).
            arrived = parse_timestamp(event.get("receivedAt"))
            transformed = source_scope.apply(event, arrived.timestamp() if arrived else None)
            if transformed is None:
                dropped = reasons.DROPPED_BY_TRANSFORMATION
                result.filtered[dropped] = result.filtered.get(dropped, 0) + 1
                continue
            event = transformed
        routed = route(event, destination, stages)
        if isinstance(routed, str):
            result.filtered[routed] = result.filtered.get(routed, 0) + 1
            continue
        staged, mapping_ids = routed
        received = parse_timestamp(event.get("receivedAt"))
        body = _encode(staged)
        pending.extend(
            NewJob(
                destination.id,
                str(event.get("messageId", "")),
                body,
                int(received.timestamp() * 1000) if received else 0,
                replay=True,
                mapping_id=m,
            )
            for m in mapping_ids
        )
        if len(pending) >= BATCH:
            result.queued += queue.enqueue(pending)
            pending = []
            if progress is not None:
                progress(result)
    if pending:
        result.queued += queue.enqueue(pending)
    if progress is not None:
        progress(result)
    return result


def _selected(
    found: Iterator[dict[str, Any]], types: Sequence[str], events: Sequence[str]
) -> Iterator[dict[str, Any]]:
    for event in found:
        if types and event.get("type") not in types:
            continue
        if events and event.get("event") not in events:
            continue
        yield event


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
