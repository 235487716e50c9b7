"""Functions' usage: invocations and execution time per function and month (§11.1 "Usage &
billing").

Segment bills functions by execution time in millisecond increments, every invocation
counted, retries included (AC-103); the test runner is not. Whatever runs functions (source
function runs, delivery's destination and insert functions) tallies a claim's or a run's
invocations and adds them in one write (``add``), never one write per event.

``server.functions_monthly_execution_ms`` is the workspace's monthly allotment: the ``add``
that crosses 75 %, 90 % and 100 % of it logs a warning (Segment's notifications), once each
a month since only one write can cross a line. Nothing is refused past it: a self-hosted
server has no bill to protect.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from headwater.errors import NotFoundError
from headwater.functions.contract import Invocation
from headwater.store import schema
from headwater.store.workspace import WorkspaceStore

logger = logging.getLogger(__name__)

THRESHOLDS: Final = (75, 90, 100)  # percent of the allotment that is warned about


@dataclass
class Tally:
    """Invocations of one function not yet written."""

    invocations: int = 0
    execution_ms: int = 0
    errors: int = 0

    def count(self, invocation: Invocation) -> None:
        self.invocations += 1
        self.execution_ms += billed_ms(invocation.duration_ms)
        if not invocation.ok:
            self.errors += 1


@dataclass(frozen=True)
class MonthUsage:
    month: str  # YYYY-MM (UTC)
    invocations: int
    execution_ms: int
    errors: int

    def shown(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "invocations": self.invocations,
            "executionMs": self.execution_ms,
            "errors": self.errors,
        }


def billed_ms(duration_ms: float) -> int:
    """An invocation's time as billed: whole milliseconds, rounded up (at least one)."""
    return max(1, math.ceil(duration_ms))


def tally(function: str, invocations: Iterable[Invocation]) -> dict[str, Tally]:
    """A claim's invocations of one function (``function``: its id), each counted once (a
    batch's one invocation answers for many events)."""
    found = Tally()
    seen: set[int] = set()
    for invocation in invocations:
        if id(invocation) in seen:
            continue
        seen.add(id(invocation))
        found.count(invocation)
    return {function: found} if found.invocations else {}


def month_of(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m")


class FunctionUsage:
    def __init__(
        self,
        workspace: WorkspaceStore,
        clock: Callable[[], float] = time.time,
        *,
        monthly_execution_ms: int | None = None,
    ) -> None:
        """``monthly_execution_ms``: ``server.functions_monthly_execution_ms`` (None: none)."""
        self._workspace = workspace
        self._clock = clock
        self._allotment = monthly_execution_ms

    def add(self, tallies: Mapping[str, Tally]) -> None:
        """Add tallies (function id → tally) to this month's usage, in one transaction."""
        rows = [
            {
                "function_id": function,
                "month": "",
                "invocations": t.invocations,
                "execution_ms": t.execution_ms,
                "errors": t.errors,
            }
            for function, t in sorted(tallies.items())  # one lock order across writers
            if t.invocations
        ]
        if not rows:
            return
        month = month_of(self._clock())
        for row in rows:
            row["month"] = month
        with self._workspace.writing() as conn:
            before = self._month_total(conn, month) if self._allotment else 0
            conn.execute(_upsert(conn), rows)
            if self._allotment:
                self._warn(before, self._month_total(conn, month), month, self._allotment)

    def months(self, function: str) -> list[MonthUsage]:
        """A function's usage by month, the most recent first (``function``: id or name)."""
        t = schema.function_usage
        with self._workspace.reading() as conn:
            function_id = self._function_id(conn, function)
            rows = conn.execute(
                sa.select(t).where(t.c.function_id == function_id).order_by(t.c.month.desc())
            )
            return [
                MonthUsage(row.month, row.invocations, row.execution_ms, row.errors) for row in rows
            ]

    def _month_total(self, conn: Connection, month: str) -> int:
        """The workspace's execution time this month (a self-hosted server has one workspace
        of functions)."""
        t = schema.function_usage
        found = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(t.c.execution_ms), 0)).where(t.c.month == month)
        ).scalar_one()
        return int(found)

    @staticmethod
    def _warn(before: int, after: int, month: str, allotment: int) -> None:
        for percent in THRESHOLDS:
            line = allotment * percent / 100
            if before < line <= after:
                logger.warning(
                    "functions have used %d%% of their monthly execution time in %s "
                    "(%d of %d ms, server.functions_monthly_execution_ms)",
                    percent,
                    month,
                    after,
                    allotment,
                )

    def _function_id(self, conn: Connection, function: str) -> str:
        if "\x00" in function:
            raise NotFoundError(f"no function has the id or name {function!r}")
        f = schema.functions
        found = conn.execute(sa.select(f.c.id).where(f.c.id == function)).scalar_one_or_none()
        if found is None:
            found = conn.execute(
                sa.select(f.c.id).where(
                    f.c.workspace_id == self._workspace.workspace_id(conn), f.c.name == function
                )
            ).scalar_one_or_none()
        if found is None:
            raise NotFoundError(f"no function has the id or name {function!r}")
        return str(found)


_UPSERTS: dict[str, Any] = {}  # dialect name -> statement


def _upsert(conn: Connection) -> Any:
    """``INSERT … ON CONFLICT (function_id, month) DO UPDATE SET n = n + excluded.n``."""
    dialect = conn.dialect.name
    statement = _UPSERTS.get(dialect)
    if statement is not None:
        return statement
    t = schema.function_usage
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        sqlite_stmt = sqlite_insert(t)
        statement = sqlite_stmt.on_conflict_do_update(
            index_elements=["function_id", "month"],
            set_={c: t.c[c] + sqlite_stmt.excluded[c] for c in _SUMMED},
        )
    elif dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        pg_stmt = pg_insert(t)
        statement = pg_stmt.on_conflict_do_update(
            index_elements=["function_id", "month"],
            set_={c: t.c[c] + pg_stmt.excluded[c] for c in _SUMMED},
        )
    else:
        raise NotImplementedError(f"function usage needs SQLite or PostgreSQL, not {dialect}")
    _UPSERTS[dialect] = statement
    return statement


_SUMMED: Final = ("invocations", "execution_ms", "errors")
