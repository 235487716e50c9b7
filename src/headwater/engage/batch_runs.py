"""Batch computation, scheduled: each audience and computed trait computed from the space's
Profiles Sync tables on creation, on every edit of its definition, and every 8 hours (§13.6),
and each new real-time vector seeded from history.

A run does not write profiles: the identity stage's pass is their one writer. It stages what
it decided (``engage_batch_staged``) and Engage's observer applies it in the pass
(``EngageStage.expire``), so a batch value and a real-time one can never overwrite each other.

- **Batch-only definitions** (funnels, ``between``, dynamic references): the compiled query's
  values against those the profiles hold now (``unify_profile_traits``); only profiles whose
  value changes are staged — the first run stages every member (A-UE-38's initial sync), the
  later ones the changes.
- **Real-time definitions with "Include Historical Data"**: the engine counts a new vector's
  events from the moment it planned it (``engage_vectors.since``); the run adds, per profile,
  the buckets of the events received before, once the warehouse has loaded past that moment.
  The computation is ``Preparing`` until then and ``Live`` after.
- **A destination connected later** gets every current value (§14.1's historical backfill),
  unless the computation leaves history out.

Failures are retried up to 5 times, 5 minutes apart, then the status is ``Failed`` with the
error (an edit starts again). Without Profiles Sync a batch definition is ``Not Computing``
and says how to turn it on; a real-time one computes from its creation on.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.engine import Engine

from headwater.engage import batch
from headwater.engage.computations import (
    COMPUTING,
    FAILED,
    LIVE,
    NOT_COMPUTING,
    ComputationInfo,
    ComputationStore,
)
from headwater.engage.definition import Definition
from headwater.engage.language import parse
from headwater.engage.realtime import Plan
from headwater.errors import DefinitionError, InputError, InvalidError, WarehouseError
from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.store.workspace import WorkspaceStore
from headwater.unify.spaces import SpaceInfo, SpaceStore

logger = logging.getLogger(__name__)

EVERY = 8 * 3600  # §13.6: "Audience Frequency Update: 1 per 8 hours"
RETRIES = 5  # §13.8: retried up to 5 times before a hard failure
RETRY_AFTER = 300
LEASE = 3600
SEED_MARGIN = 60  # a seed waits for a sync that began this long after the vector started
STAGE_ROWS = 5_000  # rows per insert
NO_PROFILES_SYNC = (
    "batch computation reads the space's Profiles Sync tables: turn Profiles Sync on for "
    "space {space!r} (profiles_sync: {{warehouse: …}} in headwater.yaml, or the space's API)"
)

_encode = msgspec.msgpack.Encoder().encode


class Tables(Protocol):
    """A space's Profiles Sync tables (``headwater.warehouse.profiles_tables``)."""

    @property
    def dialect(self) -> Any: ...

    @property
    def schema(self) -> str: ...

    @property
    def naming(self) -> Any: ...

    @property
    def loaded_at(self) -> int | None: ...

    def columns(self) -> Mapping[str, Mapping[str, str]]: ...

    def rows(self, sql: str) -> Sequence[Sequence[Any]]: ...

    def request_sync(self, after: int, now: float) -> None: ...


TablesOf = Callable[[SpaceInfo], Tables | None]


@dataclass(frozen=True)
class Preview:
    """How many profiles match a definition now, and a few of them."""

    size: int
    sample: list[tuple[str, Any]]  # (segment id, value)
    loaded_at: int | None


class BatchRuns:
    def __init__(
        self,
        engine: Engine,
        workspace: WorkspaceStore,
        tables: TablesOf,
        *,
        owner: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._engine = engine
        self._workspace = workspace
        self._tables = tables
        self._owner = owner
        self._clock = clock
        self._computations = ComputationStore(workspace)

    def run_due(self) -> int:
        """Every space's due work; how many computations ran or were seeded."""
        done = 0
        for space in SpaceStore(self._workspace).list():
            try:
                done += self._space(space)
            except Exception:
                logger.exception("Engage batch: space %s failed; will try again", space.name)
        return done

    def preview(
        self, space: str, definition: Definition, *, include_anonymous: bool, sample: int = 10
    ) -> Preview:
        """The definition's matches now (nothing is stored)."""
        info = SpaceStore(self._workspace).require(space)
        tables = self._require_tables(info)
        computations = self._computations.list(info.id)
        sql = self._compile(tables, info, computations, definition, include_anonymous)
        values = batch.run({"x": sql}, tables.rows)["x"]
        found = [(k, v) for k, v in sorted(values.items()) if v is not None]
        return Preview(len(found), found[:sample], tables.loaded_at)

    # --- a space ----------------------------------------------------------------------------

    def _space(self, space: SpaceInfo) -> int:
        computations = self._computations.list(space.id)
        if not computations:
            return 0
        now = int(self._clock())
        tables = self._tables(space)
        done = 0
        rows = self._rows(space.id, computations)
        for info in computations:
            row = rows[info.id]
            if info.mode != "batch":
                continue
            if tables is None:
                why = NO_PROFILES_SYNC.format(space=space.name)
                if (info.status, info.status_detail) != (NOT_COMPUTING, why):
                    self._set(info, status=NOT_COMPUTING, error=why)
                continue
            fingerprint = _fingerprint(info)
            edited = row.computed != fingerprint
            if edited and (tables.loaded_at or 0) <= info.updated_at:
                # A new definition reads everything sent before it: wait for a load that
                # began after the edit (and ask for one).
                tables.request_sync(info.updated_at, now)
                continue
            due = edited or (row.next_run_at or 0) <= now
            if due and self._claim(info.id, now):
                done += 1
                attempts = 0 if edited else row.attempts
                self._run(space, tables, computations, info, fingerprint, attempts)
        done += self._seed(space, tables, computations, now)
        self._backfill(space, computations, now)
        return done

    def _rows(self, space_id: str, computations: Sequence[ComputationInfo]) -> dict[str, Any]:
        table = schema.engage_batch
        with write_transaction(self._engine) as conn:
            found = {
                r.computation_id: r
                for r in conn.execute(sa.select(table).where(table.c.space_id == space_id))
            }
            missing = [c.id for c in computations if c.id not in found]
            if missing:
                conn.execute(
                    table.insert(),
                    [{"computation_id": i, "space_id": space_id, "attempts": 0} for i in missing],
                )
                found.update(
                    (r.computation_id, r)
                    for r in conn.execute(
                        sa.select(table).where(table.c.computation_id.in_(missing))
                    )
                )
        return found

    def _claim(self, computation_id: str, now: int) -> bool:
        table = schema.engage_batch
        with write_transaction(self._engine) as conn:
            return bool(
                conn.execute(
                    table.update()
                    .where(
                        table.c.computation_id == computation_id,
                        sa.or_(table.c.lease_owner.is_(None), table.c.lease_expires_at < now),
                    )
                    .values(lease_owner=self._owner, lease_expires_at=now + LEASE)
                ).rowcount
            )

    # --- a batch definition -------------------------------------------------------------------

    def _run(
        self,
        space: SpaceInfo,
        tables: Tables,
        computations: Sequence[ComputationInfo],
        info: ComputationInfo,
        fingerprint: str,
        attempts: int,
    ) -> None:
        self._set(info, status=COMPUTING)
        try:
            tree = parse(info.definition, kind=info.level, purpose=info.kind)
            sql = self._compile(tables, space, computations, tree, info.include_anonymous)
            values = batch.run({info.id: sql}, tables.rows)[info.id]
            if info.level == "accounts":
                values = _accounts(self._engine, space.id, values)
            changed = self._stage_values(space.id, info, values)
        except WarehouseError as exc:  # worth retrying: 5 minutes later, 5 times (§13.8)
            failed = attempts + 1 >= RETRIES
            self._release(
                info,
                status=FAILED if failed else COMPUTING,
                error=f"the warehouse could not be read: {exc}",
                computed=fingerprint,
                attempts=attempts + 1,
                next_run_at=int(self._clock()) + (EVERY if failed else RETRY_AFTER),
            )
            return
        except (InputError, DefinitionError) as exc:  # the query itself: until it is edited
            message = exc.message if isinstance(exc, InputError) else str(exc)
            self._release(
                info,
                status=FAILED,
                error=message,
                computed=fingerprint,
                next_run_at=int(self._clock()) + EVERY,
            )
            return
        now = int(self._clock())
        self._release(
            info,
            status=LIVE,
            error=None,
            computed=fingerprint,
            next_run_at=now + EVERY,
            members=sum(1 for v in values.values() if v is not None and v is not False),
            changed=changed,
            computed_at=now,
        )
        self._connected(info.id, now)
        logger.info("Engage batch: %s computed, %d profiles changed", info.key, changed)

    def _compile(
        self,
        tables: Tables,
        space: SpaceInfo,
        computations: Sequence[ComputationInfo],
        tree: Definition,
        include_anonymous: bool,
    ) -> str:
        references = {
            c.key: batch.Reference(
                c.kind, parse(c.definition, kind=c.level, purpose=c.kind), c.include_anonymous
            )
            for c in computations
        }
        ignore = [space.engage_source_id] if space.engage_source_id else []
        return batch.compile(
            tree,
            dialect=tables.dialect,
            schema=tables.schema,
            naming=tables.naming,
            columns=tables.columns(),
            now=float(tables.loaded_at or self._clock()),
            include_anonymous=include_anonymous,
            references=references,
            ignore_sources=ignore,
        )

    def _stage_values(self, space_id: str, info: ComputationInfo, values: dict[str, Any]) -> int:
        """Stage the profiles whose value differs from the one they hold; how many."""
        audience = info.kind == "audience"
        held = _held(self._engine, space_id, info)
        staged = []
        for profile_id in held.keys() | values.keys():
            after = values.get(profile_id)
            before = held.get(profile_id)
            if audience:
                if bool(after) == bool(before):
                    continue
                after = bool(after)
            elif after == before and type(after) is type(before):
                continue
            staged.append(_staged(space_id, profile_id, "value", info.id, after))
        _insert(self._engine, staged)
        return len(staged)

    # --- real-time definitions: history ---------------------------------------------------------

    def _seed(
        self,
        space: SpaceInfo,
        tables: Tables | None,
        computations: Sequence[ComputationInfo],
        now: int,
    ) -> int:
        """Seed the space's vectors that began after the warehouse's last load."""
        table = schema.engage_vectors
        with self._engine.connect() as conn:
            waiting = conn.execute(
                sa.select(table.c.key_hash, table.c.key, table.c.since).where(
                    table.c.space_id == space.id,
                    table.c.since.is_not(None),
                    table.c.seeded_at.is_(None),
                )
            ).all()
        realtime = [c for c in computations if c.mode == "realtime"]
        if not waiting:
            self._live(realtime, space.id)
            return 0
        if tables is None:  # no history to read: they count from their start on
            with write_transaction(self._engine) as conn:
                conn.execute(
                    table.update()
                    .where(table.c.space_id == space.id, table.c.seeded_at.is_(None))
                    .values(seeded_at=now)
                )
            self._live(realtime, space.id)
            return 0
        plan = Plan(c.computation() for c in realtime)
        vectors = plan.vectors()
        done = 0
        for key_hash, key, since in waiting:
            if tables.loaded_at is None or tables.loaded_at < since + SEED_MARGIN:
                # the warehouse has not loaded everything received before ``since``
                if now >= since + SEED_MARGIN:
                    tables.request_sync(since + SEED_MARGIN, now)
                continue
            found = vectors.get(key)
            staged = []
            if found is not None:
                reduce, family, keep, folds = found
                sql = batch.compile_buckets(
                    reduce,
                    family=family,
                    keep=keep,
                    folds=folds,
                    received_before=float(since),
                    dialect=tables.dialect,
                    schema=tables.schema,
                    naming=tables.naming,
                    columns=tables.columns(),
                    now=float(self._clock()),
                    ignore_sources=[space.engage_source_id] if space.engage_source_id else [],
                )
                seeded = batch.buckets(tables.rows(sql), family)
                staged = [
                    _staged(space.id, profile_id, "buckets", key, buckets)
                    for profile_id, buckets in seeded.items()
                ]
            _insert(self._engine, staged)
            with write_transaction(self._engine) as conn:
                conn.execute(
                    table.update()
                    .where(table.c.space_id == space.id, table.c.key_hash == key_hash)
                    .values(seeded_at=now)
                )
            done += 1
        self._live(realtime, space.id)
        return done

    def _live(self, realtime: Sequence[ComputationInfo], space_id: str) -> None:
        """Real-time computations whose vectors are all seeded are Live."""
        preparing = [c for c in realtime if c.status != LIVE]
        if not preparing:
            return
        table = schema.engage_vectors
        with self._engine.connect() as conn:
            unseeded = set(
                conn.execute(
                    sa.select(table.c.key).where(
                        table.c.space_id == space_id,
                        table.c.since.is_not(None),
                        table.c.seeded_at.is_(None),
                    )
                ).scalars()
            )
            registered = set(
                conn.execute(sa.select(table.c.key).where(table.c.space_id == space_id)).scalars()
            )
        plan = Plan(c.computation() for c in realtime)
        for info in preparing:
            keys = {k for k in plan.vectors() if info.id in {c.id for c in plan.readers(k)}}
            if keys <= registered and not keys & unseeded:
                now = int(self._clock())
                self._set(info, status=LIVE, computed_at=now)
                self._connected(info.id, now)

    # --- destinations connected later ------------------------------------------------------------

    def _backfill(
        self, space: SpaceInfo, computations: Sequence[ComputationInfo], now: int
    ) -> None:
        """A destination connected to a computation that has values gets them all (when the
        computation includes history); the computation's first values reach every destination
        connected by then."""
        table = schema.engage_connections
        by_id = {c.id: c for c in computations}
        with self._engine.connect() as conn:
            waiting = conn.execute(
                sa.select(
                    table.c.computation_id, table.c.destination_id, schema.destinations.c.name
                )
                .join(schema.destinations, schema.destinations.c.id == table.c.destination_id)
                .where(table.c.computation_id.in_(list(by_id)), table.c.synced_at.is_(None))
            ).all()
        for computation_id, destination_id, name in waiting:
            info = by_id[computation_id]
            if info.status != LIVE:
                continue  # its first values are still to come, and go to every destination
            if info.include_historical:
                held = _held(self._engine, space.id, info)
                _insert(
                    self._engine,
                    [
                        _staged(space.id, p, "resend", info.id, v, destination=name)
                        for p, v in held.items()
                        if v is not None and v is not False
                    ],
                )
            with write_transaction(self._engine) as conn:
                conn.execute(
                    table.update()
                    .where(
                        table.c.computation_id == computation_id,
                        table.c.destination_id == destination_id,
                    )
                    .values(synced_at=now)
                )

    # --- records --------------------------------------------------------------------------------

    def _connected(self, computation_id: str, now: int) -> None:
        """The computation's first values reach the destinations connected now: none of
        them needs a backfill of its own."""
        table = schema.engage_connections
        with write_transaction(self._engine) as conn:
            conn.execute(
                table.update()
                .where(table.c.computation_id == computation_id, table.c.synced_at.is_(None))
                .values(synced_at=now)
            )

    def _set(self, info: ComputationInfo, **values: Any) -> None:
        status = values.pop("status", None)
        error = values.pop("error", ...)
        computed_at = values.pop("computed_at", None)
        with write_transaction(self._engine) as conn:
            if status is not None or computed_at is not None:
                c = schema.engage_computations
                changes: dict[str, Any] = {}
                if status is not None:
                    changes["status"] = status
                if computed_at is not None:
                    changes["computed_at"] = computed_at
                conn.execute(c.update().where(c.c.id == info.id).values(**changes))
            if error is not ... or values:
                b = schema.engage_batch
                extra = {**values, **({} if error is ... else {"last_error": error})}
                conn.execute(b.update().where(b.c.computation_id == info.id).values(**extra))

    def _release(self, info: ComputationInfo, **values: Any) -> None:
        values.setdefault("attempts", 0)
        self._set(info, lease_owner=None, lease_expires_at=None, **values)

    def _require_tables(self, space: SpaceInfo) -> Tables:
        tables = self._tables(space)
        if tables is None:
            raise InvalidError(NO_PROFILES_SYNC.format(space=space.name), "space")
        return tables


def _fingerprint(info: ComputationInfo) -> str:
    """What a run computed: an edit of the definition makes the computation due."""
    text = f"{info.level}\x1f{info.definition}\x1f{info.include_anonymous}"
    return hashlib.sha256(text.encode()).hexdigest()


def _held(engine: Engine, space_id: str, info: ComputationInfo) -> dict[str, Any]:
    """The values profiles hold now (the trait Engage writes for the computation)."""
    t = schema.unify_profile_traits
    trait_class = "audience" if info.kind == "audience" else "computed_trait"
    with engine.connect() as conn:
        return {
            profile_id: value
            for profile_id, value in conn.execute(
                sa.select(t.c.profile_id, t.c.value).where(
                    t.c.space_id == space_id,
                    t.c.key == info.key,
                    t.c.trait_class == trait_class,
                    t.c.present.is_(True),
                )
            )
        }


def _accounts(engine: Engine, space_id: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """Values by ``group_id`` as values by the accounts' profiles (a group id the graph
    does not know yet has no profile to hold a value)."""
    p, i = schema.unify_profiles, schema.unify_identities
    canonical = p.alias("c")
    found: dict[str, Any] = {}
    ids = list(values)
    with engine.connect() as conn:
        for start in range(0, len(ids), 500):
            rows = conn.execute(
                sa.select(i.c.value, sa.func.coalesce(canonical.c.segment_id, p.c.segment_id))
                .join(p, p.c.seq == i.c.profile)
                .outerjoin(canonical, canonical.c.seq == p.c.canonical)
                .where(
                    i.c.space_id == space_id,
                    i.c.collection == "accounts",
                    i.c.type == "group_id",
                    i.c.value.in_(ids[start : start + 500]),
                )
            )
            for group_id, profile_id in rows:
                found[profile_id] = values[group_id]
    return found


def _staged(
    space_id: str,
    profile_id: str,
    kind: str,
    target: str,
    body: Any,
    destination: str | None = None,
) -> dict[str, Any]:
    return {
        "space_id": space_id,
        "profile_id": profile_id,
        "kind": kind,
        "target": target,
        "destination": destination,
        "body": _encode(body),
    }


def _insert(engine: Engine, rows: Sequence[dict[str, Any]]) -> None:
    for start in range(0, len(rows), STAGE_ROWS):
        with write_transaction(engine) as conn:
            conn.execute(schema.engage_batch_staged.insert(), rows[start : start + STAGE_ROWS])


def key_hash(key: str) -> str:
    return hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()


def register_vectors(
    conn: DbConnection, space_id: str, plan: Plan, now: float, *, history: bool
) -> dict[str, float | None]:
    """The plan's vectors and when each began counting in real time: vectors new to the
    space begin now and wait for a seed when a reader includes history and there is
    ``history`` to read (the space's Profiles Sync); vectors no longer planned are forgotten
    (their buckets go with the next prune)."""
    table = schema.engage_vectors
    known = {
        row.key: row
        for row in conn.execute(
            sa.select(table.c.key, table.c.since).where(table.c.space_id == space_id)
        )
    }
    vectors = plan.vectors()
    since: dict[str, float | None] = {}
    new = []
    for key in vectors:
        row = known.get(key)
        if row is not None:
            since[key] = float(row.since) if row.since is not None else None
            continue
        wanted = history and any(c.include_historical for c in plan.readers(key))
        # The next whole second: events received until then and resolved before now are
        # the seed's, and so are those received before it but resolved after (skipped here).
        start = int(now) + 1 if wanted else None
        since[key] = float(start) if start is not None else None
        new.append({"space_id": space_id, "key_hash": key_hash(key), "key": key, "since": start})
    if new:
        conn.execute(table.insert(), new)
    gone = [key_hash(k) for k in known if k not in vectors]
    for start in range(0, len(gone), 500):
        conn.execute(
            table.delete().where(
                table.c.space_id == space_id, table.c.key_hash.in_(gone[start : start + 500])
            )
        )
    return since


def staged(
    conn: DbConnection, space_id: str, limit: int
) -> list[tuple[int, str, str, str, str | None, Any]]:
    """The oldest staged results of a space: (seq, profile, kind, target, destination, body)."""
    table = schema.engage_batch_staged
    decode = msgspec.msgpack.decode
    return [
        (r.seq, r.profile_id, r.kind, r.target, r.destination, decode(r.body))
        for r in conn.execute(
            sa.select(table).where(table.c.space_id == space_id).order_by(table.c.seq).limit(limit)
        )
    ]


def applied(conn: DbConnection, space_id: str, seqs: Iterable[int]) -> None:
    table = schema.engage_batch_staged
    seqs = list(seqs)
    for start in range(0, len(seqs), 500):
        conn.execute(
            table.delete().where(
                table.c.space_id == space_id, table.c.seq.in_(seqs[start : start + 500])
            )
        )
