"""Deleting all of one source's data for a span of days (§11): from the archive only.

Segment takes such a request as a support ticket with a time frame of whole days, deletes from
its archive alone and forwards nothing; so here: the archive's day directories of the source
from ``from`` to ``to`` (UTC, inclusive) go at once, and the run is recorded. Warehouses,
lakes, profiles and destinations keep what they already have (a user's data everywhere is a
regulation's job, §10).
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.errors import InvalidError
from headwater.store import schema
from headwater.store.archive import Archive
from headwater.store.database import write_transaction

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_RECORDS = 100  # the runs a source's list shows, newest first


@dataclass(frozen=True)
class SourceDataDeletion:
    id: str
    source_id: str
    from_day: date
    to_day: date
    requested_at: float
    files_removed: int


def parse_day(value: object, field: str) -> date:
    """A whole UTC day, ``YYYY-MM-DD``: a time of day is refused, since deletion goes a day
    at a time and a time would suggest a precision that is not there."""
    if not isinstance(value, str) or not _DAY.fullmatch(value):
        raise InvalidError(
            f"give a day as YYYY-MM-DD (UTC); data is deleted a whole day at a time, "
            f"got {str(value)[:40]!r}",
            field,
        )
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise InvalidError(f"{value} is not a calendar day", field) from None


class SourceDataDeletions:
    def __init__(
        self, engine: Engine, archive_dir: Path | str, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._engine = engine
        self._archive = Archive(archive_dir)
        self._clock = clock

    def delete(self, source_id: str, from_day: date, to_day: date) -> SourceDataDeletion:
        """Remove the days now and record the run (repeating a run removes nothing more)."""
        if from_day > to_day:
            raise InvalidError("from must be on or before to", "from")
        removed = self._archive.remove_days(source_id, from_day, to_day)
        run = SourceDataDeletion(
            id=f"sdd_{uuid.uuid4().hex[:20]}",
            source_id=source_id,
            from_day=from_day,
            to_day=to_day,
            requested_at=self._clock(),
            files_removed=removed,
        )
        with write_transaction(self._engine) as conn:
            conn.execute(
                schema.source_data_deletions.insert().values(
                    id=run.id,
                    source_id=source_id,
                    from_day=from_day.isoformat(),
                    to_day=to_day.isoformat(),
                    requested_at=run.requested_at,
                    files_removed=removed,
                )
            )
        return run

    def list(self, source_id: str) -> list[SourceDataDeletion]:
        t = schema.source_data_deletions
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(t)
                .where(t.c.source_id == source_id)
                .order_by(t.c.requested_at.desc(), t.c.id)
                .limit(MAX_RECORDS)
            ).all()
        return [
            SourceDataDeletion(
                id=row.id,
                source_id=row.source_id,
                from_day=date.fromisoformat(row.from_day),
                to_day=date.fromisoformat(row.to_day),
                requested_at=row.requested_at,
                files_removed=row.files_removed,
            )
            for row in rows
        ]
