"""A regulation's deletion in the state database's event stores: every table that keeps
events for display or for later, each one its own eraser.

| target id | table | what it keeps |
| --- | --- | --- |
| ``debugger`` | ``debugger_entries`` | the Source Debugger's newest 500 events a source |
| ``delivery-samples`` | ``counter_samples`` | Event Delivery / Delivery Overview samples |
| ``delivery-queue`` | ``delivery_jobs`` | events waiting for delivery or a retry |
| ``blocked-events`` | ``blocked_events`` | events Protocols blocked (30 days) |
| ``violation-samples`` | ``violation_samples`` | events that violated a tracking plan |

A row is the subject's when its JSON holds a message ``Subjects.matches`` (at any depth: a
sample wraps the event, a delivery sample the request sent; text that is itself JSON, such as
a request body kept as a string, is read too), or a text value equal to one of the subject's
distinctive identifiers: its external ids' values (an email, a phone) and profile ids. A bare
``"12345"`` equal to a user id is not enough: another person's ``order_id`` may be that, and
their queued event must not go. SQL keeps it cheap: only rows whose JSON text contains one
of the identifiers (as JSON writes it) are read, a hundred identifiers per query, and deleted
by key in the same transaction. A deletion takes every such row, whenever it was received.

Other tables that name the subject have erasers of their own: profiles, Engage's state and
outboxes, Profiles Insights and CSV error reports (``unify/erasure.py``, in identity
resolution's pass), the log and dedup state. ``counters`` hold no one's data.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, Final

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.sql.elements import ColumnElement

from headwater.privacy.erasure import Erasure, Progress, Subjects, Target
from headwater.store import schema
from headwater.store.database import write_transaction

IDS_PER_QUERY: Final = 100  # identifiers in one query's LIKE patterns
_decode: Final = msgspec.json.Decoder()


@dataclass(frozen=True)
class PayloadTable:
    """One table of events (keyed by ``id``): its JSON column, and which rows a scope covers."""

    name: str  # the Target id
    table: sa.Table
    payload: str
    # The rows of the erasure's workspace (and sources, when it names them); None: by the
    # table's ``source_id``.
    scope: Callable[[Erasure], ColumnElement[bool]] | None = None


class PayloadEraser:
    """Deletes a subject's rows from one ``PayloadTable``."""

    def __init__(self, engine: Engine, store: PayloadTable) -> None:
        self._engine = engine
        self._store = store

    @property
    def target(self) -> Target:
        return Target("internal", self._store.name)

    def erase(self, erasure: Erasure) -> Progress | None:
        subjects = erasure.subjects
        store = self._store
        values = identifiers(subjects)
        if not values:
            return None
        named = distinctive(subjects)
        t = store.table
        text = _as_text(t.c[store.payload], self._engine.dialect.name)
        ordered = sorted(values)
        for start in range(0, len(ordered), IDS_PER_QUERY):
            part = ordered[start : start + IDS_PER_QUERY]
            wanted = [text.like(pattern, escape="\\") for v in part for pattern in _patterns(v)]
            with write_transaction(self._engine) as conn:
                found = conn.execute(
                    sa.select(t.c.id, t.c[store.payload])
                    .where(_scope(store, erasure), sa.or_(*wanted))
                    .order_by(t.c.id)
                ).all()
                doomed = [
                    row_id
                    for row_id, payload in found
                    if mentions(_loaded(payload), subjects, named)
                ]
                for at in range(0, len(doomed), 500):
                    conn.execute(sa.delete(t).where(t.c.id.in_(doomed[at : at + 500])))
        return None


def identifiers(subjects: Subjects) -> frozenset[str]:
    """Every value that names the subject on its own."""
    return frozenset(
        {
            *subjects.user_ids,
            *subjects.anonymous_ids,
            *subjects.profile_ids,
            *subjects.object_ids,
            *(value for _, value in subjects.external_ids),
        }
    )


def distinctive(subjects: Subjects) -> frozenset[str]:
    """Identifiers no one else's data holds by chance: external ids' values, profile ids."""
    return frozenset({*subjects.profile_ids, *(value for _, value in subjects.external_ids)})


def mentions(value: Any, subjects: Subjects, values: frozenset[str]) -> bool:
    """Whether a decoded payload holds a message of the subject or one of ``values``."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            if subjects.matches(item):
                return True
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if item in values:
                return True
            if item[:1] in ("{", "[") and len(item) > 1:
                with suppress(msgspec.DecodeError):
                    stack.append(_decode.decode(item))
    return False


def _loaded(value: Any) -> Any:
    """A payload as Python: JSON columns come decoded, a queued message as its bytes."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return _decode.decode(bytes(value))
        except msgspec.DecodeError:
            return bytes(value).decode("utf-8", "replace")
    return value


def _patterns(value: str) -> set[str]:
    """``LIKE`` patterns finding ``value`` in JSON text, however it was escaped."""
    forms = {json.dumps(value, ensure_ascii=flag)[1:-1] for flag in (False, True)}
    return {
        "%" + form.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        for form in forms
    }


def _as_text(column: sa.Column[Any], dialect: str) -> ColumnElement[str]:
    if isinstance(column.type, sa.LargeBinary) and dialect == "postgresql":
        return sa.func.convert_from(column, "UTF8")
    return sa.cast(column, sa.Text)


# --- the tables --------------------------------------------------------------------------------


def _sources_of(erasure: Erasure) -> sa.Select[tuple[str]]:
    s = schema.sources
    query = sa.select(s.c.id).where(s.c.workspace_id == erasure.workspace_id)
    if erasure.source_ids is not None:
        query = query.where(s.c.id.in_(sorted(erasure.source_ids)))
    return query


def _scope(store: PayloadTable, erasure: Erasure) -> ColumnElement[bool]:
    if store.scope is not None:
        return store.scope(erasure)
    return store.table.c.source_id.in_(_sources_of(erasure))


def _by_destination(erasure: Erasure) -> ColumnElement[bool]:
    d = schema.destinations
    return schema.delivery_jobs.c.destination_id.in_(
        sa.select(d.c.id).where(d.c.source_id.in_(_sources_of(erasure)))
    )


TABLES: Final = (
    PayloadTable("debugger", schema.debugger_entries, "entry"),
    PayloadTable("delivery-samples", schema.counter_samples, "sample"),
    PayloadTable("delivery-queue", schema.delivery_jobs, "message", scope=_by_destination),
    PayloadTable("blocked-events", schema.blocked_events, "message"),
    PayloadTable("violation-samples", schema.violation_samples, "sample"),
)


def payload_erasers(engine: Engine) -> Iterator[PayloadEraser]:
    """An eraser per event store of the state database."""
    for store in TABLES:
        yield PayloadEraser(engine, store)
