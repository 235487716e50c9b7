"""Objects a source function sets (``Segment.set``, Segment's Objects API): warehouses only.

Segment sends objects to the warehouses and nowhere else: not the debugger, not destinations
(§11.2). So they never enter the event log; they are kept here in arrival order (``seq``), and
each warehouse sync loads the rows past its own position into ``<schema>.<collection>``, one
row per object with its ``id`` and its properties as columns (``warehouse/sync.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.store import schema
from headwater.store.database import write_transaction

MAX_ID_CHARS: Final = 200
MAX_COLLECTION_CHARS: Final = 200


@dataclass(frozen=True)
class SetObject:
    seq: int
    source_id: str
    collection: str
    id: str
    properties: Mapping[str, Any]
    received_at: float


def check_set(call: Mapping[str, Any]) -> str | None:
    """Why a ``Segment.set`` call cannot be kept (Segment's rules), or None when it can."""
    collection = call.get("collection")
    if not isinstance(collection, str) or not collection:
        return "Segment.set needs a collection name"
    if collection != collection.lower():
        return f"Segment.set: the collection {collection!r} must be lowercase"
    if len(collection) > MAX_COLLECTION_CHARS:
        return f"Segment.set: the collection is over {MAX_COLLECTION_CHARS} characters"
    object_id = call.get("id")
    if isinstance(object_id, int) and not isinstance(object_id, bool):
        object_id = str(object_id)
    if not isinstance(object_id, str) or not object_id:
        return "Segment.set needs the object's id"
    if len(object_id) > MAX_ID_CHARS:
        return f"Segment.set: the id is over {MAX_ID_CHARS} characters"
    properties = call.get("properties", {})
    if not isinstance(properties, Mapping):
        return "Segment.set: properties must be an object"
    return None


class FunctionObjects:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add(self, source_id: str, calls: Sequence[Mapping[str, Any]], now: float) -> None:
        """Keep ``Segment.set`` calls (each checked by ``check_set``)."""
        if not calls:
            return
        with write_transaction(self._engine) as conn:
            conn.execute(
                schema.function_objects.insert(),
                [
                    {
                        "source_id": source_id,
                        "collection": call["collection"],
                        "object_id": str(call["id"]),
                        "properties": dict(call.get("properties") or {}),
                        "received_at": now,
                    }
                    for call in calls
                ],
            )

    def after(self, source_id: str, seq: int, limit: int = 10_000) -> list[SetObject]:
        """A source's objects past ``seq``, in order."""
        t = schema.function_objects
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(t)
                .where(t.c.source_id == source_id, t.c.seq > seq)
                .order_by(t.c.seq)
                .limit(limit)
            ).all()
        return [
            SetObject(r.seq, r.source_id, r.collection, r.object_id, r.properties, r.received_at)
            for r in rows
        ]

    def position(self, warehouse_id: str, source_id: str) -> int:
        """The last ``seq`` a warehouse loaded of a source (0: none)."""
        p = schema.function_object_positions
        with self._engine.connect() as conn:
            found = conn.execute(
                sa.select(p.c.seq).where(
                    p.c.warehouse_id == warehouse_id, p.c.source_id == source_id
                )
            ).scalar()
        return int(found or 0)

    def advance(self, warehouse_id: str, source_id: str, seq: int) -> None:
        p = schema.function_object_positions
        with write_transaction(self._engine) as conn:
            conn.execute(
                sa.delete(p).where(p.c.warehouse_id == warehouse_id, p.c.source_id == source_id)
            )
            conn.execute(p.insert().values(warehouse_id=warehouse_id, source_id=source_id, seq=seq))
