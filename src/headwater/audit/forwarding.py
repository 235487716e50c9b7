"""Audit forwarding (§21): every audit event enters a chosen source as a Track call.

The events then flow through the whole pipeline (tracking plan, filters, destinations,
warehouses), as Segment's do. The shape is Segment's: event ``Audit``, ``userId`` the actor,
``properties.type`` the audit event's type and ``properties.details`` its resource, so
functions and dashboards written for Segment's forwarded events keep working. Forwarding is
at least once: the position moves after the append, and the messageId (``audit-<id>``) lets
the log's dedup absorb a repeat after a crash.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.audit.trail import AuditTrail, Recorded
from headwater.errors import NotFoundError
from headwater.store import schema
from headwater.store.database import write_transaction

BATCH: Final = 500


class Appender(Protocol):
    def append(
        self, workspace_id: str, source_id: str, messages: Sequence[Mapping[str, Any]]
    ) -> list[str]: ...


@dataclass(frozen=True)
class ForwardingSettings:
    enabled: bool
    source_id: str | None

    def shown(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "sourceId": self.source_id}


class AuditForwarding:
    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.trail = AuditTrail(engine, clock=clock)

    def settings(self, workspace_id: str) -> ForwardingSettings:
        t = schema.audit_forwarding.c
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.enabled, t.source_id).where(t.workspace_id == workspace_id)
            ).first()
        return ForwardingSettings(False, None) if row is None else ForwardingSettings(*row)

    def configure(self, workspace_id: str, settings: ForwardingSettings) -> None:
        """Turned on, forwarding starts with the events recorded from now on."""
        t = schema.audit_forwarding.c
        with write_transaction(self.engine) as conn:
            if settings.source_id is not None:
                found = conn.execute(
                    sa.select(schema.sources.c.id).where(
                        schema.sources.c.id == settings.source_id,
                        schema.sources.c.workspace_id == workspace_id,
                    )
                ).first()
                if found is None:
                    raise NotFoundError(f"no source {settings.source_id!r} in this workspace")
            newest = conn.execute(sa.select(sa.func.max(schema.audit_events.c.id))).scalar()
            current = conn.execute(
                sa.select(t.enabled).where(t.workspace_id == workspace_id)
            ).first()
            values: dict[str, Any] = {"enabled": settings.enabled, "source_id": settings.source_id}
            if settings.enabled and (current is None or not current[0]):
                values["forwarded_id"] = newest or 0
            if current is None:
                values["forwarded_id"] = newest or 0
                conn.execute(
                    schema.audit_forwarding.insert().values(workspace_id=workspace_id, **values)
                )
            else:
                conn.execute(
                    schema.audit_forwarding.update()
                    .where(t.workspace_id == workspace_id)
                    .values(**values)
                )

    def run_once(self, appender: Appender) -> int:
        """Forward what was recorded since the last call; the number of events sent."""
        t = schema.audit_forwarding.c
        with self.engine.connect() as conn:
            targets = conn.execute(
                sa.select(t.workspace_id, t.source_id, t.forwarded_id).where(
                    t.enabled.is_(True), t.source_id.is_not(None)
                )
            ).all()
        sent = 0
        for workspace_id, source_id, forwarded_id in targets:
            events = self.trail.after(int(forwarded_id), BATCH)
            if not events:
                continue
            appender.append(workspace_id, source_id, [track_call(workspace_id, e) for e in events])
            with write_transaction(self.engine) as conn:
                conn.execute(
                    schema.audit_forwarding.update()
                    .where(t.workspace_id == workspace_id, t.forwarded_id < events[-1].id)
                    .values(forwarded_id=events[-1].id)
                )
            sent += len(events)
        return sent


def track_call(workspace_id: str, recorded: Recorded) -> dict[str, Any]:
    actor = recorded.actor
    details: dict[str, Any] = {
        "resource_id": recorded.event.resource_id or "",
        "resource_type": recorded.event.resource_type,
        "subject": f"{_SUBJECTS.get(actor.kind, 'users')}/{actor.id}",
        "target": recorded.event.resource_name or "",
    }
    if recorded.event.resource_type == "source" and recorded.event.resource_id:
        details["source_id"] = recorded.event.resource_id
    return {
        "type": "track",
        "event": "Audit",
        "userId": actor.id if actor.kind in ("user", "token") else "__system__",
        "messageId": f"audit-{recorded.id}",
        "timestamp": recorded.shown()["timestamp"],
        "channel": "server",
        "properties": {
            "type": recorded.event.type,
            "workspace_id": workspace_id,
            "details": details,
        },
    }


_SUBJECTS: Final = {"user": "users", "token": "tokens", "admin": "system", "cli": "system"}
