"""A space's audiences and computed traits in the state database, with Segment's rules.

``headwater apply`` and the REST API both write through ``ComputationStore``:

- a key is the snake_cased name (``Order Completed Last 30days`` → ``order_completed_last_30days``),
  set at creation and never changed or given again in the space, even after a deletion (§13.9);
- a definition is Segment Query Language text or the builder's JSON shape, parsed and checked
  before anything is stored (a ``DefinitionError`` names the part and its position);
- an audience may not reach itself through the keys it reads: "The audience would create a
  cycle by referencing another audience" (A-UE-43);
- real-time or batch follows from the definition (§13.6) and cannot change by an edit, nor can
  "include anonymous users";
- deleting leaves each profile's last value as a custom trait (A-UE-45);
- destinations are instances on the space's Engage source (§14.1), at most one connection per
  instance.

Every change bumps the workspace's config version, which is how the worker's engine learns of it.
"""

from __future__ import annotations

import builtins
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.engine import Row

from headwater.destinations import registry
from headwater.engage.activation import (
    ENTERED,
    EXITED,
    MAX_ALL,
    STRATEGIES,
    TRAIT_COMPUTED,
    Connection,
    IdSync,
)
from headwater.engage.builder import from_builder
from headwater.engage.definition import Definition, Kind, TraitRef
from headwater.engage.language import parse, to_text
from headwater.engage.realtime import Computation, realtime_reason
from headwater.errors import ConflictError, HeadwaterError, InvalidError, NotFoundError
from headwater.store import schema
from headwater.store.config_snapshot import ConfigSnapshot
from headwater.store.workspace import BASE62, WorkspaceStore
from headwater.unify.spaces import SpaceStore

Purpose = Literal["audience", "trait"]
PREFIX = {"audience": "aud_", "trait": "tra_"}
ID_LENGTH = 22
MAX_KEY = 255
# Segment's plan quotas (§19.1): 100 audiences, 50 computed traits per space.
LIMITS = {"audience": 100, "trait": 50}
# §13.8's statuses. A real-time computation without history is Live from its creation on;
# one with history, and a batch one, is Preparing until the batch engine has run it
# (headwater.engage.batch_runs).
PREPARING, COMPUTING, LIVE = "Preparing", "Computing", "Live"
NOT_COMPUTING, FAILED = "Not Computing", "Failed"


@dataclass(frozen=True)
class Destination:
    """How one computation is sent to one destination instance (§14.3's event names)."""

    destination_id: str
    destination: str  # the instance's name
    send_identify: bool = True
    send_track: bool = False
    entered_event: str = ENTERED
    exited_event: str = EXITED
    trait_event: str = TRAIT_COMPUTED
    # Trait Activation (§14.6): [{identifier, field, strategy}], [{trait, field}]
    id_sync: tuple[dict[str, str], ...] = ()
    trait_enrichment: tuple[dict[str, str], ...] = ()
    # A list destination's audience settings (its definition's ``audienceFields``)
    audience_settings: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ExternalAudience:
    """A list destination's audience (§14.1): made once through the definition's
    ``createAudience`` hook when the audience is connected. ``external_id`` is None until that
    worked; ``error`` is the last failure, tried again from ``retry_at`` (seconds)."""

    destination_id: str
    external_id: str | None
    error: str | None = None
    retry_at: int | None = None


@dataclass(frozen=True)
class ComputationInfo:
    id: str
    space_id: str
    kind: Purpose
    key: str
    name: str
    level: Kind
    definition: str  # Segment Query Language (the builder's shape, printed)
    mode: Literal["realtime", "batch"]
    status: str
    include_anonymous: bool
    include_historical: bool
    description: str
    created_at: int
    updated_at: int
    destinations: tuple[Destination, ...] = field(default=())
    status_detail: str | None = None  # why it is Failed or Not Computing, and what to do
    external_audiences: tuple[ExternalAudience, ...] = field(default=())

    def computation(self) -> Computation:
        """As the engine takes it."""
        tree = parse(self.definition, kind=self.level, purpose=self.kind)
        return Computation(
            self.id, self.key, self.kind, tree, self.include_anonymous, self.include_historical
        )


def computation_key(name: str) -> str:
    """Segment's key for a name: lower case, runs of anything else than letters and digits
    as one ``_`` (``Order Completed Last 30days`` → ``order_completed_last_30days``)."""
    key = re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")
    if not key:
        raise InvalidError(f"{name!r} gives an empty key; use letters or digits", "name")
    if len(key) > MAX_KEY:
        raise InvalidError(f"the key would be longer than {MAX_KEY} characters", "name")
    return key


def definition_of(written: str | Mapping[str, Any], *, kind: Kind, purpose: Purpose) -> Definition:
    """A definition from Segment Query Language text or the builder's JSON shape."""
    _check_text(written, "definition")
    if isinstance(written, str):
        return parse(written, kind=kind, purpose=purpose)
    if isinstance(written, Mapping):
        return from_builder(written, kind=kind, purpose=purpose)
    raise InvalidError("must be Segment Query Language text or the builder's shape", "definition")


class ComputationStore:
    def __init__(self, workspace: WorkspaceStore) -> None:
        self._ws = workspace
        self._spaces = SpaceStore(workspace)

    # --- reads --------------------------------------------------------------------------------

    def list(self, space: str, kind: Purpose | None = None) -> builtins.list[ComputationInfo]:
        """The space's computations (not deleted), by name."""
        space_id = self._spaces.require(space).id
        table = schema.engage_computations
        with self._ws.reading() as conn:
            query = sa.select(table).where(
                table.c.space_id == space_id, table.c.deleted_at.is_(None)
            )
            if kind is not None:
                query = query.where(table.c.kind == kind)
            return self._infos(conn, conn.execute(query.order_by(table.c.name)).all())

    def get(self, space: str, id_or_key: str, kind: Purpose | None = None) -> ComputationInfo:
        space_id = self._spaces.require(space).id
        with self._ws.reading() as conn:
            return self._infos(conn, [self._require(conn, space_id, id_or_key, kind)])[0]

    def every(self) -> builtins.list[ComputationInfo]:
        """Every space's computations: what the engine plans."""
        table = schema.engage_computations
        with self._ws.reading() as conn:
            rows = conn.execute(
                sa.select(table).where(table.c.deleted_at.is_(None)).order_by(table.c.id)
            ).all()
            return self._infos(conn, rows)

    # --- writes ---------------------------------------------------------------------------------

    def create(
        self,
        space: str,
        kind: Purpose,
        name: str,
        definition: str | Mapping[str, Any],
        *,
        level: Kind = "users",
        include_anonymous: bool = False,
        include_historical: bool = True,
        description: str = "",
        destinations: Sequence[Mapping[str, Any]] = (),
    ) -> ComputationInfo:
        if kind not in PREFIX:
            raise InvalidError("must be audience or trait", "kind")
        if level not in ("users", "accounts"):
            raise InvalidError("must be users or accounts", "level")
        _check_name(name)
        _check_text(description, "description")
        _check_text(destinations, "destinations")
        key = computation_key(name)
        tree = definition_of(definition, kind=level, purpose=kind)
        info = self._spaces.require(space)
        table = schema.engage_computations
        with self._ws.writing() as conn:
            sql = schema.engage_sql_traits  # deleted ones too: keys are never reused
            taken = conn.execute(
                sa.union_all(
                    sa.select(table.c.id).where(table.c.space_id == info.id, table.c.key == key),
                    sa.select(sql.c.id).where(sql.c.space_id == info.id, sql.c.key == key),
                )
            ).first()
            if taken is not None:
                raise ConflictError(
                    f"the key {key!r} is taken in this space (keys are never reused, even "
                    "after a deletion); choose another name",
                    "name",
                )
            count = conn.execute(
                sa.select(sa.func.count())
                .select_from(table)
                .where(
                    table.c.space_id == info.id,
                    table.c.kind == kind,
                    table.c.deleted_at.is_(None),
                )
            ).scalar_one()
            if count >= LIMITS[kind]:
                raise ConflictError(
                    f"a space has at most {LIMITS[kind]} "
                    f"{'audiences' if kind == 'audience' else 'computed traits'}",
                    "name",
                )
            self._check_cycle(conn, info.id, key, tree)
            mode = "realtime" if realtime_reason(tree) is None else "batch"
            computation_id = PREFIX[kind] + "".join(
                secrets.choice(BASE62) for _ in range(ID_LENGTH)
            )
            now = self._ws.now()
            conn.execute(
                table.insert().values(
                    id=computation_id,
                    space_id=info.id,
                    kind=kind,
                    key=key,
                    name=name,
                    level=level,
                    definition=tree.text or to_text(tree),
                    mode=mode,
                    status=LIVE if mode == "realtime" and not include_historical else PREPARING,
                    options={
                        "include_anonymous": bool(include_anonymous),
                        "include_historical": bool(include_historical),
                        "description": str(description),
                    },
                    created_at=now,
                    updated_at=now,
                )
            )
            self._set_destinations(conn, info.id, computation_id, kind, destinations)
            self._ws.bump(conn)
            return self._infos(conn, [self._require(conn, info.id, computation_id)])[0]

    def update(
        self,
        space: str,
        id_or_key: str,
        *,
        name: str | None = None,
        definition: str | Mapping[str, Any] | None = None,
        include_anonymous: bool | None = None,
        include_historical: bool | None = None,
        description: str | None = None,
        destinations: Sequence[Mapping[str, Any]] | None = None,
    ) -> ComputationInfo:
        """Change what is given; the key never changes (a rename keeps it)."""
        info = self._spaces.require(space)
        table = schema.engage_computations
        with self._ws.writing() as conn:
            row = self._require(conn, info.id, id_or_key)
            _check_text(description, "description")
            _check_text(destinations, "destinations")
            values: dict[str, Any] = {}
            options = dict(row.options or {})
            if name is not None and name != row.name:
                _check_name(name)
                values["name"] = name
            if definition is not None:
                tree = definition_of(definition, kind=row.level, purpose=row.kind)
                mode = "realtime" if realtime_reason(tree) is None else "batch"
                if mode != row.mode:
                    raise InvalidError(
                        f"this edit would make a {row.mode} computation {mode}; Segment cannot "
                        "convert between real-time and batch by editing: create a new one",
                        "definition",
                    )
                self._check_cycle(conn, info.id, row.key, tree)
                text = tree.text or to_text(tree)
                if text != row.definition:
                    values["definition"] = text
            if include_anonymous is not None and bool(include_anonymous) != bool(
                options.get("include_anonymous")
            ):
                raise InvalidError(
                    "include anonymous users cannot be changed on an existing audience "
                    "(Segment §13.3): create a new one",
                    "include_anonymous",
                )
            for option, given in (
                ("include_historical", include_historical),
                ("description", description),
            ):
                if given is not None and options.get(option) != given:
                    options[option] = given
                    values["options"] = options
            changed = bool(values)
            if destinations is not None:
                changed |= self._set_destinations(conn, info.id, row.id, row.kind, destinations)
            if changed:
                values["updated_at"] = self._ws.now()
                conn.execute(table.update().where(table.c.id == row.id).values(**values))
                self._ws.bump(conn)
            return self._infos(conn, [self._require(conn, info.id, row.id)])[0]

    def delete(self, space: str, id_or_key: str) -> None:
        """Delete: the key stays taken, and each profile keeps the last value as a custom
        trait (A-UE-45). Refused while another computation reads the key."""
        info = self._spaces.require(space)
        table = schema.engage_computations
        with self._ws.writing() as conn:
            row = self._require(conn, info.id, id_or_key)
            readers = [
                other.name
                for other in self._live(conn, info.id)
                if other.id != row.id and row.key in _keys_read(_tree(other))
            ]
            if readers:
                names = ", ".join(repr(r) for r in sorted(readers))
                one = len(readers) == 1
                raise ConflictError(
                    f"{names} read{'s' if one else ''} {row.key!r}: change or delete "
                    f"{'it' if one else 'them'} first",
                    "key",
                )
            now = self._ws.now()
            conn.execute(
                table.update().where(table.c.id == row.id).values(deleted_at=now, updated_at=now)
            )
            conn.execute(
                schema.engage_connections.delete().where(
                    schema.engage_connections.c.computation_id == row.id
                )
            )
            # What the batch engine had for it goes with it.
            batch, staged = schema.engage_batch, schema.engage_batch_staged
            conn.execute(batch.delete().where(batch.c.computation_id == row.id))
            conn.execute(
                staged.delete().where(staged.c.space_id == info.id, staged.c.target == row.id)
            )
            traits = schema.unify_profile_traits
            conn.execute(
                traits.update()
                .where(traits.c.space_id == info.id, traits.c.key == row.key)
                .values(trait_class="custom")
            )
            self._ws.bump(conn)

    # --- internals ----------------------------------------------------------------------------

    def _check_cycle(self, conn: DbConnection, space_id: str, key: str, tree: Definition) -> None:
        """A-UE-43: the new definition may not reach ``key`` through the keys it reads."""
        reads = {r.key: _keys_read(_tree(r)) for r in self._live(conn, space_id)}
        reads[key] = _keys_read(tree)
        stack, seen = list(reads[key]), set()
        while stack:
            current = stack.pop()
            if current == key:
                raise InvalidError(
                    "The audience would create a cycle by referencing another audience",
                    "definition",
                )
            if current in seen:
                continue
            seen.add(current)
            stack += reads.get(current, ())

    def _set_destinations(
        self,
        conn: DbConnection,
        space_id: str,
        computation_id: str,
        kind: Purpose,
        destinations: Sequence[Mapping[str, Any]],
    ) -> bool:
        """Connect exactly these destinations (instances on the space's Engage source). A
        list destination (§14.1) takes audiences only; it keeps its external audience while it
        stays connected."""
        if isinstance(destinations, str | bytes) or not isinstance(destinations, Sequence):
            raise InvalidError("must be a list", "destinations")
        source = conn.execute(
            sa.select(schema.engage_sources.c.source_id).where(
                schema.engage_sources.c.space_id == space_id
            )
        ).scalar_one_or_none()
        wanted: dict[str, dict[str, Any]] = {}
        for i, item in enumerate(destinations):
            where = f"destinations[{i}]"
            if not isinstance(item, Mapping):
                raise InvalidError("must be an object with the destination's name", where)
            ref = item.get("name") or item.get("id")
            dest = schema.destinations
            found = conn.execute(
                sa.select(dest.c.id, dest.c.source_id, dest.c.type).where(
                    sa.or_(dest.c.id == ref, dest.c.name == ref)
                )
            ).first()
            if found is None:
                raise NotFoundError(f"no destination has the id or name {ref!r}", where)
            if found.source_id != source:
                raise InvalidError(
                    f"{ref!r} is not on the space's Engage source: Engage sends only to "
                    "destinations connected to it (Segment §14.1)",
                    where,
                )
            if found.id in wanted:
                raise ConflictError(f"{ref!r} is connected twice", where)
            settings = _connection_settings(item, where)
            if creates_audiences(found.type):
                if kind != "audience":
                    raise InvalidError(
                        f"{ref!r} is a list destination ({found.type}): it takes audiences "
                        "only, not computed traits (Segment §14.1)",
                        where,
                    )
            elif "audience_settings" in settings:
                raise InvalidError(
                    f"{ref!r} ({found.type}) is not a list destination: it has no audience "
                    "settings",
                    f"{where}.audience_settings",
                )
            wanted[found.id] = settings
        table = schema.engage_connections
        current = {
            r.destination_id: dict(r.settings or {})
            for r in conn.execute(
                sa.select(table.c.destination_id, table.c.settings).where(
                    table.c.computation_id == computation_id
                )
            )
        }
        if current == wanted:
            return False
        gone = [d for d in current if d not in wanted]
        if gone:
            conn.execute(
                table.delete().where(
                    table.c.computation_id == computation_id, table.c.destination_id.in_(gone)
                )
            )
        for destination_id, settings in wanted.items():
            if destination_id in current and current[destination_id] != settings:
                conn.execute(
                    table.update()
                    .where(
                        table.c.computation_id == computation_id,
                        table.c.destination_id == destination_id,
                    )
                    .values(settings=settings)
                )
        now = self._ws.now()
        added = [d for d in wanted if d not in current]
        if added:
            conn.execute(
                table.insert(),
                [
                    {
                        "computation_id": computation_id,
                        "destination_id": destination_id,
                        "settings": wanted[destination_id],
                        "created_at": now,
                    }
                    for destination_id in added
                ],
            )
        return True

    def _live(self, conn: DbConnection, space_id: str) -> builtins.list[Row[Any]]:
        table = schema.engage_computations
        return builtins.list(
            conn.execute(
                sa.select(table).where(table.c.space_id == space_id, table.c.deleted_at.is_(None))
            ).all()
        )

    def _require(
        self, conn: DbConnection, space_id: str, id_or_key: str, kind: Purpose | None = None
    ) -> Row[Any]:
        table = schema.engage_computations
        query = sa.select(table).where(
            table.c.space_id == space_id,
            table.c.deleted_at.is_(None),
            sa.or_(table.c.id == id_or_key, table.c.key == id_or_key),
        )
        if kind is not None:
            query = query.where(table.c.kind == kind)
        row = conn.execute(query).first()
        if row is None:
            what = {"audience": "audience", "trait": "computed trait", None: "computation"}[kind]
            raise NotFoundError(f"no {what} has the id or key {id_or_key!r}")
        return row

    def _infos(
        self, conn: DbConnection, rows: Sequence[Row[Any]]
    ) -> builtins.list[ComputationInfo]:
        ids = [r.id for r in rows]
        by_computation: dict[str, builtins.list[Destination]] = {}
        lists: dict[str, builtins.list[ExternalAudience]] = {}
        if ids:
            table, dest = schema.engage_connections, schema.destinations
            for c in conn.execute(
                sa.select(
                    table.c.computation_id,
                    table.c.destination_id,
                    dest.c.name,
                    dest.c.type,
                    table.c.settings,
                    table.c.external_audience_id,
                    table.c.audience_error,
                    table.c.audience_retry_at,
                )
                .join(dest, dest.c.id == table.c.destination_id)
                .where(table.c.computation_id.in_(ids))
                .order_by(dest.c.name)
            ):
                by_computation.setdefault(c.computation_id, []).append(
                    destination_of(c.destination_id, c.name, c.settings or {})
                )
                if creates_audiences(c.type):
                    lists.setdefault(c.computation_id, []).append(
                        ExternalAudience(
                            c.destination_id,
                            c.external_audience_id,
                            c.audience_error,
                            c.audience_retry_at,
                        )
                    )
        b = schema.engage_batch
        details = (
            dict(
                conn.execute(
                    sa.select(b.c.computation_id, b.c.last_error).where(
                        b.c.computation_id.in_(ids), b.c.last_error.is_not(None)
                    )
                ).all()
            )
            if ids
            else {}
        )
        out = []
        for r in rows:
            options = r.options or {}
            out.append(
                ComputationInfo(
                    id=r.id,
                    space_id=r.space_id,
                    kind=r.kind,
                    key=r.key,
                    name=r.name,
                    level=r.level,
                    definition=r.definition,
                    mode=r.mode,
                    status=r.status,
                    include_anonymous=bool(options.get("include_anonymous")),
                    include_historical=bool(options.get("include_historical", True)),
                    description=str(options.get("description") or ""),
                    created_at=r.created_at,
                    updated_at=r.updated_at,
                    destinations=tuple(by_computation.get(r.id, ())),
                    status_detail=details.get(r.id),
                    external_audiences=tuple(lists.get(r.id, ())),
                )
            )
        return out


def destination_of(destination_id: str, name: str, settings: Mapping[str, Any]) -> Destination:
    """A connection's stored settings as a ``Destination`` (its lists as tuples)."""
    lists = {k: tuple(settings[k]) for k in _MAPPINGS if k in settings}
    return Destination(destination_id, name, **{**settings, **lists})


def creates_audiences(destination_type: str) -> bool:
    """Whether instances of this type are list destinations: an Actions definition with an
    audience hook (``audienceConfig.createAudience``)."""
    try:
        return "createAudience" in registry.get(destination_type).hooks
    except HeadwaterError:  # an unknown type, or the catalog not installed
        return False


def connections(info: ComputationInfo) -> builtins.list[Connection]:
    """A computation's destinations as activation takes them."""
    lists = {a.destination_id: a for a in info.external_audiences}
    return [
        Connection(
            d.destination,
            send_identify=d.send_identify,
            send_track=d.send_track,
            entered_event=d.entered_event,
            exited_event=d.exited_event,
            trait_event=d.trait_event,
            id_sync=tuple(
                IdSync(m["identifier"], m["field"], m.get("strategy", "last_added"))
                for m in d.id_sync
            ),
            trait_enrichment=tuple((m["trait"], m["field"]) for m in d.trait_enrichment),
            list_audience=d.destination_id in lists,
            external_audience_id=(
                lists[d.destination_id].external_id if d.destination_id in lists else None
            ),
            audience_settings=d.audience_settings,
        )
        for d in info.destinations
    ]


_SETTINGS: dict[str, type] = {
    "send_identify": bool,
    "send_track": bool,
    "entered_event": str,
    "exited_event": str,
    "trait_event": str,
    "id_sync": list,
    "trait_enrichment": list,
    "audience_settings": dict,
}
_MAPPINGS = {
    "id_sync": ("identifier", "field", "strategy"),
    "trait_enrichment": ("trait", "field"),
}


def _connection_settings(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for key, value in item.items():
        if key in ("name", "id"):
            continue
        kind = _SETTINGS.get(key)
        if kind is None:
            raise InvalidError(
                f"unknown setting {key!r}; expected one of {', '.join(_SETTINGS)}",
                f"{where}.{key}",
            )
        if key in _MAPPINGS:
            settings[key] = mappings_of(key, value, f"{where}.{key}")
            continue
        if not isinstance(value, kind) or (isinstance(value, str) and not value.strip()):
            expected = {bool: "true or false", dict: "an object"}.get(kind, "a name")
            raise InvalidError(f"must be {expected}", f"{where}.{key}")
        settings[key] = value
    if settings.get("send_identify") is False and settings.get("send_track") is not True:
        raise InvalidError("sends nothing: set send_identify or send_track", where)
    return settings


def mappings_of(key: str, value: object, where: str) -> list[dict[str, str]]:
    """Trait Activation's lists (§14.6): ID Sync's ``{identifier, field, strategy}`` (strategy
    last_added, first_added or all; at most 3 ``all``), Trait Enrichment's ``{trait, field}``."""
    if not isinstance(value, list):
        raise InvalidError("must be a list", where)
    fields = _MAPPINGS[key]
    found: list[dict[str, str]] = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise InvalidError(f"must be an object with {', '.join(fields)}", at)
        unknown = sorted(set(item) - set(fields))
        if unknown:
            raise InvalidError(f"unknown key {unknown[0]!r}; expected {', '.join(fields)}", at)
        entry: dict[str, str] = {}
        for name in fields:
            given = item.get(name)
            if given is None and name == "strategy":
                given = "last_added"
            if not isinstance(given, str) or not given.strip():
                raise InvalidError(f"{name} must be a name", at)
            entry[name] = given
        if key == "id_sync" and entry["strategy"] not in STRATEGIES:
            raise InvalidError(
                f"unknown strategy {entry['strategy']!r}; expected {', '.join(STRATEGIES)}", at
            )
        found.append(entry)
    if key == "id_sync" and sum(m["strategy"] == "all" for m in found) > MAX_ALL:
        raise InvalidError(f"at most {MAX_ALL} identifiers may use the strategy all", where)
    return found


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name.strip():
        raise InvalidError("must be a non-empty name", "name")
    if len(name) > MAX_KEY:
        raise InvalidError(f"must be at most {MAX_KEY} characters", "name")
    _check_text(name, "name")


def _check_text(value: object, field: str) -> None:
    """Text every database can store: no NUL (PostgreSQL refuses it) and no lone UTF-16
    surrogate (JSON allows ``\\ud800``)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidError("must not contain a NUL character (\\u0000)", field)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InvalidError(
                f"must be valid Unicode text (a lone surrogate is at {exc.start})", field
            ) from None
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_text(key, field)
            _check_text(item, field)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_text(item, field)


def _tree(row: Row[Any]) -> Definition:
    return parse(row.definition, kind=row.level, purpose=row.kind)


def _keys_read(tree: Definition) -> set[str]:
    """The trait keys a definition reads (other computations' keys among them)."""
    found: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, TraitRef):
            found.add(node.key)
        elif isinstance(node, tuple):
            for item in node:
                visit(item)
        elif is_dataclass(node):
            for spec in fields(node):
                if spec.name != "span":
                    visit(getattr(node, spec.name))

    visit(tree.root)
    return found


class Planned:
    """The computations the engine runs and their destinations, rebuilt when the
    configuration's version moves (the engine asks on every pass)."""

    def __init__(self, workspace: WorkspaceStore, *, interval: float = 1.0) -> None:
        self._store = ComputationStore(workspace)
        empty: tuple[dict[str, list[Computation]], dict[str, list[Connection]]] = ({}, {})
        self._snapshot = ConfigSnapshot(
            workspace.config_version, self._build, empty, interval=interval
        )

    def computations(self, space_id: str) -> builtins.list[Computation]:
        return self._snapshot.get()[0].get(space_id, [])

    def connections(self, computation_id: str) -> builtins.list[Connection]:
        return self._snapshot.get()[1].get(computation_id, [])

    def _build(self) -> tuple[dict[str, list[Computation]], dict[str, list[Connection]]]:
        by_space: dict[str, list[Computation]] = {}
        by_id: dict[str, list[Connection]] = {}
        for info in self._store.every():
            by_space.setdefault(info.space_id, []).append(info.computation())
            by_id[info.id] = connections(info)
        return by_space, by_id
