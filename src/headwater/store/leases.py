"""Partition leases: several processes share a group's partitions, each partition held by one.

Used by the event log's consumer groups and by the stage chain over the ingest log; both keep
a row per (group, partition) with ``owner`` and ``lease_expires_at``, and a row per member
with its last heartbeat.
"""

from __future__ import annotations

import math

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def acquire_in(
    conn: Connection,
    groups: sa.Table,
    members: sa.Table,
    group: str,
    owner: str,
    *,
    now: float,
    ttl_seconds: float,
    exclusive: bool = False,
) -> list[int]:
    """Heartbeat ``owner``, renew its leases, give back partitions above its fair share
    (``ceil(partitions / live members)``) and take free or expired ones up to it.

    ``exclusive``: one owner holds every partition or none — for a stage whose state spans
    partitions (identity resolution keeps one writer per space). An owner that finds any
    partition held by another live owner holds nothing, so a split never lasts."""
    expires = math.ceil(now + ttl_seconds)
    updated = conn.execute(
        sa.update(members)
        .where(members.c.group_name == group, members.c.owner == owner)
        .values(heartbeat_at=int(now))
    ).rowcount
    if not updated:
        conn.execute(members.insert().values(group_name=group, owner=owner, heartbeat_at=int(now)))
    live = conn.execute(
        sa.select(sa.func.count())
        .select_from(members)
        .where(members.c.group_name == group, members.c.heartbeat_at >= int(now - ttl_seconds))
    ).scalar_one()
    rows = conn.execute(
        sa.select(groups.c.partition, groups.c.owner, groups.c.lease_expires_at)
        .where(groups.c.group_name == group)
        .order_by(groups.c.partition)
        .with_for_update()
    ).all()
    share = len(rows) if exclusive else math.ceil(len(rows) / max(1, live))
    mine = [p for p, o, exp in rows if o == owner and exp >= now]
    taken = {p for p, o, exp in rows if o is not None and o != owner and exp >= now}
    if exclusive and taken:
        share = 0
    free = [p for p, _, _ in rows if p not in taken and p not in mine]
    keep = mine[:share]
    release = mine[share:]
    take = free[: max(0, share - len(keep))]
    held = sorted(keep + take)
    if held:
        conn.execute(
            sa.update(groups)
            .where(groups.c.group_name == group, groups.c.partition.in_(held))
            .values(owner=owner, lease_expires_at=expires)
        )
    if release:
        conn.execute(
            sa.update(groups)
            .where(groups.c.group_name == group, groups.c.partition.in_(release))
            .values(owner=None, lease_expires_at=0)
        )
    return held


def release_in(
    conn: Connection, groups: sa.Table, members: sa.Table, group: str, owner: str
) -> None:
    conn.execute(
        sa.update(groups)
        .where(groups.c.group_name == group, groups.c.owner == owner)
        .values(owner=None, lease_expires_at=0)
    )
    conn.execute(sa.delete(members).where(members.c.group_name == group, members.c.owner == owner))
