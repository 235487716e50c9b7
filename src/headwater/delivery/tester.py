"""Segment's Event Tester: one event straight to one destination, and what the destination said.

The tester checks a connection, so it goes around everything that decides *whether* an event
reaches the destination: destination filters (AC-067), transformations (A-TR-8), the schema's
integration filters and the event's own ``integrations`` object — the caller named the
destination. It keeps what decides *how* the event is sent: the destination must take the
call's type, and an Actions destination sends through its enabled mappings whose triggers
match (or through the one mapping named, enabled or not, like Segment's "Test Mapping"), one
request per mapping as live traffic would. The delivery engine sends it as it sends a claim,
but nothing is queued, counted in Delivery Overview or retried.
"""

from __future__ import annotations

import dataclasses
from http import HTTPStatus
from typing import Any

from headwater import reasons
from headwater.delivery import retry
from headwater.delivery.engine import DeliveryEngine, Tried
from headwater.delivery.report import destination_brief
from headwater.destinations.store import DestinationInfo
from headwater.errors import InvalidError, NotFoundError

# What Segment's Event Tester says when no mapping of an Actions destination takes the event.
NO_SUBSCRIPTIONS = "You may not have any subscriptions that match this event"


async def send_test_event(
    delivery: DeliveryEngine,
    destination: DestinationInfo,
    message: dict[str, Any],
    mapping_id: str | None = None,
) -> dict[str, Any]:
    """Send a normalised ``message`` to ``destination``; the tester's answer: the verdict, a
    summary and each request with its response (docs/delivery.md, "Event Tester")."""
    definition = destination.definition
    if message.get("type") not in definition.methods:
        verdict = retry.Verdict(False, False, reasons.UNSUPPORTED_EVENT_TYPE)
        summary = f"{definition.name} does not take {message.get('type')} calls."
        return _answer(destination, message, verdict, summary, [])
    destination, mapping_ids = _mappings(destination, message, mapping_id)
    if not mapping_ids:
        verdict = retry.Verdict(False, False, reasons.NO_MATCHING_MAPPING)
        return _answer(destination, message, verdict, NO_SUBSCRIPTIONS, [])
    tried = await delivery.test(destination, message, mapping_ids)
    verdict = retry.worst([t.verdict for t in tried])
    names = {m.id: m.name for m in destination.mappings}
    attempts = [attempt for t in tried for attempt in _attempts(t, names)]
    return _answer(destination, message, verdict, _summary(verdict, tried), attempts)


def _mappings(
    destination: DestinationInfo, message: dict[str, Any], mapping_id: str | None
) -> tuple[DestinationInfo, list[str]]:
    """The mappings to send through ([""] without Actions), and the instance to send with: the
    named mapping enabled for this send if it is not."""
    if not destination.definition.actions:
        if mapping_id:
            raise InvalidError(
                f"mappingId: {destination.name!r} has no mappings (not an Actions destination)",
                "mappingId",
            )
        return destination, [""]
    if mapping_id is None:
        return destination, destination.compiled_mappings.matching(message)
    named = next((m for m in destination.mappings if m.id == mapping_id), None)
    if named is None:
        raise NotFoundError(f"destination {destination.name!r} has no mapping {mapping_id!r}")
    if not named.enabled:
        enabled = named.model_copy(update={"enabled": True})
        mappings = tuple(enabled if m is named else m for m in destination.mappings)
        destination = dataclasses.replace(destination, mappings=mappings)
    return destination, [mapping_id]


def _attempts(tried: Tried, names: dict[str, str]) -> list[dict[str, Any]]:
    """Event Delivery's sample shape, one per request the mapping made (or one saying why it
    made none)."""
    base: dict[str, Any] = {}
    if tried.mapping_id:
        base["mappingId"] = tried.mapping_id
        base["mappingName"] = names.get(tried.mapping_id)
    if tried.detail is not None:
        base["detail"] = tried.detail
    if not tried.exchanges:
        return [{**base, "code": tried.verdict.code}]
    return [
        {
            **base,
            "code": _code(exchange["response"]),
            "requestToDestination": exchange["request"],
            "responseFromDestination": exchange["response"],
        }
        for exchange in tried.exchanges
    ]


def _code(response: dict[str, Any]) -> str:
    return str(response["status"]) if "status" in response else str(response.get("error"))


def _summary(verdict: retry.Verdict, tried: list[Tried]) -> str:
    sent = sum(len(t.exchanges) for t in tried)
    if verdict.delivered:
        if sent == 0:
            return "Nothing to send: the destination makes no request for this event."
        return f"Delivered: the destination accepted the event ({verdict.code})."
    later = " Live events with this answer are retried; the tester does not retry."
    code = verdict.code
    if code.isdigit():
        try:
            phrase = f" {HTTPStatus(int(code)).phrase}"
        except ValueError:
            phrase = ""
        return f"Not delivered: the destination answered {code}{phrase}." + (
            later if verdict.retry else ""
        )
    if code in reasons.CONNECTION_ERRORS:
        return f"Not delivered: the destination could not be reached ({code})." + later
    detail = next((t.detail for t in tried if t.detail), None)
    return f"Not delivered: {code}" + (f": {detail}" if detail else ".")


def _answer(
    destination: DestinationInfo,
    message: dict[str, Any],
    verdict: retry.Verdict,
    summary: str,
    attempts: list[dict[str, Any]],
) -> dict[str, Any]:
    return {
        "destination": destination_brief(destination),
        "delivered": verdict.delivered,
        "code": verdict.code,
        "summary": summary,
        "youSent": message,
        "attempts": attempts,
    }
