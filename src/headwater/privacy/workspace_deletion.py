"""Deleting the workspace (§11): five days to change one's mind, then a purge of everything.

A request at T leaves the workspace working as before and revocable until T+5 days (Segment's
guard against a malicious or mistaken deletion). From then on it is irreversible: the worker
purges, in steps whose completion is recorded one by one, so a crash repeats only the step it
was in (every step is idempotent):

1. ``intake``: write keys, destinations and their queued jobs, Engage's outbox go, so no new
   event is accepted and nothing more is sent anywhere (a purge is not forwarded, §11);
2. ``settle``: wait until the log's consumers have taken what was already accepted, so the
   archive and profiles are not refilled behind the purge (given up after ``SETTLE_LIMIT``);
3. ``state``: every row of every state table but the log's machinery (``KEPT``) — sources,
   spaces, profiles, Engage, debugger, counters and samples, blocked events, violations,
   tracking plans, the Privacy Portal, regulations, suppressions, warehouses' settings;
4. ``archive``: every source's archive;
5. ``workspace``: an empty workspace called ``default`` with a new id, as a first start makes.

The log's records expire through its own retention (as a regulation's do, §10.3). Warehouses
and data lakes are the customer's raw-data destinations and keep their data: Segment does not
forward a purge to them. The admin token is kept, so the deployment stays reachable.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.privacy.regulations import SUPPRESSION_VERSION_KEY
from headwater.store import schema
from headwater.store.archive import Archive
from headwater.store.database import write_transaction
from headwater.store.workspace import WorkspaceStore

GRACE_SECONDS = 5 * 86_400  # revocable for five days (§11)
PURGE_WITHIN_SECONDS = 30 * 86_400  # then purged within 30 days (§11)
SETTLE_LIMIT = 3_600.0  # how long the purge waits for the log's consumers to catch up
DEFAULT_WORKSPACE = "default"

PENDING = "PENDING"
REVOKED = "REVOKED"
PURGING = "PURGING"
PURGED = "PURGED"

STEPS = ("intake", "settle", "state", "archive", "workspace")

# The state tables a purge keeps: the migrations, ``meta`` (the admin token's digest, the
# configuration's version), the deletion's own record, and the log's machinery (its records
# expire by retention; offsets and leases belong to the processes, not the workspace).
KEPT = frozenset(
    {
        "meta",
        "schema_migrations",
        "workspace_deletions",
        "log_partitions",
        "log_records",
        "log_groups",
        "log_members",
        "ingest_partitions",
        "ingest_records",
        "stage_positions",
        "stage_members",
        "dedup_runs",
    }
)

# What ``intake`` removes first, children before parents.
_INTAKE = ("write_keys", "delivery_jobs", "engage_outbox", "destinations")


@dataclass(frozen=True)
class WorkspaceDeletion:
    id: str
    workspace_id: str
    workspace_name: str
    status: str
    requested_at: float
    irrevocable_at: float
    steps_done: tuple[str, ...]
    revoked_at: float | None
    finished_at: float | None

    def revocable(self, now: float) -> bool:
        return self.status == PENDING and now < self.irrevocable_at

    @property
    def purge_by(self) -> float:
        return self.irrevocable_at + PURGE_WITHIN_SECONDS


def _deletion(row: Any) -> WorkspaceDeletion:
    return WorkspaceDeletion(
        id=row.id,
        workspace_id=row.workspace_id,
        workspace_name=row.workspace_name,
        status=row.status,
        requested_at=row.requested_at,
        irrevocable_at=row.irrevocable_at,
        steps_done=tuple(row.steps_done or ()),
        revoked_at=row.revoked_at,
        finished_at=row.finished_at,
    )


class WorkspaceDeletions:
    """Requests, revocations and the record of the workspace's deletion (the REST API's side)."""

    def __init__(self, engine: Engine, *, clock: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._clock = clock

    def latest(self) -> WorkspaceDeletion | None:
        t = schema.workspace_deletions
        with self._engine.connect() as conn:
            # An open deletion first; else the last one asked (its id breaks no tie: random).
            is_open = sa.case((t.c.status.in_((PENDING, PURGING)), 1), else_=0)
            row = conn.execute(
                sa.select(t)
                .order_by(
                    is_open.desc(),
                    t.c.requested_at.desc(),
                    sa.func.coalesce(t.c.finished_at, t.c.revoked_at).desc(),
                )
                .limit(1)
            ).first()
        return _deletion(row) if row is not None else None

    def request(self, confirm: object) -> WorkspaceDeletion:
        """Ask for the workspace's deletion; ``confirm`` must be its name (as Segment makes
        one type it), so a stray call cannot start the clock."""
        workspace = WorkspaceStore(self._engine).workspace()
        if workspace is None:
            raise NotFoundError("there is no workspace to delete")
        if confirm != workspace.name:
            raise InvalidError(
                "to delete the workspace, give its name in confirm (the workspace's name "
                "as GET /api/v1/workspace/deletion shows it)",
                "confirm",
            )
        now = self._clock()
        t = schema.workspace_deletions
        with write_transaction(self._engine) as conn:
            open_ = conn.execute(
                sa.select(t.c.id).where(t.c.status.in_((PENDING, PURGING)))
            ).first()
            if open_ is not None:
                raise ConflictError("the workspace's deletion is already requested")
            deletion_id = f"wsd_{uuid.uuid4().hex[:20]}"
            conn.execute(
                t.insert().values(
                    id=deletion_id,
                    workspace_id=workspace.id,
                    workspace_name=workspace.name,
                    status=PENDING,
                    requested_at=now,
                    irrevocable_at=now + GRACE_SECONDS,
                    steps_done=[],
                    revoked_at=None,
                    finished_at=None,
                )
            )
        found = self.latest()
        assert found is not None
        return found

    def revoke(self) -> WorkspaceDeletion:
        """Revoke the pending deletion, while the five days last."""
        now = self._clock()
        t = schema.workspace_deletions
        with write_transaction(self._engine) as conn:
            row = conn.execute(
                sa.select(t).where(t.c.status.in_((PENDING, PURGING))).limit(1)
            ).first()
            if row is None:
                raise NotFoundError("no deletion of the workspace is pending")
            if not _deletion(row).revocable(now):
                raise ConflictError(
                    "the workspace's deletion became irreversible five days after it was "
                    "requested; it can no longer be revoked"
                )
            conn.execute(t.update().where(t.c.id == row.id).values(status=REVOKED, revoked_at=now))
        found = self.latest()
        assert found is not None
        return found

    def workspace_name(self) -> str | None:
        workspace = WorkspaceStore(self._engine).workspace()
        return workspace.name if workspace is not None else None


class WorkspacePurge:
    """The worker's side: purges a deletion once it is irreversible, a step at a time."""

    def __init__(
        self,
        engine: Engine,
        archive_dir: Path | str,
        *,
        clock: Callable[[], float] = time.time,
        settled: Callable[[], bool] = lambda: True,
        settle_limit: float = SETTLE_LIMIT,
    ) -> None:
        self._engine = engine
        self._archive = Archive(archive_dir)
        self._clock = clock
        self._settled = settled
        self._settle_limit = settle_limit

    def run_due(self) -> WorkspaceDeletion | None:
        """Carry the due deletion as far as it goes now; the deletion as it stands after."""
        now = self._clock()
        t = schema.workspace_deletions
        with write_transaction(self._engine) as conn:
            row = conn.execute(
                sa.select(t)
                .where(
                    sa.or_(
                        t.c.status == PURGING,
                        sa.and_(t.c.status == PENDING, t.c.irrevocable_at <= now),
                    )
                )
                .order_by(t.c.requested_at)
                .limit(1)
            ).first()
            if row is None:
                return None
            if row.status == PENDING:
                conn.execute(t.update().where(t.c.id == row.id).values(status=PURGING))
        deletion = _deletion(row)
        done = list(deletion.steps_done)
        for step in STEPS:
            if step in done:
                continue
            if not self._step(step, deletion):
                break  # not finished yet: the next pass goes on from here
            done.append(step)
            with write_transaction(self._engine) as conn:
                values: dict[str, Any] = {"steps_done": list(done)}
                if len(done) == len(STEPS):
                    values.update(status=PURGED, finished_at=self._clock())
                conn.execute(t.update().where(t.c.id == deletion.id).values(**values))
        found = WorkspaceDeletions(self._engine, clock=self._clock).latest()
        return found

    def _step(self, step: str, deletion: WorkspaceDeletion) -> bool:
        if step == "intake":
            self._delete_tables(_INTAKE)
        elif step == "settle":
            waited = self._clock() - deletion.irrevocable_at
            return self._settled() or waited >= self._settle_limit
        elif step == "state":
            tables = [
                table.name
                for table in reversed(schema.metadata.sorted_tables)
                if table.name not in KEPT
            ]
            self._delete_tables(tables)
        elif step == "archive":
            self._archive.remove_all()
        elif step == "workspace":
            store = WorkspaceStore(self._engine, clock=self._clock)
            if store.workspace() is None:
                store.ensure_workspace(DEFAULT_WORKSPACE)
        return True

    def _delete_tables(self, names: tuple[str, ...] | list[str]) -> None:
        """Empty the tables, each in its own transaction (a crash repeats what is left), and
        move the versions the caches watch, so every process drops what it holds."""
        for name in names:
            with write_transaction(self._engine) as conn:
                conn.execute(schema.metadata.tables[name].delete())
        with write_transaction(self._engine) as conn:
            WorkspaceStore(self._engine).bump(conn)
            _bump_meta(conn, SUPPRESSION_VERSION_KEY)


def _bump_meta(conn: Connection, key: str) -> None:
    meta = schema.meta
    value = conn.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar()
    if value is None:
        conn.execute(meta.insert().values(key=key, value="1"))
    else:
        number = int(value) if str(value).isdigit() else 0
        conn.execute(meta.update().where(meta.c.key == key).values(value=str(number + 1)))
