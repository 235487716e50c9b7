"""The event log's record payload, version 1 (see docs/event-log.md).

The Tracking API writes one record per request to the ingest log; the stage chain may coalesce
consecutive small records of a source arrived in the same minute into one processed record. Stages
decode into this typed shape so that events stay undecoded (``msgspec.Raw``) until a stage
needs their fields: the archive writes them out byte for byte, and the observer decodes only the
few it shows in the debugger.
"""

from __future__ import annotations

from typing import Any

import msgspec

from headwater.errors import RecordError

VERSION = 1


class Dropped(msgspec.Struct):
    """A message answered 200 but discarded, with Segment's discard code."""

    reason: str
    message: Any = None
    detail: str | None = None


class LogRecord(msgspec.Struct):
    """One or more requests' events. ``dropped`` and ``flags`` are one request's: a record that
    has any was never coalesced. ``duplicates`` is the sum over its requests."""

    v: int
    workspace_id: str
    source_id: str
    # The (first) request's arrival. Every event carries its own request's arrival as
    # receivedAt, in the same UTC minute as this.
    received_at: str
    events: list[msgspec.Raw] = []
    dropped: list[Dropped] = []
    duplicates: int = 0
    flags: list[str] = []


_decoder = msgspec.json.Decoder(LogRecord)
_encode = msgspec.json.Encoder().encode


def encode_record(
    workspace_id: str,
    source_id: str,
    received_at: str,
    events: list[Any],
    dropped: list[Any] = [],  # noqa: B006 - never mutated
    flags: list[str] = [],  # noqa: B006 - never mutated
) -> bytes:
    """One request's record as appenders write it to the ingest log (no duplicates yet)."""
    record: dict[str, Any] = {
        "v": VERSION,
        "workspace_id": workspace_id,
        "source_id": source_id,
        "received_at": received_at,
        "events": events,
        "dropped": dropped,
        "duplicates": 0,
    }
    if flags:
        record["flags"] = flags
    return _encode(record)


def decode_record(payload: bytes) -> LogRecord:
    try:
        record = _decoder.decode(payload)
    except msgspec.DecodeError as exc:  # also covers ValidationError
        raise RecordError(str(exc)) from exc
    if record.v != VERSION:
        raise RecordError(f"unknown record version {record.v}")
    return record
