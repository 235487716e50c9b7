"""A journey version's analytics (§15.5), counted from the step log the runner writes.

Journey level: **Entered** (first entries and re-entries after an exit), **In progress**
(members now that have reached no final step and not exited), **Completed** (reached a final
step) and **Exits**. Step level: the users who joined each step in the period, as a share of
the previous step (the default) or of the entry step; ``unique`` counts each profile (or
instance) once, ``total`` counts each joining, re-entries included. Periods are at most 180
days.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection as DbConnection

from headwater.engage.journeys.model import ENTRY, EXIT, Plan
from headwater.errors import InvalidError
from headwater.store import schema

MAX_PERIOD = 180 * 86_400
MODES = ("previous", "entry")
COUNTS = ("unique", "total")


@dataclass(frozen=True)
class StepCount:
    step: str
    name: str
    parent: str
    users: int
    percent: float | None  # of the previous step or of the entry step; None: nothing to divide


@dataclass(frozen=True)
class Analytics:
    entered: int
    in_progress: int
    completed: int
    exits: int
    steps: tuple[StepCount, ...]


def analytics(
    conn: DbConnection,
    journey_id: str,
    version: int,
    plan: Plan,
    *,
    since: int,
    until: int,
    mode: str = "previous",
    count: str = "unique",
) -> Analytics:
    if mode not in MODES:
        raise InvalidError("must be previous or entry", "mode")
    if count not in COUNTS:
        raise InvalidError("must be unique or total", "count")
    if until <= since:
        raise InvalidError("the period ends before it starts", "until")
    if until - since > MAX_PERIOD:
        raise InvalidError("a period is at most 180 days", "since")
    log = schema.engage_journey_log
    who = log.c.profile_id + sa.literal("\x1f") + log.c.instance
    measure = sa.func.count(sa.distinct(who)) if count == "unique" else sa.func.count()
    counted: dict[str, int] = dict(
        conn.execute(
            sa.select(log.c.step, measure)
            .where(
                log.c.journey_id == journey_id,
                log.c.version == version,
                log.c.at >= since,
                log.c.at < until,
            )
            .group_by(log.c.step)
        ).all()
    )
    leaves = sorted(plan.leaves())
    completed = (
        conn.execute(
            sa.select(sa.func.count(sa.distinct(who))).where(
                log.c.journey_id == journey_id,
                log.c.version == version,
                log.c.at >= since,
                log.c.at < until,
                log.c.step.in_(leaves),
            )
        ).scalar_one()
        if leaves
        else 0
    )
    entered = int(counted.get(ENTRY, 0))
    steps = []
    for step in plan.steps.values():
        users = int(counted.get(step.id, 0))
        base = entered if mode == "entry" or step.parent == ENTRY else counted.get(step.parent, 0)
        percent = round(100.0 * users / base, 2) if base else None
        steps.append(StepCount(step.id, step.name, step.parent, users, percent))
    return Analytics(
        entered=entered,
        in_progress=_in_progress(conn, journey_id, version, leaves),
        completed=int(completed),
        exits=int(counted.get(EXIT, 0)),
        steps=tuple(steps),
    )


def _in_progress(conn: DbConnection, journey_id: str, version: int, leaves: list[str]) -> int:
    table = schema.engage_journey_members
    found = 0
    for (state,) in conn.execute(
        sa.select(table.c.state).where(table.c.journey_id == journey_id, table.c.version == version)
    ):
        member: Mapping[str, Any] = state
        joined = member.get("joined", {})
        if member.get("exited") is None and not member.get("done"):
            found += not any(leaf in joined for leaf in leaves)
    return found
