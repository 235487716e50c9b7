"""Event log records as the Tracking API writes them, for feeding a stage by hand."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from headwater.store.record import VERSION


def log_record(
    source_id: str,
    received_at: str,
    events: Sequence[dict[str, Any]] = (),
    *,
    dropped: Sequence[dict[str, Any]] = (),
    duplicates: int = 0,
    flags: Sequence[str] = (),
    workspace_id: str = "ws_1",
    forwarded_from: str = "",
) -> bytes:
    """One request's record (docs/event-log.md): one shape for every test, so a new record
    version is a change here rather than in each test that writes records."""
    record: dict[str, Any] = {
        "v": VERSION,
        "workspace_id": workspace_id,
        "source_id": source_id,
        "received_at": received_at,
        "events": list(events),
        "dropped": list(dropped),
        "duplicates": duplicates,
    }
    if flags:  # as the committer writes it: no key when there are none
        record["flags"] = list(flags)
    if forwarded_from:  # as the Protocols stage's forwarding writes it
        record["forwarded_from"] = forwarded_from
    return msgspec.json.encode(record)


def stored_event(message_id: str, received_at: str, **extra: Any) -> dict[str, Any]:
    """A track message as the Tracking API stores it: its request's arrival as receivedAt."""
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": "u1",
        "messageId": message_id,
        "receivedAt": received_at,
        **extra,
    }
