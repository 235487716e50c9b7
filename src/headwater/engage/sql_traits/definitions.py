"""SQL traits as they are defined: a space's, found by id, key or name, written by ``headwater
apply`` and the REST API through ``SqlTraitStore`` so both doors keep the same rules.

- The key is the snake_cased name (the rule of audiences and computed traits) unless one is
  given, and never changes: a rename keeps it. An identifier column's name is no key.
  It is unique in the space for ever, among SQL traits, audiences and computed traits
  (``engage_computations``), deleted ones included (§13.9: a key is never given again).
- The warehouse and the level (users or accounts) are fixed at creation (§6: "the warehouse
  source of a trait can't be changed later"); the name, the query and the schedule change.
  Edits apply at the next run.
- At most ``MAX_PER_SPACE`` (25) SQL traits per space (§19.2).
- A new trait is due at once: creating one runs it (its initial sync); then every
  ``every_hours`` hours (default 12: Segment's twice a day; at least 1: "up to once per hour").
- Deleting a trait keeps its row (the key) and drops its values and runs; profiles keep the
  values they got, as custom traits (§5.4).
"""

from __future__ import annotations

import builtins
import re
import secrets
from dataclasses import dataclass
from typing import Any, Final, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Row

from headwater.engage.computations import computation_key
from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.store import schema
from headwater.store.workspace import (
    BASE62,
    UNSET,
    Unset,
    WorkspaceStore,
    check_name,
    check_slug,
    is_unicode,
)

ID_PREFIX: Final = "tra_"
ID_LENGTH: Final = 20
MAX_PER_SPACE: Final = 25
MAX_QUERY_LENGTH: Final = 100_000
DEFAULT_EVERY_HOURS: Final = 12  # "twice a day by default"
MAX_EVERY_HOURS: Final = 24 * 7
LEVELS: Final = ("users", "accounts")
# A trait named like an identifier column would overwrite the identifier (§6).
IDENTIFIER_COLUMNS: Final = frozenset({"user_id", "anonymous_id", "email", "group_id"})
QUERYABLE_WAREHOUSES: Final = frozenset({"duckdb", "postgres"})

Level = Literal["users", "accounts"]
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")  # tabs and newlines are SQL


@dataclass(frozen=True)
class SqlTrait:
    id: str
    space_id: str
    key: str
    name: str
    warehouse_id: str
    query: str
    level: Level
    every_hours: int
    status: str  # pending (never ran), success, failure
    last_error: str | None
    last_run_at: int | None
    next_run_at: int | None
    requested_at: int | None
    created_at: int
    updated_at: int


@dataclass(frozen=True)
class Run:
    id: int
    trait_id: str
    trigger: str  # schedule, manual
    status: str  # running, success, failure
    started_at: int
    finished_at: int | None
    rows: int
    changed: int
    nulled: int
    discarded: int
    error: str | None


# --- values ----------------------------------------------------------------------------------


def new_trait_id() -> str:
    return ID_PREFIX + "".join(secrets.choice(BASE62) for _ in range(ID_LENGTH))


def key_of(name: str) -> str:
    """The key a name gives, as an audience's or a computed trait's (snake_case)."""
    return computation_key(name)


def check_key(key: object, field: str = "key") -> str:
    checked = check_slug(key, field)
    if checked in IDENTIFIER_COLUMNS:
        raise InvalidError(
            f"{checked!r} is an identifier column's name; a trait of that name would overwrite "
            "the identifier: choose another",
            field,
        )
    return checked


def check_query(query: object, field: str = "query") -> str:
    if not isinstance(query, str):
        raise InvalidError("must be a string", field)
    if not query.strip():
        raise InvalidError("must not be empty", field)
    if _CONTROL.search(query) or not is_unicode(query):
        raise InvalidError("must be text without control characters", field)
    if len(query) > MAX_QUERY_LENGTH:
        raise InvalidError(f"must be at most {MAX_QUERY_LENGTH:,} characters", field)
    return query


def check_level(level: object, field: str = "level") -> Level:
    if level == "users" or level == "accounts":
        return level
    raise InvalidError("must be users or accounts", field)


def check_every_hours(hours: object, field: str = "schedule.every_hours") -> int:
    if isinstance(hours, bool) or not isinstance(hours, int):
        raise InvalidError("must be a whole number of hours", field)
    if not 1 <= hours <= MAX_EVERY_HOURS:
        raise InvalidError(
            f"must be 1 to {MAX_EVERY_HOURS} hours (SQL traits run at most once an hour)", field
        )
    return hours


# --- the store -------------------------------------------------------------------------------


class SqlTraitStore:
    """A workspace's SQL traits, on the workspace store's transactions."""

    def __init__(self, workspace: WorkspaceStore) -> None:
        self._ws = workspace

    @property
    def workspace(self) -> WorkspaceStore:
        return self._ws

    # --- reading -----------------------------------------------------------------------------

    def list(self, space: str) -> builtins.list[SqlTrait]:
        """The space's SQL traits, by name."""
        t = schema.engage_sql_traits
        with self._ws.reading() as conn:
            space_id = self._space(conn, space).id
            return [
                trait_of(row)
                for row in conn.execute(
                    sa.select(t)
                    .where(t.c.space_id == space_id, t.c.deleted_at.is_(None))
                    .order_by(t.c.name)
                )
            ]

    def every(self) -> builtins.list[SqlTrait]:
        """Every space's SQL traits (``export``)."""
        t = schema.engage_sql_traits
        with self._ws.reading() as conn:
            rows = conn.execute(
                sa.select(t).where(t.c.deleted_at.is_(None)).order_by(t.c.space_id, t.c.name)
            )
            return [trait_of(row) for row in rows]

    def require(self, space: str, id_or_name: str) -> SqlTrait:
        with self._ws.reading() as conn:
            return trait_of(self._require(conn, space, id_or_name))

    def space_id(self, space: str) -> str:
        """The id of a space given by id or name."""
        with self._ws.reading() as conn:
            return str(self._space(conn, space).id)

    def warehouse_id(self, warehouse: str) -> str:
        """The id of a warehouse given by id or name, one a SQL trait can query."""
        with self._ws.reading() as conn:
            return str(self._warehouse(conn, warehouse).id)

    def runs(self, space: str, id_or_name: str) -> builtins.list[Run]:
        """The trait's last runs, newest first."""
        r = schema.engage_sql_trait_runs
        with self._ws.reading() as conn:
            row = self._require(conn, space, id_or_name)
            return [
                _run(run)
                for run in conn.execute(
                    sa.select(r).where(r.c.trait_id == row.id).order_by(r.c.id.desc())
                )
            ]

    # --- writing -----------------------------------------------------------------------------

    def create(
        self,
        space: str,
        name: str,
        *,
        warehouse: str,
        query: str,
        level: str = "users",
        every_hours: int = DEFAULT_EVERY_HOURS,
        key: str | None = None,
    ) -> SqlTrait:
        check_name(name)
        check_query(query)
        chosen_level = check_level(level)
        check_every_hours(every_hours)
        chosen_key = check_key(key) if key is not None else check_key(key_of(name), "name")
        t = schema.engage_sql_traits
        with self._ws.writing() as conn:
            space_row = self._space(conn, space)
            warehouse_row = self._warehouse(conn, warehouse)
            self._check_name_free(conn, space_row.id, name)
            self._check_key_free(conn, space_row.id, chosen_key)
            count = conn.execute(
                sa.select(sa.func.count())
                .select_from(t)
                .where(t.c.space_id == space_row.id, t.c.deleted_at.is_(None))
            ).scalar_one()
            if count >= MAX_PER_SPACE:
                raise ConflictError(
                    f"space {space_row.name!r} has {MAX_PER_SPACE} SQL traits, the most a space "
                    "may have; delete one first"
                )
            now = self._ws.now()
            trait_id = new_trait_id()
            conn.execute(
                t.insert().values(
                    id=trait_id,
                    space_id=space_row.id,
                    key=chosen_key,
                    name=name,
                    warehouse_id=warehouse_row.id,
                    query=query,
                    level=chosen_level,
                    every_hours=every_hours,
                    status="pending",
                    next_run_at=now,  # the initial sync
                    created_at=now,
                    updated_at=now,
                )
            )
            self._ws.bump(conn)
            return trait_of(self._require(conn, space_row.id, trait_id))

    def update(
        self,
        space: str,
        id_or_name: str,
        *,
        name: str | Unset = UNSET,
        query: str | Unset = UNSET,
        every_hours: int | Unset = UNSET,
    ) -> SqlTrait:
        """Change what is given; the next run uses it. A new schedule counts from the last
        run (from now, for a trait that never ran)."""
        t = schema.engage_sql_traits
        with self._ws.writing() as conn:
            row = self._require(conn, space, id_or_name)
            values: dict[str, Any] = {}
            if not isinstance(name, Unset) and name != row.name:
                check_name(name)
                self._check_name_free(conn, row.space_id, name)
                values["name"] = name
            if not isinstance(query, Unset) and query != row.query:
                values["query"] = check_query(query)
            if not isinstance(every_hours, Unset) and every_hours != row.every_hours:
                values["every_hours"] = check_every_hours(every_hours)
                if row.last_run_at is not None:
                    values["next_run_at"] = row.last_run_at + every_hours * 3600
            if values:
                values["updated_at"] = self._ws.now()
                conn.execute(t.update().where(t.c.id == row.id).values(**values))
                self._ws.bump(conn)
            return trait_of(self._require(conn, row.space_id, row.id))

    def delete(self, space: str, id_or_name: str) -> None:
        """Delete the trait: its key stays taken; its values and run history go."""
        t = schema.engage_sql_traits
        with self._ws.writing() as conn:
            row = self._require(conn, space, id_or_name)
            for table in (schema.engage_sql_trait_values, schema.engage_sql_trait_runs):
                conn.execute(table.delete().where(table.c.trait_id == row.id))
            now = self._ws.now()
            conn.execute(
                t.update()
                .where(t.c.id == row.id)
                .values(deleted_at=now, updated_at=now, next_run_at=None, requested_at=None)
            )
            self._ws.bump(conn)

    def request_run(self, space: str, id_or_name: str) -> SqlTrait:
        """Ask for a run now: the worker's scheduler takes it up within seconds."""
        t = schema.engage_sql_traits
        with self._ws.writing() as conn:
            row = self._require(conn, space, id_or_name)
            if row.requested_at is None:
                conn.execute(t.update().where(t.c.id == row.id).values(requested_at=self._ws.now()))
            return trait_of(self._require(conn, row.space_id, row.id))

    # --- internals ---------------------------------------------------------------------------

    def _space(self, conn: Connection, reference: str) -> Row[Any]:
        sp = schema.spaces
        row = None
        if _usable(reference):
            row = conn.execute(sa.select(sp).where(sp.c.id == reference)).first()
            if row is None:
                row = conn.execute(
                    sa.select(sp).where(
                        sp.c.workspace_id == self._ws.workspace_id(conn), sp.c.name == reference
                    )
                ).first()
        if row is None:
            raise NotFoundError(f"no space has the id or name {reference!r}")
        return row

    def _require(self, conn: Connection, space: str, id_or_name: str) -> Row[Any]:
        space_row = self._space(conn, space)
        t = schema.engage_sql_traits
        row = None
        if _usable(id_or_name):
            live = sa.and_(t.c.space_id == space_row.id, t.c.deleted_at.is_(None))
            for column in (t.c.id, t.c.key, t.c.name):
                row = conn.execute(sa.select(t).where(live, column == id_or_name)).first()
                if row is not None:
                    break
        if row is None:
            raise NotFoundError(
                f"space {space_row.name!r} has no SQL trait with the id, key or name {id_or_name!r}"
            )
        return row

    def _warehouse(self, conn: Connection, reference: str) -> Row[Any]:
        wh = schema.warehouses
        row = None
        if _usable(reference):
            row = conn.execute(sa.select(wh).where(wh.c.id == reference)).first()
            if row is None:
                row = conn.execute(
                    sa.select(wh).where(
                        wh.c.workspace_id == self._ws.workspace_id(conn), wh.c.name == reference
                    )
                ).first()
        if row is None:
            raise NotFoundError(f"no warehouse has the id or name {reference!r}", "warehouse")
        if row.type not in QUERYABLE_WAREHOUSES:
            raise InvalidError(
                f"warehouse {row.name!r} is a {row.type}: SQL traits query a DuckDB or "
                "PostgreSQL warehouse",
                "warehouse",
            )
        return row

    def _check_name_free(self, conn: Connection, space_id: str, name: str) -> None:
        t = schema.engage_sql_traits
        clash = conn.execute(
            sa.select(t.c.id).where(
                t.c.space_id == space_id, t.c.name == name, t.c.deleted_at.is_(None)
            )
        ).first()
        if clash is not None:
            raise ConflictError(f"another SQL trait of the space is named {name!r}", "name")

    def _check_key_free(self, conn: Connection, space_id: str, key: str) -> None:
        t, c = schema.engage_sql_traits, schema.engage_computations
        trait = conn.execute(
            sa.select(t.c.deleted_at).where(t.c.space_id == space_id, t.c.key == key)
        ).first()
        computation = conn.execute(
            sa.select(c.c.kind).where(c.c.space_id == space_id, c.c.key == key)
        ).first()
        if trait is None and computation is None:
            return
        if trait is not None and trait.deleted_at is None:
            what = "another SQL trait of the space has"
        elif trait is not None:
            what = "a deleted SQL trait had"
        else:
            assert computation is not None
            what = f"{'an audience' if computation.kind == 'audience' else 'a computed trait'} has"
        raise ConflictError(
            f"{what} the key {key!r}, and a key is never used twice in a space: give this "
            "trait another name, or a key of its own",
            "key",
        )


def _usable(reference: object) -> bool:
    """Whether a reference can even be looked up (PostgreSQL refuses NUL and non-Unicode)."""
    return (
        isinstance(reference, str)
        and is_unicode(reference)
        and "\x00" not in reference
        and len(reference) <= 1000
    )


def trait_of(row: Row[Any]) -> SqlTrait:
    """A trait from its row."""
    return SqlTrait(
        id=row.id,
        space_id=row.space_id,
        key=row.key,
        name=row.name,
        warehouse_id=row.warehouse_id,
        query=row.query,
        level=check_level(row.level),
        every_hours=row.every_hours,
        status=row.status,
        last_error=row.last_error,
        last_run_at=row.last_run_at,
        next_run_at=row.next_run_at,
        requested_at=row.requested_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _run(row: Row[Any]) -> Run:
    return Run(
        id=row.id,
        trait_id=row.trait_id,
        trigger=row.trigger,
        status=row.status,
        started_at=row.started_at,
        finished_at=row.finished_at,
        rows=row.rows,
        changed=row.changed,
        nulled=row.nulled,
        discarded=row.discarded,
        error=row.error,
    )
