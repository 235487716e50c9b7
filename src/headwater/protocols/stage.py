"""The Protocols stage: a source's tracking plan and schema controls applied in the stage chain.

Segment's order (spec §24, step 4): standard controls and the event's rule, then the common
schema (`enforce.py`); or, for a source with no plan connected, its schema controls (§6.2:
"with a TP connected, use Protocols instead", so the controls apply only without a plan).
A blocked event leaves the record, is counted on it as filtered at source with its reason,
kept 30 days (`blocked.py`) and forwarded to `forwardingBlockedEventsTo`; a changed event
replaces the original; violations are counted (`violations.py`) and forwarded as
`Violation Generated` tracks to `forwardingViolationsTo` (`forwarding.py`).

A source without a plan or controls is absent from the lookup: a record of it costs one dict
lookup. Events forwarded into a source from another one are left alone (A-VF-6).
Everything a pass produces is written in ``commit_in``, in the chain's transaction; forwarded
messages are appended there too, with deterministic ids, so a repeated pass adds nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
from sqlalchemy.engine import Connection, Engine

from headwater import reasons
from headwater.protocols.blocked import BlockedEvents
from headwater.protocols.connected import SchemaControls, SourceProtocols
from headwater.protocols.enforce import enforce
from headwater.protocols.forwarding import (
    Appender,
    Outbox,
    event_name,
    omitted_violation,
    violation_generated,
)
from headwater.protocols.schema_messages import Violation
from headwater.protocols.violations import ViolationTallies
from headwater.store.config_snapshot import ConfigSnapshot
from headwater.store.debugger import append_entries
from headwater.store.record import LogRecord
from headwater.timestamps import format_timestamp, parse_timestamp

logger = logging.getLogger(__name__)

Lookup = Callable[[], Mapping[str, SourceProtocols]]

BLOCK_REASONS: Mapping[str, str] = {
    "unplanned_event": reasons.PROTOCOLS_UNPLANNED_EVENT,
    "violations": reasons.PROTOCOLS_VIOLATIONS,
    "common_schema": reasons.PROTOCOLS_COMMON_SCHEMA,
}

_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class BlockedCounts(Protocol):
    """The Source Schema's blocked counts (`source_schema.SchemaObserver`): blocked events never
    reach the processed stream its consumer reads, so the stage reports them."""

    def blocked(self, source_id: str, event: Mapping[str, Any]) -> None: ...

    def write_blocked(self, conn: Connection) -> None: ...

    def forget_blocked(self) -> None: ...


class ProtocolsStage:
    name = "protocols"

    def __init__(
        self,
        lookup: Lookup,
        *,
        config_version: Callable[[], int],
        engine: Engine,
        clock: Callable[[], float],
        appender: Appender | None = None,
        refresh_interval: float = 1.0,
        schema: BlockedCounts | None = None,
    ) -> None:
        self._clock = clock
        self._appender = appender
        self._schema = schema
        self._blocked_store = BlockedEvents(engine, clock=clock)
        empty: Mapping[str, SourceProtocols] = {}
        self._sources = ConfigSnapshot(
            config_version, lookup, empty, clock=clock, interval=refresh_interval
        )
        # this pass's work, written in commit_in
        self._blocked: list[tuple[str, str, Any]] = []
        self._tallies = ViolationTallies()
        self._outbox = Outbox()
        self._omitted_seen: dict[tuple[str, str], Violation] = {}

    def acquire(self, partition: int) -> None:
        """Nothing per partition: the stage's state is per pass."""

    def release(self, partition: int) -> None:
        """Nothing per partition: the stage's state is per pass."""

    def sources(self) -> Mapping[str, SourceProtocols]:
        """The lookup's map, rebuilt only when the configuration's version moved."""
        return self._sources.get()

    def process(self, partition: int, records: list[LogRecord]) -> None:
        sources = self.sources()
        if not sources:
            return
        find = sources.get
        for record in records:  # one probe a record: the cost of a source without Protocols
            source = find(record.source_id)
            if source is not None and not record.forwarded_from:
                self._apply(source, record)

    def _apply(self, source: SourceProtocols, record: LogRecord) -> None:
        plan = source.plan
        controls = source.controls
        if plan is None and not controls.any():
            return
        kept: list[msgspec.Raw] = []
        changed = False
        filtered: dict[str, int] = {}
        at_ms = _epoch_ms(record.received_at, self._clock)
        for raw in record.events:
            event = _decode(raw)
            if not isinstance(event, dict):
                kept.append(raw)
                continue
            out: Mapping[str, Any]
            if plan is None:
                out, reason = _controlled(event, controls)
            else:
                try:
                    verdict = enforce(event, plan, source.settings, source.source_id)
                except Exception:
                    # One event the engine cannot judge must not stop the chain for everyone:
                    # it goes on as it came, and the log says which.
                    logger.exception("protocols: event %r passed unchecked", event.get("messageId"))
                    kept.append(raw)
                    continue
                out, blocked, found, omitted, _ = verdict
                if omitted:
                    kind = event.get("type")
                    container = "traits" if kind in ("identify", "group") else "properties"
                    found = (*found, *(self._omitted(container, name) for name in omitted))
                if found:
                    self._violations(source, record, event, found, at_ms)
                reason = BLOCK_REASONS[blocked] if blocked else None
            if reason is not None:
                filtered[reason] = filtered.get(reason, 0) + 1
                self._blocked.append((source.source_id, reason, event))
                if self._schema is not None:
                    self._schema.blocked(source.source_id, event)
                # Forwarding is a Protocols setting: ignored without a plan (§4.1).
                target = source.settings.forwarding_blocked_events_to if plan else None
                if target:
                    self._outbox.add(record.workspace_id, target, source.source_id, event)
                changed = True
            elif out is not event:
                kept.append(msgspec.Raw(_encode(out)))
                changed = True
            else:
                kept.append(raw)
        if changed:
            record.events = kept
        if filtered:
            merged = dict(record.filtered)
            for reason, count in filtered.items():
                merged[reason] = merged.get(reason, 0) + count
            record.filtered = merged

    def _violations(
        self,
        source: SourceProtocols,
        record: LogRecord,
        event: dict[str, Any],
        found: Sequence[Violation],
        at_ms: int,
    ) -> None:
        kind = event.get("type")
        kind = kind if isinstance(kind, str) else ""
        name = event_name(event)
        source_id = source.source_id
        self._tallies.add(source_id, source.plan_id or "", kind, name, found, at_ms, event)
        target = source.settings.forwarding_violations_to
        if target:
            now_iso = format_timestamp(datetime.fromtimestamp(at_ms / 1000, UTC))
            for index, violation in enumerate(found):
                message = violation_generated(source, event, violation, index, now_iso)
                self._outbox.add(record.workspace_id, target, source_id, message)

    def _omitted(self, container: str, name: str) -> Violation:
        """The violation an omitted name forwards as; made once per pass and name."""
        known = self._omitted_seen.get((container, name))
        if known is None:
            known = self._omitted_seen[(container, name)] = omitted_violation(container, name)
        return known

    def commit_in(self, conn: Connection) -> None:
        if self._schema is not None:
            self._schema.write_blocked(conn)
        self._blocked_store.write_in(conn, self._blocked)
        append_entries(conn, _debugger_entries(self._blocked))
        self._tallies.write_in(conn)
        if len(self._outbox):
            if self._appender is None:
                logger.warning("protocols: %d forwarded messages dropped", len(self._outbox))
            else:
                # Durable before the chain commits; a repeat after a crash is deduplicated.
                self._outbox.send(self._appender)

    def committed(self) -> None:
        self.abandoned()

    def abandoned(self) -> None:
        if self._schema is not None:
            self._schema.forget_blocked()
        self._blocked = []
        self._tallies = ViolationTallies()
        self._outbox.clear()
        self._omitted_seen = {}


# Blocked events a pass shows in a source's debugger at most (the newest): the debugger is a
# sample, and a flood of blocked events must not cost a row each.
DEBUGGER_BLOCKED = 50


def _debugger_entries(blocked: list[tuple[str, str, Any]]) -> list[dict[str, Any]]:
    """Debugger rows for blocked events, marked `blocked` with the reason (§6.2)."""
    shown: dict[str, int] = {}
    out: list[dict[str, Any]] = []
    for source_id, reason, event in reversed(blocked):  # newest first, within the cap
        if shown.get(source_id, 0) >= DEBUGGER_BLOCKED:
            continue
        shown[source_id] = shown.get(source_id, 0) + 1
        received = event.get("receivedAt")
        out.append(
            {
                "source_id": source_id,
                "received_at": received[:40] if isinstance(received, str) else "",
                "status": "blocked",
                "reason": reason,
                "entry": {"message": event},
            }
        )
    out.reverse()
    return out


def _controlled(
    event: dict[str, Any], controls: SchemaControls
) -> tuple[dict[str, Any], str | None]:
    """A source's schema controls (§6.2): the event, a copy without omitted traits, or why it
    is blocked."""
    kind = event.get("type")
    if kind == "track":
        if event.get("event") in controls.blocked_track:
            return event, reasons.SCHEMA_BLOCKED_EVENT
    elif kind == "page":
        if controls.block_page:
            return event, reasons.SCHEMA_BLOCKED_EVENT
    elif kind == "screen":
        if controls.block_screen:
            return event, reasons.SCHEMA_BLOCKED_EVENT
    elif kind == "identify" or kind == "group":
        omit = (
            controls.omitted_identify_traits
            if kind == "identify"
            else controls.omitted_group_traits
        )
        traits = event.get("traits")
        if omit and isinstance(traits, dict) and not omit.isdisjoint(traits):
            out = dict(event)
            out["traits"] = {k: v for k, v in traits.items() if k not in omit}
            return out, None
    return event, None


def _epoch_ms(received_at: str, clock: Callable[[], float]) -> int:
    parsed = parse_timestamp(received_at)
    seconds = parsed.timestamp() if parsed is not None else clock()
    return int(seconds * 1000)
