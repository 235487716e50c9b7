"""Profiles Sync's loader step: a space's outbox into its schema of the warehouse (§11.2).

A warehouse sync (``sync.py``) runs this after its sources, for every space whose Profiles
Sync names the warehouse, on the warehouse's schedule. Per space, in ``seq`` order and in
chunks, from the space's position on:

1. raw tables, appended (rows have ids made from the event's ``messageId``, so a chunk loaded
   twice adds nothing): ``id_graph_updates``, ``external_id_mapping_updates``,
   ``profile_traits_updates`` (one column per trait);
2. event tables as the Connections warehouse writes them (``rows_for``) plus ``segment_id``
   and ``event_source_id``, every source of the space in one schema; events received more than
   two months before the load are left out (Segment's event-table history);
3. the materialized tables, with Segment's merge semantics: ``profile_merges`` (one row per
   profile id, its latest canonical id), ``user_identifiers`` and ``user_traits`` (the merged
   profile's rows go to the one it merged into; of two values of one trait the later wins);
   and the account tables Segment does not document, for Engage's account audiences:
   ``user_accounts`` (one row per canonical profile and ``group_id`` it belongs to, since its
   first Group call for the account; a merge moves the rows, the earlier link of two
   surviving) and ``account_traits`` (one row per ``group_id`` and trait, like
   ``user_traits``: the later value wins, ``null`` removes). Both keep the whole history,
   which the ``groups`` event table (two months) does not.
   The chunk's profiles' rows are read back, the chunk is replayed on them in memory, and the
   result replaces their rows (``Loader.replace``): replaying a chunk on its own result changes
   nothing;
4. the position moves to the chunk's last ``seq`` and the outbox is pruned, in one state
   transaction.

Then the views ``id_graph``, ``external_id_mapping`` and ``profile_traits`` (one column per
trait, ``merged_to`` set for merged-away profiles) are made again from the tables. A chunk that
fails leaves the position where it was; the next run loads it again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from headwater.store.database import write_transaction
from headwater.store.workspace import SourceInfo, WorkspaceStore
from headwater.unify import profiles_sync as feed
from headwater.unify.spaces import SpaceInfo, SpaceStore
from headwater.warehouse.columns import ColumnType, TableRows
from headwater.warehouse.loaders import Loader
from headwater.warehouse.naming import Naming, default_schema_name, naming_for
from headwater.warehouse.rows import column_type, group_rows, rows_for
from headwater.warehouse.store import WarehouseInfo

logger = logging.getLogger(__name__)

CHUNK: Final = 5_000  # outbox rows per chunk
EVENT_HISTORY: Final = timedelta(days=60)  # event tables: the last two months
MAX_TRAIT_COLUMNS: Final = 1_000  # profile_traits columns (PostgreSQL allows 1,600 in all)

ID_GRAPH_UPDATES: Final = "id_graph_updates"
EXTERNAL_ID_MAPPING_UPDATES: Final = "external_id_mapping_updates"
PROFILE_TRAITS_UPDATES: Final = "profile_traits_updates"
USER_IDENTIFIERS: Final = "user_identifiers"
USER_TRAITS: Final = "user_traits"
PROFILE_MERGES: Final = "profile_merges"
USER_ACCOUNTS: Final = "user_accounts"
ACCOUNT_TRAITS: Final = "account_traits"
EVENT_TABLES_LEFT_OUT: Final = frozenset({"users", "accounts"})

_TRIGGER: Final[dict[str, ColumnType]] = {
    "triggering_event_id": "varchar",
    "triggering_event_name": "varchar",
    "triggering_event_type": "varchar",
    "triggering_event_source_id": "varchar",
    "triggering_event_source_name": "varchar",
    "triggering_event_source_slug": "varchar",
}
_TIMES: Final[dict[str, ColumnType]] = {
    "seq": "integer",
    "timestamp": "timestamp",
    "received_at": "timestamp",
    "uuid_ts": "timestamp",
}
COLUMNS: Final[dict[str, dict[str, ColumnType]]] = {
    ID_GRAPH_UPDATES: {
        "id": "varchar",
        "segment_id": "varchar",
        "canonical_segment_id": "varchar",
        **_TRIGGER,
        **_TIMES,
    },
    EXTERNAL_ID_MAPPING_UPDATES: {
        "id": "varchar",
        "external_id_hash": "varchar",
        "external_id_type": "varchar",
        "external_id_value": "varchar",
        "segment_id": "varchar",
        "__operation": "varchar",
        **_TRIGGER,
        **_TIMES,
    },
    PROFILE_TRAITS_UPDATES: {"id": "varchar", "segment_id": "varchar", **_TRIGGER, **_TIMES},
    USER_IDENTIFIERS: {
        "id": "varchar",
        "canonical_segment_id": "varchar",
        "type": "varchar",
        "value": "varchar",
        **_TIMES,
    },
    USER_TRAITS: {
        "id": "varchar",
        "canonical_segment_id": "varchar",
        "name": "varchar",
        "value": "varchar",
        **_TIMES,
    },
    PROFILE_MERGES: {
        "id": "varchar",
        "segment_id": "varchar",
        "canonical_segment_id": "varchar",
        **_TIMES,
    },
    USER_ACCOUNTS: {
        "id": "varchar",
        "canonical_segment_id": "varchar",
        "group_id": "varchar",
        **_TIMES,
    },
    ACCOUNT_TRAITS: {
        "id": "varchar",
        "group_id": "varchar",
        "name": "varchar",
        "value": "varchar",
        **_TIMES,
    },
}
_ROW_IDS: Final = uuid.uuid5(uuid.NAMESPACE_URL, "headwater:profiles-sync-row")
_dumps: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode


def external_id_hash(type_: str, value: str) -> str:
    """Segment's key of an identifier: ``hex(sha1(external_id_type || external_id_value))``."""
    return hashlib.sha1((type_ + value).encode(), usedforsecurity=False).hexdigest()


def _row_id(*parts: str) -> str:
    """A row id made from what the row is about, so loading it again finds it."""
    return str(uuid.uuid5(_ROW_IDS, "\x1f".join(parts)))


def _when(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def trait_text(value: Any) -> str:
    """A trait's value in ``user_traits.value``: text as is, anything else as JSON."""
    return value if isinstance(value, str) else _dumps(value)


@dataclass
class SpaceOutcome:
    """What one space's load did, for the sync's report."""

    schema: str
    rows: dict[str, int] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    loaded_tables: int = 0
    failed_tables: int = 0


class ProfilesSyncLoad:
    """Loads the spaces of one warehouse; a warehouse sync makes one per run."""

    def __init__(
        self,
        workspace: WorkspaceStore,
        *,
        clock: Callable[[], float] = time.time,
        chunk: int = CHUNK,
        stopping: threading.Event | None = None,
    ) -> None:
        self._workspace = workspace
        self._engine = workspace.engine
        self._clock = clock
        self._chunk = chunk
        self._stopping = stopping or threading.Event()

    def spaces(self, warehouse: WarehouseInfo) -> list[SpaceInfo]:
        """The spaces whose Profiles Sync goes to this warehouse: those that loaded into it
        before first, then the oldest (of two on one schema, the first keeps it)."""
        found = [
            s
            for s in SpaceStore(self._workspace).list()
            if s.profiles_sync is not None and s.profiles_sync.warehouse_id == warehouse.id
        ]
        with self._engine.connect() as conn:
            loaded = {s.id for s in found if feed.position(conn, s.id, warehouse.id)}
        return sorted(found, key=lambda s: (s.id not in loaded, s.created_at, s.name))

    def run(
        self,
        warehouse: WarehouseInfo,
        loader: Loader,
        beat: Callable[[], None] = lambda: None,
        *,
        source_schemas: Mapping[str, str] | None = None,
    ) -> list[SpaceOutcome]:
        """Load each space; ``source_schemas``: the schemas this warehouse's sources load
        into (schema → source id), which no space may load into as well."""
        outcomes = []
        sources = source_schemas or {}
        spaces: dict[str, str] = {}  # schema → the space loading into it
        for space in self.spaces(warehouse):
            assert space.profiles_sync is not None
            outcome = SpaceOutcome(default_schema_name(space.profiles_sync.schema))
            owner = None
            if outcome.schema in sources:
                owner = f"source {self._source_name(sources[outcome.schema])!r}"
            elif outcome.schema in spaces:
                owner = f"space {spaces[outcome.schema]!r}"
            spaces.setdefault(outcome.schema, space.name)
            if owner is not None:
                # Its event tables (identifies, tracks, …) would mix with the other's.
                logger.warning(
                    "warehouse %s: profiles sync of space %s skipped: schema %s is %s's",
                    warehouse.name,
                    space.name,
                    outcome.schema,
                    owner,
                )
                outcome.failed_tables += 1
                outcome.notices.append(
                    f"{outcome.schema}: profiles sync of space {space.name!r} skipped: this "
                    f"schema is {owner}'s in this warehouse; give the space's Profiles Sync a "
                    "schema of its own (profiles_sync: {warehouse: …, schema: …})"
                )
                outcomes.append(outcome)
                continue
            try:
                self._load_space(warehouse, loader, space, outcome, beat)
            except Exception as exc:  # a space that fails leaves its position; others go on
                logger.warning(
                    "warehouse %s: profiles sync of space %s failed: %s",
                    warehouse.name,
                    space.name,
                    exc,
                )
                outcome.failed_tables += 1
                outcome.notices.append(
                    f"{outcome.schema}: profiles sync: {type(exc).__name__}: {exc}"
                )
            outcomes.append(outcome)
        return outcomes

    def _source_name(self, source_id: str) -> str:
        source = self._workspace.get_source(source_id)
        return source.name if source is not None else source_id

    def _load_space(
        self,
        warehouse: WarehouseInfo,
        loader: Loader,
        space: SpaceInfo,
        outcome: SpaceOutcome,
        beat: Callable[[], None],
    ) -> None:
        naming = naming_for("postgres" if warehouse.type == "postgres" else "duckdb")
        schema = outcome.schema
        known: dict[str, SourceInfo | None] = {}

        def source(source_id: str) -> SourceInfo | None:
            if source_id not in known:
                known[source_id] = self._workspace.get_source(source_id)
            return known[source_id]

        with self._engine.connect() as conn:
            after = feed.position(conn, space.id, warehouse.id)
        while not self._stopping.is_set():
            with self._engine.connect() as conn:
                entries = feed.pending(conn, space.id, after, self._chunk)
            if not entries:
                break
            now = datetime.fromtimestamp(self._clock(), UTC)
            built = _Chunk(entries, now, naming, source)
            for rows in built.raw_and_events():
                self._count(outcome, rows.table, loader.load(schema, rows))
            self._materialize(loader, schema, built, outcome)
            after = entries[-1].seq
            with write_transaction(self._engine) as conn:
                feed.advance(conn, space.id, warehouse.id, after, now.timestamp())
            beat()
        if PROFILE_MERGES in loader.columns(schema):
            self._views(loader, schema, naming)

    def _count(self, outcome: SpaceOutcome, table: str, result: tuple[int, list[str]]) -> None:
        inserted, notices = result
        outcome.loaded_tables += 1
        outcome.rows[table] = outcome.rows.get(table, 0) + inserted
        outcome.notices.extend(f"{outcome.schema}.{table}: {n}" for n in notices)

    # --- materialized tables ---------------------------------------------------------------

    def _materialize(
        self, loader: Loader, schema: str, chunk: _Chunk, outcome: SpaceOutcome
    ) -> None:
        merges = chunk.profile_merges()
        if merges:
            rows = _table(PROFILE_MERGES, merges)
            self._count(outcome, PROFILE_MERGES, loader.replace(schema, rows, "segment_id", []))
        self._accounts(loader, schema, chunk, outcome)
        touched = chunk.touched()
        if not touched:
            return
        identifiers = {
            (str(r["type"]), str(r["value"])): r
            for r in loader.fetch(schema, USER_IDENTIFIERS, "canonical_segment_id", touched)
        }
        traits: dict[str, dict[str, dict[str, Any]]] = {}
        for r in loader.fetch(schema, USER_TRAITS, "canonical_segment_id", touched):
            traits.setdefault(str(r["canonical_segment_id"]), {})[str(r["name"])] = r
        links: dict[tuple[str, str], dict[str, Any]] = {
            (str(r["canonical_segment_id"]), str(r["group_id"])): r
            for r in loader.fetch(schema, USER_ACCOUNTS, "canonical_segment_id", touched)
        }
        linked = bool(links) or chunk.links()
        chunk.replay(identifiers, traits, links)
        self._count(
            outcome,
            USER_IDENTIFIERS,
            loader.replace(
                schema,
                _table(USER_IDENTIFIERS, identifiers.values()),
                "canonical_segment_id",
                touched,
            ),
        )
        self._count(
            outcome,
            USER_TRAITS,
            loader.replace(
                schema,
                _table(USER_TRAITS, (row for rows in traits.values() for row in rows.values())),
                "canonical_segment_id",
                touched,
            ),
        )
        if linked:  # no table until a first link
            self._count(
                outcome,
                USER_ACCOUNTS,
                loader.replace(
                    schema, _table(USER_ACCOUNTS, links.values()), "canonical_segment_id", touched
                ),
            )

    def _accounts(self, loader: Loader, schema: str, chunk: _Chunk, outcome: SpaceOutcome) -> None:
        groups = chunk.accounts_touched()
        if not groups:
            return
        traits: dict[str, dict[str, dict[str, Any]]] = {}
        for r in loader.fetch(schema, ACCOUNT_TRAITS, "group_id", groups):
            traits.setdefault(str(r["group_id"]), {})[str(r["name"])] = r
        chunk.replay_accounts(traits)
        rows = (row for held in traits.values() for row in held.values())
        self._count(
            outcome,
            ACCOUNT_TRAITS,
            loader.replace(schema, _table(ACCOUNT_TRAITS, rows), "group_id", groups),
        )

    # --- views ---------------------------------------------------------------------------------

    def _views(self, loader: Loader, schema: str, naming: Naming) -> None:
        s = _quote(schema)
        loader.replace_view(
            schema,
            "id_graph",
            f"SELECT segment_id, canonical_segment_id, timestamp FROM {s}.{PROFILE_MERGES}",
        )
        # An identifier belongs to where its first profile points now, since the later of
        # its own time and that pointer's (a merge moves it: §11.4's 10:48:00).
        loader.replace_view(
            schema,
            "external_id_mapping",
            "SELECT g.canonical_segment_id, e.external_id_type, e.external_id_value, "
            "greatest(e.timestamp, g.timestamp) AS timestamp "
            f"FROM {s}.{EXTERNAL_ID_MAPPING_UPDATES} AS e "
            f"JOIN {s}.{PROFILE_MERGES} AS g ON g.segment_id = e.segment_id",
        )
        tables = loader.columns(schema)
        names: list[str] = []
        if USER_TRAITS in tables:
            names = [
                str(row[0])
                for row in loader.query(
                    f"SELECT DISTINCT name FROM {s}.{USER_TRAITS} ORDER BY name"
                )[1]
            ]
        columns: list[str] = []
        used = {"canonical_segment_id", "merged_to"}
        for name in names:
            column = naming.column(name)
            if not column or column in used or len(columns) >= MAX_TRAIT_COLUMNS:
                continue  # a second trait with the same column: the first (by name) wins
            used.add(column)
            columns.append(
                f"max(CASE WHEN t.name = {_literal(name)} THEN t.value END) AS {_quote(column)}"
            )
        join = (
            f" LEFT JOIN {s}.{USER_TRAITS} AS t ON t.canonical_segment_id = m.segment_id"
            if columns
            else ""
        )
        loader.replace_view(
            schema,
            "profile_traits",
            "SELECT m.segment_id AS canonical_segment_id, "
            + "".join(c + ", " for c in columns)
            + "CASE WHEN m.canonical_segment_id <> m.segment_id THEN m.canonical_segment_id "
            "END AS merged_to "
            f"FROM {s}.{PROFILE_MERGES} AS m{join} "
            "GROUP BY m.segment_id, m.canonical_segment_id",
        )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _table(name: str, rows: Iterable[dict[str, Any]]) -> TableRows:
    """Rows of a profile table with its fixed columns and their types."""
    columns = COLUMNS[name]
    return TableRows(
        name,
        [{k: v for k, v in row.items() if v is not None} for row in rows],
        types=dict(columns),
        standard=dict(columns),
    )


class _Chunk:
    """One chunk of a space's outbox as warehouse rows."""

    def __init__(
        self,
        entries: list[feed.OutboxEntry],
        now: datetime,
        naming: Naming,
        source: Callable[[str], SourceInfo | None],
    ) -> None:
        self.entries = entries
        self.now = now
        self.naming = naming
        self.source = source

    def _trigger(self, entry: feed.OutboxEntry) -> dict[str, Any]:
        event = entry.event
        kind = str(event.get("type") or "")
        name = event.get("event") if kind == "track" else event.get("name")
        source = self.source(entry.source_id)
        return {
            "triggering_event_id": entry.message_id,
            "triggering_event_name": name if isinstance(name, str) else None,
            "triggering_event_type": kind,
            "triggering_event_source_id": entry.source_id,
            "triggering_event_source_name": source.name if source is not None else None,
            "triggering_event_source_slug": source.slug if source is not None else None,
        }

    def _times(self, entry: feed.OutboxEntry, at: float | None = None) -> dict[str, Any]:
        return {
            "seq": entry.seq,
            "timestamp": _when(entry.timestamp if at is None else at),
            "received_at": _when(entry.received_at),
            "uuid_ts": self.now,
        }

    def raw_and_events(self) -> list[TableRows]:
        graph: list[dict[str, Any]] = []
        mappings: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        update_types: dict[str, ColumnType] = {}
        events: list[tuple[str, dict[str, Any]]] = []
        oldest = self.now - EVENT_HISTORY
        for entry in self.entries:
            trigger = self._trigger(entry)
            for index, op in enumerate(entry.ops):
                if op[0] in ("create", "merge"):
                    # an id_graph row per profile id pointed: a new profile at itself, a
                    # merge's moved ids at the survivor
                    if op[0] == "create":
                        _, segment, at = op
                        pointed = [(segment, segment)]
                    else:
                        _, _, into, at, moved = op
                        pointed = [(segment, into) for segment in moved]
                    for segment, canonical in pointed:
                        graph.append(
                            {
                                "id": _row_id("graph", entry.message_id, str(index), segment),
                                "segment_id": segment,
                                "canonical_segment_id": canonical,
                                **trigger,
                                **self._times(entry, at),
                            }
                        )
                elif op[0] == "add":
                    _, segment, type_, value, at = op
                    mappings.append(
                        {
                            "id": _row_id("mapping", entry.message_id, type_, value),
                            "external_id_hash": external_id_hash(type_, value),
                            "external_id_type": type_,
                            "external_id_value": value,
                            "segment_id": segment,
                            "__operation": "CREATED",
                            **trigger,
                            **self._times(entry, at),
                        }
                    )
            for segment, changed in entry.traits:
                row: dict[str, Any] = {
                    "id": _row_id("traits", entry.message_id, segment),
                    "segment_id": segment,
                    **trigger,
                    **self._times(entry),
                }
                for name, value in changed.items():
                    column = self.naming.column(name)
                    if not column or column in COLUMNS[PROFILE_TRAITS_UPDATES] or value is None:
                        continue  # Segment's own columns win; a removed trait is a NULL
                    if isinstance(value, (dict, list)):
                        value = _dumps(value)
                    row.setdefault(column, value)
                    update_types[column] = column_type(value)
                updates.append(row)
            received = _when(entry.received_at) or _when(entry.timestamp)
            if received is not None and received < oldest:
                continue  # event tables hold two months
            for table, event_row in rows_for(entry.event, now=self.now, naming=self.naming):
                if table in EVENT_TABLES_LEFT_OUT:
                    continue
                event_row["segment_id"] = entry.segment_id
                event_row["event_source_id"] = entry.source_id
                events.append((table, event_row))
        tables = [
            _table(ID_GRAPH_UPDATES, graph),
            _table(EXTERNAL_ID_MAPPING_UPDATES, mappings),
        ]
        traits = _table(PROFILE_TRAITS_UPDATES, updates)
        traits.types.update(update_types)
        tables.append(traits)
        tables.extend(group_rows(events).values())
        return [t for t in tables if t.rows]

    def profile_merges(self) -> list[dict[str, Any]]:
        """The latest row of each profile id the chunk created or moved."""
        latest: dict[str, dict[str, Any]] = {}
        for entry in self.entries:
            for op in entry.ops:
                if op[0] == "create":
                    pairs, at = [(op[1], op[1])], op[2]
                elif op[0] == "merge":
                    pairs, at = [(s, op[2]) for s in op[4]], op[3]
                else:
                    continue
                for segment, canonical in pairs:
                    latest[segment] = {
                        "id": segment,
                        "segment_id": segment,
                        "canonical_segment_id": canonical,
                        **self._times(entry, at),
                    }
        return list(latest.values())

    def touched(self) -> list[str]:
        """The canonical profiles whose identifiers or traits the chunk may change."""
        found: dict[str, None] = {}
        for entry in self.entries:
            for op in entry.ops:
                if op[0] in ("add", "link"):
                    found[op[1]] = None
                elif op[0] == "merge":
                    found[op[1]] = found[op[2]] = None
            for segment, _ in entry.traits:
                found[segment] = None
        return list(found)

    def links(self) -> bool:
        """Whether the chunk links a user to an account."""
        return any(op[0] == "link" for entry in self.entries for op in entry.ops)

    def accounts_touched(self) -> list[str]:
        """The accounts (``group_id``) whose traits the chunk may change."""
        return list(dict.fromkeys(group for entry in self.entries for group, _ in entry.accounts))

    def replay(
        self,
        identifiers: dict[tuple[str, str], dict[str, Any]],
        traits: dict[str, dict[str, dict[str, Any]]],
        links: dict[tuple[str, str], dict[str, Any]],
    ) -> None:
        """Apply the chunk to the current rows of the profiles it touches, in order."""
        for entry in self.entries:
            for op in entry.ops:
                if op[0] == "link":
                    _, segment, group, at = op
                    if (segment, group) not in links:  # a link keeps its first time
                        links[(segment, group)] = self._link(entry, segment, group, at)
                elif op[0] == "add":
                    _, segment, type_, value, at = op
                    identifiers[(type_, value)] = {
                        "id": external_id_hash(type_, value),
                        "canonical_segment_id": segment,
                        "type": type_,
                        "value": value,
                        **self._times(entry, at),
                    }
                elif op[0] == "merge":
                    _, gone, into, _, _ = op
                    for row in identifiers.values():
                        if row["canonical_segment_id"] == gone:
                            row["canonical_segment_id"] = into
                    for key in [k for k in links if k[0] == gone]:
                        row = links.pop(key)
                        held = links.get((into, key[1]))
                        if held is None or _newer(held, row):  # the earlier link survives
                            links[(into, key[1])] = {
                                **row,
                                "id": _row_id("account", into, key[1]),
                                "canonical_segment_id": into,
                            }
                    moved = traits.pop(gone, {})
                    kept = traits.setdefault(into, {})
                    for name, row in moved.items():
                        if name not in kept or _newer(row, kept[name]):
                            kept[name] = {
                                **row,
                                "id": _row_id("trait", into, name),
                                "canonical_segment_id": into,
                            }
            for segment, changed in entry.traits:
                self._set(traits.setdefault(segment, {}), entry, changed, segment=segment)

    def replay_accounts(self, traits: dict[str, dict[str, dict[str, Any]]]) -> None:
        """Apply the chunk's account traits to the current rows of the accounts it touches."""
        for entry in self.entries:
            for group, changed in entry.accounts:
                self._set(traits.setdefault(group, {}), entry, changed, group=group)

    def _set(
        self,
        held: dict[str, dict[str, Any]],
        entry: feed.OutboxEntry,
        changed: Mapping[str, Any],
        *,
        segment: str | None = None,
        group: str | None = None,
    ) -> None:
        """One event's trait changes on a profile's (``segment``) or an account's (``group``)
        rows: the new value wins, ``null`` removes."""
        for name, value in changed.items():
            if value is None:
                held.pop(name, None)  # null removes a trait
                continue
            text = trait_text(value)
            if name in held and held[name]["value"] == text:
                continue  # the value it holds keeps its time (a merge told again)
            if group is not None:
                owner = {"id": _row_id("account-trait", group, name), "group_id": group}
            else:
                assert segment is not None
                owner = {"id": _row_id("trait", segment, name), "canonical_segment_id": segment}
            held[name] = {**owner, "name": name, "value": text, **self._times(entry)}

    def _link(self, entry: feed.OutboxEntry, segment: str, group: str, at: float) -> dict[str, Any]:
        return {
            "id": _row_id("account", segment, group),
            "canonical_segment_id": segment,
            "group_id": group,
            **self._times(entry, at),
        }


def _newer(row: Mapping[str, Any], than: Mapping[str, Any]) -> bool:
    """Whether ``row`` is the later value: its time, then its sequence."""

    def key(r: Mapping[str, Any]) -> tuple[float, int]:
        stamp = r.get("timestamp")
        return (stamp.timestamp() if isinstance(stamp, datetime) else float("-inf"), int(r["seq"]))

    return key(row) > key(than)
