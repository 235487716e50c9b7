"""The router: from the event log to the delivery queues of each destination instance.

A consumer group of the log. Each accepted event is offered to every enabled destination
instance of its source; ``destinations/routing.py`` decides, in Segment's order, whether it
goes and in what shape, and an event that goes is queued once per matching mapping. What is
filtered is counted per destination with Segment's reason. The jobs and the log offsets are
written in one transaction, so a record is routed exactly once even when the process dies
mid-way.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec

from headwater import reasons
from headwater.delivery.queue import DeliveryQueue, NewJob
from headwater.destinations import integrations
from headwater.destinations.registry import integration_names
from headwater.destinations.routing import (
    Encrypts,
    Stage,
    consent_stages,
    default_stages,
    encryption_stages,
    route,
)
from headwater.destinations.store import DestinationCache, DestinationInfo
from headwater.errors import LeaseLost, RecordError
from headwater.privacy.consent import ConsentMap
from headwater.protocols.transformations import Transformations
from headwater.store.counters import CounterKey, CounterStore, minute_of
from headwater.store.database import write_transaction
from headwater.store.log import EventLog
from headwater.store.record import decode_processed
from headwater.timestamps import parse_timestamp

logger = logging.getLogger(__name__)

GROUP = "router"

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


_NONE = Transformations()


def _no_transformations() -> Transformations:
    return _NONE


def _no_consent() -> ConsentMap:
    return {}


def _no_encryption() -> Mapping[str, Encrypts]:
    return {}


class Router:
    """Log consumer handler: ``router(records)`` with (partition, offset, payload) tuples."""

    def __init__(
        self,
        log: EventLog,
        destinations: DestinationCache,
        queue: DeliveryQueue,
        *,
        owner: str,
        schema_filter: Stage | None = None,
        transformations: Callable[[], Transformations] | None = None,
        consent: Callable[[], ConsentMap] | None = None,
        encryption: Callable[[], Mapping[str, Encrypts]] | None = None,
    ) -> None:
        """``schema_filter`` is the sources' schema integration filters (a stage before each
        instance's own); ``transformations`` gives the current compiled Protocols
        transformations (a ``TransformationCache``'s ``current``); ``consent`` the current
        consent map (a ``ConsentCache``'s ``current``), enforced after the schema filters;
        ``encryption`` the instances' field encryption (an ``EncryptionCache``'s ``current``),
        the last stage."""
        self._log = log
        self._engine = log.engine
        self._destinations = destinations
        self._queue = queue
        self._owner = owner
        self._schema_filter: tuple[Stage, ...] = (schema_filter,) if schema_filter else ()
        self._transformations = transformations or _no_transformations
        self._consent = consent or _no_consent
        self._encryption = encryption or _no_encryption
        self._counters = CounterStore(self._engine)

    def _stages_for(
        self,
        destination: DestinationInfo,
        transformations: Transformations,
        consent: ConsentMap,
        encryption: Mapping[str, Encrypts],
    ) -> Sequence[Stage]:
        scope = transformations.for_destination(destination.source_id, destination.type)
        own = default_stages(destination, None if scope is None else scope.stage)
        return (
            *self._schema_filter,
            *consent_stages(destination, consent),
            *own,
            *encryption_stages(destination, encryption),
        )

    def __call__(self, records: list[tuple[int, int, bytes]]) -> None:
        jobs: list[NewJob] = []
        counts: dict[int, Counter[CounterKey]] = {}
        known = integration_names()
        offsets: dict[int, int] = {}
        for partition, offset, payload in records:
            offsets[partition] = max(offset, offsets.get(partition, 0))
            try:
                record = decode_processed(payload)
            except RecordError as exc:
                logger.error("router: skipping log record %d/%d: %s", partition, offset, exc)
                continue
            destinations = [d for d in self._destinations.for_source(record.source_id) if d.enabled]
            if not destinations or not record.events:
                continue
            # Engage's messages name instances (routing.integration_names)
            # and destination functions are named by instance or "<function> (<workspace>)".
            named = known | {d.name for d in destinations}
            named |= {
                n
                for d in destinations
                if d.definition.function
                for n in d.definition.integration_names
            }
            transformations = self._transformations()
            # Source-scoped transformations run once per event, before every instance's
            # checks (§24 step 6); destination-scoped ones are a stage after its filters.
            source_scope = transformations.for_source(record.source_id)
            consent = self._consent()
            encryption = self._encryption()
            stages = [
                self._stages_for(d, transformations, consent, encryption) for d in destinations
            ]
            received = parse_timestamp(record.received_at)
            record_ms = int(received.timestamp() * 1000) if received else 0
            # A record's events arrived in one minute (the counters'), each at its receivedAt
            # (a coalesced record holds several requests): latency is measured from there.
            tally = counts.setdefault(minute_of(received or 0), Counter())
            arrival: object = record.received_at  # the receivedAt that received_ms is of
            received_ms = record_ms
            for raw in record.events:
                original: dict[str, Any] = _decode(raw)
                event = original
                at = event.get("receivedAt", record.received_at)
                if at != arrival:
                    arrival = at
                    parsed = parse_timestamp(at)
                    received_ms = int(parsed.timestamp() * 1000) if parsed else record_ms
                flags = event.get("integrations")
                for key in integrations.unknown(flags if isinstance(flags, dict) else None, named):
                    tally[
                        CounterKey(record.source_id, "", reasons.UNKNOWN_INTEGRATION, key[:100])
                    ] += 1
                if source_scope is not None:
                    transformed = source_scope.apply(event)
                    if transformed is None:
                        for destination in destinations:
                            tally[
                                CounterKey(
                                    record.source_id,
                                    destination.id,
                                    reasons.FILTERED_AT_DESTINATION,
                                    reasons.DROPPED_BY_TRANSFORMATION,
                                )
                            ] += 1
                        continue
                    event = transformed
                for destination, destination_stages in zip(destinations, stages, strict=True):
                    routed = route(event, destination, destination_stages)
                    if isinstance(routed, str):
                        tally[
                            CounterKey(
                                record.source_id,
                                destination.id,
                                reasons.FILTERED_AT_DESTINATION,
                                routed,
                            )
                        ] += 1
                        continue
                    staged, mapping_ids = routed
                    body = bytes(raw) if staged is original else _encode(staged)
                    jobs.extend(
                        NewJob(
                            destination.id,
                            str(event.get("messageId", "")),
                            body,
                            received_ms,
                            mapping_id=m,
                        )
                        for m in mapping_ids
                    )
        with write_transaction(self._engine) as conn:
            self._queue.enqueue_in(conn, jobs)
            for minute, tally in counts.items():
                if tally:
                    self._counters.add_in(conn, tally, {}, minute)
            refused = [
                p
                for p, ok in self._log.commit_many_in(
                    conn, GROUP, offsets, owner=self._owner
                ).items()
                if not ok
            ]
            if refused:
                raise LeaseLost(f"partitions {refused} moved to another router")
