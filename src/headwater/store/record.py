"""The event log's record payload, version 1 (see docs/event-log.md).

The Tracking API writes one record per request to the ingest log; the stage chain may coalesce
consecutive small records of a source arrived in the same minute into one processed record. Stages
decode into this typed shape so that events stay undecoded (``msgspec.Raw``) until a stage
needs their fields: the archive writes them out byte for byte, and the observer decodes only the
few it shows in the debugger.
"""

from __future__ import annotations

import threading
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
    has any was never coalesced. ``duplicates`` and ``filtered`` are sums over its requests.
    ``forwarded_from`` names the source whose Protocols forwarded these events here (violations,
    blocked events): a later source does not block or validate them again (Segment's A-VF-6)."""

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
    # Events a stage filtered at source (Segment's "Filtered at source"), by reason.
    filtered: dict[str, int] = {}
    forwarded_from: str = ""


_decoder = msgspec.json.Decoder(LogRecord)
_encode = msgspec.json.Encoder().encode


def encode_record(
    workspace_id: str,
    source_id: str,
    received_at: str,
    events: list[Any],
    dropped: list[Any] = [],  # noqa: B006 - never mutated
    flags: list[str] = [],  # noqa: B006 - never mutated
    *,
    forwarded_from: str = "",
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
    if forwarded_from:
        record["forwarded_from"] = forwarded_from
    return _encode(record)


def decode_processed(payload: bytes) -> LogRecord:
    """``decode_record`` for the processed stream's consumer groups, decoded once per payload.

    The groups of one process get the same payload object (``store/recent.py``) within moments
    of each other, so the first decodes it and the others share the result: READ-ONLY, never
    changed. Kept by the payload's identity, holding the payload, so an id is never reused
    while it is here."""
    with _shared_lock:
        hit = _shared.get(id(payload))
    if hit is not None and hit[0] is payload:
        return hit[1]
    record = decode_record(payload)
    with _shared_lock:
        if len(_shared) >= _SHARED_RECORDS:
            del _shared[next(iter(_shared))]  # the oldest
        _shared[id(payload)] = (payload, record)
    return record


# Enough for the records the groups poll at once (a consumer pass holds up to 2,000 but they
# read the same ones within a poll interval of each other).
_SHARED_RECORDS = 256
_shared: dict[int, tuple[bytes, LogRecord]] = {}
_shared_lock = threading.Lock()


def decode_record(payload: bytes) -> LogRecord:
    try:
        record = _decoder.decode(payload)
    except msgspec.DecodeError as exc:  # also covers ValidationError
        raise RecordError(str(exc)) from exc
    if record.v != VERSION:
        raise RecordError(f"unknown record version {record.v}")
    return record
