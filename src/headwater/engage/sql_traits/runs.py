"""Running SQL traits: the scheduler the worker calls, a run, and the preview.

A run claims the trait's lease (a conditional update: one process wins, on SQLite and
PostgreSQL alike; a thread renews it while the run lasts), runs the query through a ``Runner``
(the warehouse package's ``WarehouseQueries``; the server hands it over), checks the result
with Segment's rules (``results``) and compares each row with what the previous run stored.
Then one transaction does everything: the calls for the changed rows and the ``null``s for the
identifiers that are gone go into Engage's outbox, the new values replace the old, the run is
recorded and the lease given back. A run that fails anywhere before that writes none of it: it
records its error (run history and the trait's status) and the values stay as they were, so the
next run compares with the last good one. A crash mid-run leaves the run ``running`` until the
lease expires; the next claim records it as interrupted.

When a trait runs next: at its ``next_run_at`` (creation makes it due at once), then every
``every_hours`` hours counted from the schedule, not from when a run happened to end; a run
asked for (``requested_at``) runs at the next tick and leaves the schedule alone. A run that
could not reach its warehouse is tried again after ``RETRY_UNAVAILABLE`` seconds (or at its
next slot, if sooner); one stopped by the server's shutdown, at the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from headwater.engage import outbox
from headwater.engage.sql_traits.definitions import SqlTrait, check_query, trait_of
from headwater.engage.sql_traits.messages import message
from headwater.engage.sql_traits.results import Reader, Record, Value, decoded, shape_of
from headwater.errors import InputError, LeaseLost, SyncStopped, WarehouseError
from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.timestamps import format_timestamp

logger = logging.getLogger(__name__)

RUN_TIMEOUT: Final = 3600.0  # seconds a run's query may take
PREVIEW_TIMEOUT: Final = 60.0
PREVIEW_ROWS: Final = 100
LEASE_SECONDS: Final = 300
KEPT_RUNS: Final = 30
RETRY_UNAVAILABLE: Final = 600
CHUNK: Final = 1000  # messages or value rows per statement
CHECK_EVERY: Final = 1000  # rows between looks at a stop request

Rows = tuple[list[str], Iterator[tuple[Any, ...]]]


class Runner(Protocol):
    """Runs a query on a warehouse: ``headwater.warehouse.query.WarehouseQueries``."""

    def rows(
        self,
        warehouse_id: str,
        query: str,
        *,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> AbstractContextManager[Rows]: ...


Destinations = Callable[[str], Sequence[str]]  # computation id → connected destination names


def no_destinations(_computation_id: str) -> Sequence[str]:
    return ()


@dataclass(frozen=True)
class RunResult:
    trait_id: str
    run_id: int
    status: str  # success, failure
    rows: int = 0
    changed: int = 0
    nulled: int = 0
    discarded: int = 0
    error: str | None = None


@dataclass
class _Outcome:
    """What a run found, before it is written."""

    id_type: str
    rows: int = 0
    discarded: int = 0
    changed: list[tuple[Record, dict[str, Value]]] = field(default_factory=list)  # with nulls
    replaced: list[tuple[str, str]] = field(default_factory=list)  # (type, value) stored before
    gone: list[tuple[str, str, str]] = field(default_factory=list)  # (type, value, old row)


class SqlTraitRuns:
    """The SQL traits of every space: which are due, and running them."""

    def __init__(
        self,
        engine: Engine,
        runner: Runner,
        *,
        owner: str,
        clock: Callable[[], float] = time.time,
        destinations: Destinations = no_destinations,
        lease_seconds: int = LEASE_SECONDS,
        timeout: float = RUN_TIMEOUT,
    ) -> None:
        self._engine = engine
        self._runner = runner
        self._owner = owner
        self._clock = clock
        self._destinations = destinations
        self._lease_seconds = lease_seconds
        self._timeout = timeout
        self._stopping = threading.Event()

    def stop(self) -> None:
        """Make a running run stop at its next batch of rows (it runs again at the next
        start)."""
        self._stopping.set()

    # --- the scheduler -----------------------------------------------------------------------

    def due(self, now: float | None = None) -> list[str]:
        """The traits to run now: asked for first, then by their scheduled time."""
        at = int(self._clock() if now is None else now)
        t, sp = schema.engage_sql_traits, schema.spaces
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.id)
                .join(sp, sp.c.id == t.c.space_id)  # a deleted space's traits never run
                .where(_due(at), _free(at))
                .order_by(t.c.requested_at.is_(None), t.c.next_run_at, t.c.id)
            )
            return [row.id for row in rows]

    def run_due(self, now: float | None = None) -> list[RunResult]:
        """Run every due trait, one after another (the worker calls this every few seconds)."""
        at = int(self._clock() if now is None else now)
        results = []
        for trait_id in self.due(at):
            if self._stopping.is_set():
                break
            result = self._run(trait_id, due_at=at)
            if result is not None:
                results.append(result)
        return results

    def run(self, trait_id: str) -> RunResult | None:
        """Run a trait now, due or not (None: another process is running it)."""
        return self._run(trait_id, due_at=None)

    # --- a run -------------------------------------------------------------------------------

    def _run(self, trait_id: str, *, due_at: int | None) -> RunResult | None:
        started = int(self._clock())
        claimed = self._claim(trait_id, started, due_at)
        if claimed is None:
            return None
        trait, run_id, trigger = claimed
        outcome = _Outcome(id_type="")
        with self._heartbeat(trait.id):
            try:
                outcome = self._compute(trait, outcome)
                return self._commit(trait, run_id, trigger, started, outcome)
            except SyncStopped as exc:
                return self._failed(trait, run_id, trigger, started, outcome, str(exc), started)
            except WarehouseError as exc:
                retry = int(self._clock()) + RETRY_UNAVAILABLE
                return self._failed(trait, run_id, trigger, started, outcome, str(exc), retry)
            except InputError as exc:  # QueryError; NotFoundError: the warehouse was deleted
                return self._failed(trait, run_id, trigger, started, outcome, exc.message, None)
            except LeaseLost:
                logger.warning("SQL trait %s: the lease was lost; the run is dropped", trait.id)
                return None
            except Exception as exc:
                logger.exception("SQL trait %s: the run failed", trait.id)
                error = f"the run failed inside Headwater ({type(exc).__name__}); see its log"
                return self._failed(trait, run_id, trigger, started, outcome, error, None)

    def _claim(
        self, trait_id: str, now: int, due_at: int | None
    ) -> tuple[SqlTrait, int, str] | None:
        t, r = schema.engage_sql_traits, schema.engage_sql_trait_runs
        with write_transaction(self._engine) as conn:
            where = [t.c.id == trait_id, t.c.deleted_at.is_(None), _free(now)]
            if due_at is not None:
                where.append(_due(due_at))
            claimed = conn.execute(
                t.update()
                .where(*where)
                .values(lease_owner=self._owner, lease_expires_at=now + self._lease_seconds)
            ).rowcount
            if not claimed:
                return None
            row = conn.execute(sa.select(t).where(t.c.id == trait_id)).one()
            conn.execute(
                r.update()
                .where(r.c.trait_id == trait_id, r.c.status == "running")
                .values(
                    status="failure",
                    finished_at=now,
                    error="interrupted: the process running it stopped",
                )
            )
            trigger = "manual" if due_at is None or row.requested_at is not None else "schedule"
            inserted = conn.execute(
                r.insert().values(
                    trait_id=trait_id,
                    trigger=trigger,
                    status="running",
                    started_at=now,
                    rows=0,
                    changed=0,
                    nulled=0,
                    discarded=0,
                )
            ).inserted_primary_key
            assert inserted is not None
        return trait_of(row), int(inserted[0]), trigger

    def _compute(self, trait: SqlTrait, outcome: _Outcome) -> _Outcome:
        """Query, check and compare; nothing is written."""
        previous = self._previous(trait.id)
        with self._runner.rows(trait.warehouse_id, trait.query, timeout=self._timeout) as found:
            columns, rows = found
            shape = shape_of(columns, trait.level)
            outcome.id_type = shape.identifier
            reader = Reader(shape)
            try:
                for record in reader.read(rows):
                    if record.number % CHECK_EVERY == 0 and self._stopping.is_set():
                        raise SyncStopped("the server stopped during the run; it runs again")
                    before = previous.pop((shape.identifier, record.identifier), None)
                    if record.text is None or record.text == before:
                        continue  # unchanged; or discarded, which keeps what it had
                    sent: dict[str, Value] = dict(record.traits)
                    if before is not None:
                        outcome.replaced.append((shape.identifier, record.identifier))
                        for name in decoded(before)[0]:
                            sent.setdefault(name, None)  # a trait no longer returned
                    outcome.changed.append((record, sent))
            finally:
                outcome.rows, outcome.discarded = reader.rows, reader.discarded
        outcome.gone = [(kind, value, row) for (kind, value), row in previous.items()]
        return outcome

    def _commit(
        self, trait: SqlTrait, run_id: int, trigger: str, started: int, outcome: _Outcome
    ) -> RunResult:
        now = int(self._clock())
        timestamp = format_timestamp(datetime.fromtimestamp(started, UTC))
        destinations = list(self._destinations(trait.id))
        v = schema.engage_sql_trait_values
        with write_transaction(self._engine) as conn:
            self._release(conn, trait, trigger, started, "success", None, None)
            messages: list[dict[str, Any]] = []
            for record, sent in outcome.changed:
                messages.append(
                    message(
                        trait,
                        run_id=run_id,
                        id_type=outcome.id_type,
                        identifier=record.identifier,
                        traits=sent,
                        user_id=record.user_id,
                        timestamp=timestamp,
                        destinations=destinations,
                        subscriptions=record.subscriptions,
                    )
                )
                if len(messages) >= CHUNK:
                    outbox.add(conn, trait.space_id, messages, now)
                    messages = []
            for kind, value, row in outcome.gone:
                traits, user_id = decoded(row)
                messages.append(
                    message(
                        trait,
                        run_id=run_id,
                        id_type=kind,
                        identifier=value,
                        traits=dict.fromkeys(traits),
                        user_id=user_id,
                        timestamp=timestamp,
                        destinations=destinations,
                    )
                )
                if len(messages) >= CHUNK:
                    outbox.add(conn, trait.space_id, messages, now)
                    messages = []
            outbox.add(conn, trait.space_id, messages, now)
            stale = outcome.replaced + [(kind, value) for kind, value, _ in outcome.gone]
            delete = v.delete().where(
                v.c.trait_id == trait.id,
                v.c.id_type == sa.bindparam("kind"),
                v.c.id_value == sa.bindparam("value"),
            )
            for start in range(0, len(stale), CHUNK):
                chunk = stale[start : start + CHUNK]
                conn.execute(delete, [{"kind": kind, "value": value} for kind, value in chunk])
            fresh = [
                {
                    "trait_id": trait.id,
                    "id_type": outcome.id_type,
                    "id_value": record.identifier,
                    "row": record.text,
                }
                for record, _ in outcome.changed
            ]
            for start in range(0, len(fresh), CHUNK):
                conn.execute(v.insert(), fresh[start : start + CHUNK])
            result = RunResult(
                trait.id,
                run_id,
                "success",
                rows=outcome.rows,
                changed=len(outcome.changed),
                nulled=len(outcome.gone),
                discarded=outcome.discarded,
            )
            self._record(conn, result, now)
        logger.info(
            "SQL trait %s: %d rows, %d changed, %d nulled, %d discarded",
            trait.key,
            result.rows,
            result.changed,
            result.nulled,
            result.discarded,
        )
        return result

    def _failed(
        self,
        trait: SqlTrait,
        run_id: int,
        trigger: str,
        started: int,
        outcome: _Outcome,
        error: str,
        retry_at: int | None,
    ) -> RunResult:
        now = int(self._clock())
        result = RunResult(
            trait.id,
            run_id,
            "failure",
            rows=outcome.rows,
            discarded=outcome.discarded,
            error=error,
        )
        with write_transaction(self._engine) as conn:
            # LeaseLost: another process owns the trait now; the run is still ours to record.
            with suppress(LeaseLost):
                self._release(conn, trait, trigger, started, "failure", error, retry_at)
            self._record(conn, result, now)
        logger.info("SQL trait %s: the run failed: %s", trait.key, error)
        return result

    def _release(
        self,
        conn: Connection,
        trait: SqlTrait,
        trigger: str,
        started: int,
        status: str,
        error: str | None,
        retry_at: int | None,
    ) -> None:
        """Record the trait's status and next run and give the lease back; LeaseLost when
        it is no longer ours (or the trait was deleted meanwhile)."""
        t = schema.engage_sql_traits
        next_run = _next_run(trait, trigger, started)
        if retry_at is not None:
            next_run = min(next_run, retry_at)
        requested = sa.case(
            (sa.and_(t.c.requested_at.is_not(None), t.c.requested_at <= started), None),
            else_=t.c.requested_at,
        )
        released = conn.execute(
            t.update()
            .where(t.c.id == trait.id, t.c.lease_owner == self._owner, t.c.deleted_at.is_(None))
            .values(
                status=status,
                last_error=error,
                last_run_at=started,
                next_run_at=next_run,
                requested_at=requested,
                lease_owner=None,
                lease_expires_at=None,
            )
        ).rowcount
        if not released:
            raise LeaseLost(f"SQL trait {trait.id} is no longer leased by {self._owner}")

    def _record(self, conn: Connection, result: RunResult, now: int) -> None:
        """The run's row in the history, and the history cut to its last ``KEPT_RUNS``."""
        r = schema.engage_sql_trait_runs
        conn.execute(
            r.update()
            .where(r.c.id == result.run_id)
            .values(
                status=result.status,
                finished_at=now,
                rows=result.rows,
                changed=result.changed,
                nulled=result.nulled,
                discarded=result.discarded,
                error=result.error,
            )
        )
        oldest = conn.execute(
            sa.select(r.c.id)
            .where(r.c.trait_id == result.trait_id)
            .order_by(r.c.id.desc())
            .offset(KEPT_RUNS - 1)
            .limit(1)
        ).scalar_one_or_none()
        if oldest is not None:
            conn.execute(r.delete().where(r.c.trait_id == result.trait_id, r.c.id < oldest))

    def _previous(self, trait_id: str) -> dict[tuple[str, str], str]:
        v = schema.engage_sql_trait_values
        with self._engine.connect() as conn:
            rows = conn.execute(
                sa.select(v.c.id_type, v.c.id_value, v.c.row).where(v.c.trait_id == trait_id)
            )
            return {(row.id_type, row.id_value): row.row for row in rows}

    @contextmanager
    def _heartbeat(self, trait_id: str) -> Iterator[None]:
        """Renew the lease every third of its length while the run lasts."""
        done = threading.Event()
        t = schema.engage_sql_traits

        def renew() -> None:
            while not done.wait(self._lease_seconds / 3):
                try:
                    with write_transaction(self._engine) as conn:
                        conn.execute(
                            t.update()
                            .where(t.c.id == trait_id, t.c.lease_owner == self._owner)
                            .values(lease_expires_at=int(self._clock()) + self._lease_seconds)
                        )
                except Exception:  # the state database is away: the commit will tell
                    logger.warning("SQL trait %s: could not renew the lease", trait_id)

        thread = threading.Thread(target=renew, name=f"sql-trait-lease-{trait_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()


def _due(now: int) -> sa.ColumnElement[bool]:
    t = schema.engage_sql_traits
    return sa.and_(
        t.c.deleted_at.is_(None),
        sa.or_(t.c.requested_at.is_not(None), t.c.next_run_at <= now),
    )


def _free(now: int) -> sa.ColumnElement[bool]:
    t = schema.engage_sql_traits
    return sa.or_(t.c.lease_owner.is_(None), t.c.lease_expires_at < now)


def _next_run(trait: SqlTrait, trigger: str, now: int) -> int:
    """The schedule's next slot after ``now``; a run asked for leaves the schedule as it is."""
    interval = trait.every_hours * 3600
    scheduled = trait.next_run_at if trait.next_run_at is not None else now
    if trigger == "manual" and scheduled > now:
        return scheduled
    following = scheduled + interval
    if following <= now:
        following += ((now - following) // interval + 1) * interval
    return following


# --- the preview -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PreviewRow:
    identifier: str
    known: bool  # the identifier is on a profile of the space (✓), or not yet ("?")
    traits: dict[str, Value]
    user_id: str | None
    discarded: bool


@dataclass(frozen=True)
class Preview:
    identifier: str  # the identifier column: user_id, email, anonymous_id or group_id
    traits: list[str]
    rows: list[PreviewRow]


def preview(
    engine: Engine,
    runner: Runner,
    *,
    space_id: str,
    warehouse_id: str,
    query: str,
    level: str,
    limit: int = PREVIEW_ROWS,
    timeout: float = PREVIEW_TIMEOUT,
) -> Preview:
    """The query's first ``limit`` rows checked with a run's rules, each marked known or not;
    nothing is stored or sent. QueryError for what a run would refuse."""
    check_query(query)
    with runner.rows(warehouse_id, query, limit=limit, timeout=timeout) as found:
        columns, rows = found
        shape = shape_of(columns, level)
        records = list(Reader(shape).read(rows))
    known = _known(engine, space_id, shape.identifier, [r.identifier for r in records])
    return Preview(
        identifier=shape.identifier,
        traits=shape.trait_names,
        rows=[
            PreviewRow(
                identifier=r.identifier,
                known=r.identifier in known,
                traits=r.traits,
                user_id=r.user_id,
                discarded=r.text is None,
            )
            for r in records
        ],
    )


def _known(engine: Engine, space_id: str, id_type: str, values: Sequence[str]) -> set[str]:
    """Which of ``values`` the space's identity graph has, as identifiers of ``id_type``."""
    i = schema.unify_identities
    collection = "accounts" if id_type == "group_id" else "users"
    found: set[str] = set()
    with engine.connect() as conn:
        for start in range(0, len(values), 500):
            chunk = list(values[start : start + 500])
            found.update(
                conn.execute(
                    sa.select(i.c.value).where(
                        i.c.space_id == space_id,
                        i.c.collection == collection,
                        i.c.type == id_type,
                        i.c.value.in_(chunk),
                    )
                ).scalars()
            )
    return found
