"""The audit trail (§21): every change to the workspace, who made it and when, for 90 days.

Whatever changes the workspace (a REST call, ``headwater apply``, a CLI command) writes its
changes here as ``AuditEvent``s. Before/after values come from ``headwater export``'s view of
the resource, so secrets are already ``[redacted]`` when they reach this table. Reading is
newest first with a keyset cursor, so a page stays right while new events arrive.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine, Row

from headwater.errors import InvalidError
from headwater.store import schema
from headwater.store.database import write_transaction

KEEP_SECONDS: Final = 90 * 86400  # Segment shows the last 90 days


@dataclass(frozen=True)
class Actor:
    """Who made a change: a user, an API token, the admin token, or a command."""

    kind: str  # admin | token | user | cli
    id: str
    email: str | None = None


ADMIN: Final = Actor("admin", "admin")


@dataclass(frozen=True)
class AuditEvent:
    type: str  # Segment's words: "Source Created", "Destination Modified", …
    resource_type: str  # source | destination | warehouse | tracking_plan | …
    resource_id: str | None
    resource_name: str | None
    before: Any = None
    after: Any = None


@dataclass(frozen=True)
class Recorded:
    id: int
    at: float
    actor: Actor
    event: AuditEvent

    def shown(self) -> dict[str, Any]:
        """The Public API's shape, with the before/after Headwater adds."""
        out: dict[str, Any] = {
            "id": str(self.id),
            "timestamp": _iso(self.at),
            "type": self.event.type,
            "actor": self.actor.id,
            "actorType": self.actor.kind,
            "resourceId": self.event.resource_id or "",
            "resourceType": self.event.resource_type,
            "resourceName": self.event.resource_name or "",
        }
        if self.actor.email:
            out["actorEmail"] = self.actor.email
        if self.event.before is not None:
            out["before"] = self.event.before
        if self.event.after is not None:
            out["after"] = self.event.after
        return out


@dataclass(frozen=True)
class Page:
    items: list[Recorded]
    next_cursor: str | None


@dataclass(frozen=True)
class Query:
    start: float | None = None
    end: float | None = None
    resource_id: str | None = None
    resource_type: str | None = None
    actor: str | None = None
    type: str | None = None


class AuditTrail:
    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.clock = clock

    def record(self, actor: Actor, events: Iterable[AuditEvent]) -> int:
        rows = [
            {
                "at": self.clock(),
                "type": e.type[:200],
                "actor": actor.id[:200],
                "actor_kind": actor.kind,
                "actor_email": actor.email,
                "resource_type": e.resource_type[:60],
                "resource_id": None if e.resource_id is None else e.resource_id[:200],
                "resource_name": None if e.resource_name is None else e.resource_name[:400],
                "before": e.before,
                "after": e.after,
            }
            for e in events
        ]
        if rows:
            with write_transaction(self.engine) as conn:
                conn.execute(schema.audit_events.insert(), rows)
        return len(rows)

    def page(self, query: Query, *, count: int, cursor: str | None = None) -> Page:
        """Newest first, never older than 90 days whatever ``start`` asks."""
        t = schema.audit_events.c
        oldest = self.clock() - KEEP_SECONDS
        where = [t.at >= max(oldest, query.start if query.start is not None else oldest)]
        if query.end is not None:
            where.append(t.at < query.end)
        for column, value in (
            (t.resource_id, query.resource_id),
            (t.resource_type, query.resource_type),
            (t.actor, query.actor),
            (t.type, query.type),
        ):
            if value is not None:
                where.append(column == value)
        before = _decode_cursor(cursor)
        if before is not None:
            where.append(t.id < before)
        select = sa.select(schema.audit_events).where(*where).order_by(t.id.desc())
        with self.engine.connect() as conn:
            rows = conn.execute(select.limit(count + 1)).all()
        items = [_recorded(r) for r in rows[:count]]
        more = len(rows) > count
        return Page(items, _encode_cursor(items[-1].id) if more and items else None)

    def after(self, last_id: int, limit: int) -> list[Recorded]:
        """Events after ``last_id``, oldest first: what forwarding sends next."""
        t = schema.audit_events.c
        select = sa.select(schema.audit_events).where(t.id > last_id).order_by(t.id).limit(limit)
        with self.engine.connect() as conn:
            return [_recorded(r) for r in conn.execute(select)]

    def prune(self) -> int:
        t = schema.audit_events.c
        with write_transaction(self.engine) as conn:
            result = conn.execute(
                schema.audit_events.delete().where(t.at < self.clock() - KEEP_SECONDS)
            )
        return result.rowcount or 0


def _recorded(row: Row[Any]) -> Recorded:
    m = row._mapping
    return Recorded(
        id=int(m["id"]),
        at=float(m["at"]),
        actor=Actor(m["actor_kind"], m["actor"], m["actor_email"]),
        event=AuditEvent(
            m["type"],
            m["resource_type"],
            m["resource_id"],
            m["resource_name"],
            m["before"],
            m["after"],
        ),
    )


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch % 1 * 1000):03d}Z"


def _encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"a:{last_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    kind, _, number = text.partition(":")
    if kind != "a" or not number.isdigit() or len(number) > 18:
        raise InvalidError("not a cursor this API gave", "pagination.cursor")
    return int(number)
