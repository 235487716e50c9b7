"""Deleting a Unify space with Segment's grace (§11): it starts five calendar days later.

Until then the space works as before and the deletion can be cancelled ("Cancel deletion");
then the worker deletes it as ``SpaceStore.delete`` does — its graph, profiles, Engage state
and its Engage source's configuration. Nothing is sent to the Engage destinations: their copies
of audiences and traits stay theirs. ``headwater apply`` removing a space from the file is an
explicit, reviewed change and deletes at once.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from headwater.errors import ConflictError, NotFoundError
from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.store.workspace import WorkspaceStore
from headwater.unify.spaces import SpaceStore

GRACE_SECONDS = 5 * 86_400  # five calendar days (§11)

PENDING = "PENDING"
CANCELLED = "CANCELLED"
DELETED = "DELETED"


@dataclass(frozen=True)
class SpaceDeletion:
    id: str
    space_id: str
    space_name: str
    status: str
    requested_at: float
    starts_at: float
    cancelled_at: float | None
    finished_at: float | None


def _deletion(row: Any) -> SpaceDeletion:
    return SpaceDeletion(
        id=row.id,
        space_id=row.space_id,
        space_name=row.space_name,
        status=row.status,
        requested_at=row.requested_at,
        starts_at=row.starts_at,
        cancelled_at=row.cancelled_at,
        finished_at=row.finished_at,
    )


class SpaceDeletions:
    def __init__(self, store: WorkspaceStore, *, clock: Callable[[], float] = time.time) -> None:
        self._ws = store
        self._spaces = SpaceStore(store)
        self._clock = clock

    def latest(self, id_or_name: str) -> SpaceDeletion | None:
        """The space's latest deletion (its id or name, while it exists; its id after)."""
        space = self._spaces.get(id_or_name)
        space_id = space.id if space is not None else id_or_name
        t = schema.space_deletions
        with self._ws.engine.connect() as conn:
            row = conn.execute(
                sa.select(t)
                .where(t.c.space_id == space_id)
                .order_by(  # a pending deletion first; else the last one asked
                    sa.case((t.c.status == PENDING, 1), else_=0).desc(),
                    t.c.requested_at.desc(),
                    sa.func.coalesce(t.c.finished_at, t.c.cancelled_at).desc(),
                )
                .limit(1)
            ).first()
        return _deletion(row) if row is not None else None

    def request(self, id_or_name: str) -> SpaceDeletion:
        space = self._spaces.require(id_or_name)
        now = self._clock()
        t = schema.space_deletions
        with write_transaction(self._ws.engine) as conn:
            pending = conn.execute(
                sa.select(t).where(t.c.space_id == space.id, t.c.status == PENDING)
            ).first()
            if pending is None:
                conn.execute(
                    t.insert().values(
                        id=f"spd_{uuid.uuid4().hex[:20]}",
                        space_id=space.id,
                        space_name=space.name,
                        status=PENDING,
                        requested_at=now,
                        starts_at=now + GRACE_SECONDS,
                        cancelled_at=None,
                        finished_at=None,
                    )
                )
        found = self.latest(space.id)
        assert found is not None
        return found

    def cancel(self, id_or_name: str) -> SpaceDeletion:
        space = self._spaces.require(id_or_name)  # a deleted space is gone: 404
        now = self._clock()
        t = schema.space_deletions
        with write_transaction(self._ws.engine) as conn:
            row = conn.execute(
                sa.select(t).where(t.c.space_id == space.id, t.c.status == PENDING)
            ).first()
            if row is None:
                raise NotFoundError(f"no deletion of the space {space.name!r} is pending")
            if now >= row.starts_at:
                raise ConflictError("the space's deletion has started; it cannot be cancelled")
            conn.execute(
                t.update().where(t.c.id == row.id).values(status=CANCELLED, cancelled_at=now)
            )
        found = self.latest(space.id)
        assert found is not None
        return found

    def run_due(self) -> int:
        """Delete every space whose grace has passed; how many. A crash in a deletion repeats
        it (a space already gone is recorded as deleted)."""
        t = schema.space_deletions
        with self._ws.engine.connect() as conn:
            due = conn.execute(
                sa.select(t.c.id, t.c.space_id).where(
                    t.c.status == PENDING, t.c.starts_at <= self._clock()
                )
            ).all()
        for deletion_id, space_id in due:
            # A space already gone was deleted before a crash, or by `headwater apply`.
            with contextlib.suppress(NotFoundError):
                self._spaces.delete(space_id)
            with write_transaction(self._ws.engine) as conn:
                conn.execute(
                    t.update()
                    .where(t.c.id == deletion_id)
                    .values(status=DELETED, finished_at=self._clock())
                )
        return len(due)
