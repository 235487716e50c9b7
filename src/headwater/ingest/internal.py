"""The internal append path: events Headwater makes itself enter the ingest log here.

Violation and blocked-event forwarding (Protocols), Engage's audience and trait events,
functions' ``Segment.track`` and audit forwarding all create Segment messages inside the
server. They go through the same door as the Tracking API's: normalised by the Spec's rules,
one record per call in the ingest log, durable when ``append`` returns, and deduplicated on
``messageId`` by the dedup stage like any other event. Any process may append (the ingest log
takes appends from several processes), so a worker never needs the HTTP API to emit an event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from headwater.clock import Clock
from headwater.errors import InvalidError
from headwater.ingest.normalize import Discard, RequestInfo, normalize
from headwater.store.ingest_log import IngestLog
from headwater.store.record import encode_record
from headwater.timestamps import format_timestamp


class InternalAppend:
    def __init__(self, log: IngestLog, *, clock: Clock) -> None:
        self._log = log
        self._clock = clock

    def append(
        self,
        workspace_id: str,
        source_id: str,
        messages: Sequence[Mapping[str, Any]],
        *,
        forwarded_from: str = "",
    ) -> list[str]:
        """Append ``messages`` (each with its ``type``) for a source; return their
        ``messageId``s. A message the Spec would drop is a bug in its maker: it raises
        ``InvalidError`` and nothing of the call is appended. ``forwarded_from``: the source
        whose Protocols forwarded them (the record is marked so the target's stage skips it)."""
        received_at = datetime.fromtimestamp(self._clock(), UTC)
        request = RequestInfo(
            received_at=received_at,
            received_at_iso=format_timestamp(received_at),
            client_ip=None,
        )
        events: list[dict[str, Any]] = []
        for message in messages:
            result = normalize(dict(message), request, route_type=None)
            if isinstance(result, Discard):
                raise InvalidError(f"an internal {message.get('type')!r} message: {result.detail}")
            events.append(result)
        if events:
            payload = encode_record(
                workspace_id,
                source_id,
                request.received_at_iso,
                events,
                forwarded_from=forwarded_from,
            )
            self._log.append([(workspace_id, payload)])
        return [event["messageId"] for event in events]
