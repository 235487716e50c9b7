"""What Protocols forwards to another source: `Violation Generated` tracks and blocked events.

Segment sends one `Violation Generated` track per violation to the source named by
`forwardingViolationsTo` (spec §3.3, A-VF-1), and a blocked event as it arrived to
`forwardingBlockedEventsTo` (§4.4). They enter the target through the internal append path,
marked as forwarded so the target's own Protocols neither blocks nor validates them (A-VF-6).

Exactly once: the stage appends a pass's forwarded messages while it commits that pass, before
the chain's transaction commits. A crash between the two makes the pass run again and append
the same messages again, so each forwarded message has a deterministic `messageId` — `sch-`
and 32 characters derived from (source, original `messageId`, violation index) for a
violation, the original `messageId` for a blocked event — and the dedup stage drops the second
copy (forwarded copies are deduplicated in a scope of their own: see `pipeline/dedup.py`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from headwater.protocols.connected import SourceProtocols
from headwater.protocols.schema_messages import Violation

VIOLATION_GENERATED = "Violation Generated"
VIOLATIONS_USER_ID = "schema-violations"  # one constant user: forwarding costs one MTU (A-VF-3)
GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # what Segment's Go writes for an absent time
# Segment's own forwarder identifies itself so (§3.3); kept verbatim for rules keyed on it.
LIBRARY = {"name": "analytics-node", "version": "2.1.0"}
OMITTED = "Omitted"  # the violationType of an unplanned name the plan's settings omitted

RECORD_MESSAGES = 500  # ~350 KB of `Violation Generated` tracks: a Tracking API batch's size

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class Appender(Protocol):
    """The internal append path (`ingest/internal.py`)."""

    def append(
        self,
        workspace_id: str,
        source_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        forwarded_from: str = "",
    ) -> list[str]: ...


def violation_message_id(source_id: str, message_id: str, index: int) -> str:
    """`sch-` and 32 base-62 characters, the same every time for the same violation."""
    digest = hashlib.blake2b(
        f"{source_id}\x00{message_id}\x00{index}".encode(), digest_size=24
    ).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(32):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "sch-" + "".join(chars)


def event_name(event: Mapping[str, Any]) -> str:
    """What Segment aggregates a violation on: Track's `event`, Page's and Screen's `name`."""
    kind = event.get("type")
    key = "event" if kind == "track" else "name" if kind in ("page", "screen") else None
    value = event.get(key) if key else None
    return value if isinstance(value, str) else ""


def violation_generated(
    source: SourceProtocols,
    event: Mapping[str, Any],
    violation: Violation,
    index: int,
    now_iso: str,
) -> dict[str, Any]:
    """One `Violation Generated` track, field for field as §3.3 shows it."""
    context = event.get("context")
    app = context.get("app") if isinstance(context, dict) else None
    app_version = app.get("version") if isinstance(app, dict) else None
    message_id = event.get("messageId")
    original_id = message_id if isinstance(message_id, str) else ""
    return {
        "type": "track",
        "event": VIOLATION_GENERATED,
        "userId": VIOLATIONS_USER_ID,
        "messageId": violation_message_id(source.source_id, original_id, index),
        "context": {"app": None, "library": dict(LIBRARY)},
        "integrations": {},
        "properties": {
            "appVersion": app_version if isinstance(app_version, str) else "",
            "eventMessageID": original_id,
            "eventName": event_name(event),
            "eventSentAt": _time(event.get("sentAt")),
            # the time the client gave (stored as originalTimestamp), not the one derived
            "eventTimestamp": _time(event.get("originalTimestamp")),
            "eventType": event.get("type") if isinstance(event.get("type"), str) else "",
            "sourceID": source.source_id,
            "sourceName": source.source_name,
            "sourceSlug": source.source_slug,
            "trackingPlanID": source.plan_id or "",
            "trackingPlanName": source.plan_name or "",
            "violationDescription": violation.description,
            "violationField": violation.field,
            "violationType": violation.type,
        },
        "timestamp": now_iso,
        "forwardedFromProject": source.source_id,
    }


def omitted_violation(container: str, name: str) -> Violation:
    """An unplanned name the settings omitted, forwarded like a violation (§3.3's note)."""
    path = f"{container}.{name}"
    return Violation(OMITTED, path, f"{path} is not in the tracking plan")


def _time(value: Any) -> str:
    return value if isinstance(value, str) and value else GO_ZERO_TIME


@dataclass
class Outbox:
    """A pass's forwarded messages, per (workspace, target source, source forwarded from)."""

    messages: dict[tuple[str, str, str], list[Mapping[str, Any]]] = field(default_factory=dict)

    def add(
        self, workspace_id: str, target: str, source_id: str, message: Mapping[str, Any]
    ) -> None:
        self.messages.setdefault((workspace_id, target, source_id), []).append(message)

    def send(self, appender: Appender) -> int:
        """Append everything, in records of up to ``RECORD_MESSAGES`` (about a Tracking API
        batch's size), and return how many messages were appended."""
        sent = 0
        for (workspace_id, target, source_id), messages in self.messages.items():
            for start in range(0, len(messages), RECORD_MESSAGES):
                chunk = messages[start : start + RECORD_MESSAGES]
                appender.append(workspace_id, target, chunk, forwarded_from=source_id)
                sent += len(chunk)
        return sent

    def clear(self) -> None:
        self.messages = {}

    def __len__(self) -> int:
        return sum(len(m) for m in self.messages.values())
