"""Event Delivery for one destination instance: what was delivered, what was not, and why.

As Segment's Event Delivery tool: delivered, not delivered and P95 latency (``receivedAt`` →
delivered) over a time range (and per hour, for the chart), the messages waiting for a retry,
and the errors grouped by code with samples of what you sent, the request to the destination
and its response. Replays are not counted, as in Segment.
"""

from __future__ import annotations

import math
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater import reasons
from headwater.delivery.engine import DELIVERED, FAILED_DELIVERY, REPLAYED, RETRY
from headwater.delivery.queue import DeliveryQueue
from headwater.destinations.store import DestinationInfo
from headwater.store import schema
from headwater.store.counters import CounterStore, minute_of

SAMPLES_PER_ERROR = 3


def p95(values: list[int]) -> int | None:
    """The 95th percentile by nearest rank (a value that occurred, never interpolated)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


def event_delivery(
    engine: Engine,
    destination: DestinationInfo,
    *,
    minutes: int = 60,
    now: float | None = None,
) -> dict[str, Any]:
    until = minute_of(now if now is not None else time.time())
    since = until - minutes + 1
    counters = CounterStore(engine)
    totals = counters.totals(
        destination_id=destination.id, since_minute=since, until_minute=until + 1
    )  # the end is exclusive
    by_step: dict[str, int] = {}
    for total in totals:
        by_step[total.step] = by_step.get(total.step, 0) + total.events
    t = schema.delivery_latencies
    with engine.connect() as conn:
        latencies = [
            int(v)
            for v in conn.execute(
                sa.select(t.c.latency_ms).where(
                    t.c.destination_id == destination.id, t.c.minute >= since, t.c.minute <= until
                )
            ).scalars()
        ]
    errors = []
    for total in sorted(totals, key=lambda t: (-t.events, t.reason)):
        if total.step not in (FAILED_DELIVERY, RETRY):
            continue
        samples = counters.samples(
            destination_id=destination.id,
            step=total.step,
            reason=total.reason,
            since_minute=since,
            limit=SAMPLES_PER_ERROR,
        )
        errors.append(
            {
                "code": total.reason,
                "status": "not_delivered" if total.step == FAILED_DELIVERY else "retrying",
                "count": total.events,
                "samples": [_sample(s.message) for s in samples],
            }
        )
    backlog = DeliveryQueue(engine).backlog(destination.id)
    return {
        "destination": destination_brief(destination),
        "window": {"minutes": minutes},
        "delivered": by_step.get(DELIVERED, 0),
        "notDelivered": by_step.get(FAILED_DELIVERY, 0),
        "retrying": backlog["retrying"],
        "pending": backlog["pending"],
        "p95LatencyMs": p95(latencies),
        "replayed": by_step.get(REPLAYED, 0),
        "filtered": {
            t.reason: t.events for t in totals if t.step == reasons.FILTERED_AT_DESTINATION
        },
        "errors": errors,
        "hourly": _hourly(counters, destination.id, since, until),
    }


def _hourly(
    counters: CounterStore, destination_id: str, since: int, until: int
) -> list[dict[str, Any]]:
    """Delivered, retried and not delivered per hour of the range (oldest first), for Event
    Delivery's chart; ``hour`` is the hour's start in Unix seconds."""
    first, last = since // 60, until // 60
    hours = {
        hour: {"hour": hour * 3600, "delivered": 0, "retrying": 0, "notDelivered": 0}
        for hour in range(first, last + 1)
    }
    field = {DELIVERED: "delivered", RETRY: "retrying", FAILED_DELIVERY: "notDelivered"}
    for minute, step, events in counters.per_minute(destination_id, list(field), since, until + 1):
        hours[minute // 60][field[step]] += events
    return list(hours.values())


def destination_brief(destination: DestinationInfo) -> dict[str, Any]:
    """The instance as Event Delivery and the Event Tester name it in their answers."""
    return {
        "id": destination.id,
        "name": destination.name,
        "type": destination.type,
        "enabled": destination.enabled,
    }


def _sample(stored: Any) -> dict[str, Any]:
    stored = stored if isinstance(stored, dict) else {}
    return {
        "youSent": stored.get("you_sent"),
        "requestToDestination": stored.get("request"),
        "responseFromDestination": stored.get("response"),
        "detail": stored.get("detail"),
        # A function's error, console lines and outgoing requests (destination and insert
        # functions): Segment shows console logs with failed payloads (§11.1).
        **({"function": stored["function"]} if "function" in stored else {}),
    }
