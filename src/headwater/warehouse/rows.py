"""One stored event as the rows Segment's warehouses hold for it, and the types of their columns.

``rows_for`` turns a message (camelCase, as the Tracking API stores it) into ``(table, row)``
pairs; ``group_rows`` collects a batch of them per table with the type each column would be
created with; ``cast`` fits a value into a column that already exists with another type.

Tables and columns (Segment's warehouse schema, connections spec §12.2–12.4):

* every message row: ``id`` (messageId), ``anonymous_id``, ``user_id``, ``received_at``,
  ``sent_at``, ``timestamp``, ``original_timestamp``, ``uuid``, ``uuid_ts`` and ``context_*``;
  these columns (``context_library_name`` and ``_version`` of the context ones, the
  table's own like ``event`` or ``group_id`` too) exist in every table, NULL when an event
  lacks the value;
* track → ``tracks`` (those + ``event``, ``event_text``; no properties) and ``<event>``
  (the same + one column per property); ``event`` holds the event table's name, so it always
  maps to that table even when naming rules changed it;
* identify → ``identifies`` (+ traits) and, with a userId, ``users``: ``id`` = userId, the
  traits, the four timestamps, ``uuid``, ``uuid_ts``; no ``anonymous_id`` and no context;
* page / screen → ``pages`` / ``screens`` (+ properties, + the message's ``name`` and
  ``category``, which win over properties of the same name: analytics.js copies them there);
* group → ``groups`` (+ ``group_id``, traits) and, with a groupId, ``accounts`` shaped like
  ``users`` (``id`` = groupId);
* alias → ``aliases`` (+ ``previous_id``). Other types, and ``integrations``, ``channel``,
  ``version``… are not stored (Data Lakes keep them; warehouses do not).

Choices where Segment is silent:

* Nested objects flatten with ``_`` and the joined key is snake_cased as a whole;
  ``context.app.version`` → ``context_app_version``. When two keys give the same column, the
  later one in the object wins. A key whose snake_case is empty (``"$$"``) is dropped.
* Arrays become compact JSON (``["507f1","505bd"]``, non-ASCII kept) — Segment's docs render
  ``[507f1, 505bd]``, which is not parseable; JSON is.
* Properties and traits whose column equals a standard column of their table (``userId``,
  ``user_id``, ``id``, ``event``, ``timestamp``, ``uuid``, BigQuery's ``loaded_at``…) are
  dropped, as is any property column starting with ``context_``. ``type`` is not a warehouse
  column, so ``{"type": "cake"}`` survives as a column ``type``. ``group_id`` is reserved in
  ``groups`` only and ``previous_id`` in ``aliases`` only: elsewhere they are just properties.
* Null values create no column. Every string (arrays' JSON included) is cut at 512 characters
  (Python characters, not bytes). Non-finite floats count as null; integers outside 64 bits
  become floats (what a JavaScript sender meant anyway).
* Timestamps are timezone-aware UTC ``datetime`` values; one that does not parse is null.
  Payload strings stay strings in the row even when they look like timestamps: the column's
  type says ``timestamp`` and the loader casts, so a column that already is ``varchar`` keeps
  the text exactly as sent.
* ``uuid`` is Segment's internal row id; ours is a name-based UUID (version 3) of the message
  id, so reloading the archive produces the same rows. ``uuid_ts`` is the ``now`` given.
* An event whose table would be a standard table's (``Tracks``, ``Users``) gets a ``_``
  prefix (``_tracks``); one whose name has no letters or digits gets no event table, only a
  ``tracks`` row without ``event``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from headwater.timestamps import format_timestamp, parse_timestamp
from headwater.warehouse.columns import ColumnType, TableRows
from headwater.warehouse.naming import DUCKDB, Naming, snake_case

MAX_VARCHAR: Final = 512
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**63 - 1
_CACHE_LIMIT: Final = 100_000

Row = dict[str, Any]

# Columns Segment writes itself; a property or trait with the same (snake_cased) name is
# dropped. ``loaded_at`` is BigQuery's, reserved everywhere so a later BigQuery loader
# cannot meet a property column already holding it.
_COMMON: Final = frozenset(
    {
        "id",
        "anonymous_id",
        "user_id",
        "received_at",
        "sent_at",
        "timestamp",
        "original_timestamp",
        "uuid",
        "uuid_ts",
        "loaded_at",
    }
)
RESERVED_TRACK: Final = _COMMON | {"event", "event_text"}
RESERVED_GROUP: Final = _COMMON | {"group_id"}
RESERVED: Final = _COMMON

_TIMESTAMPS: Final = (
    ("receivedAt", "received_at"),
    ("sentAt", "sent_at"),
    ("timestamp", "timestamp"),
    ("originalTimestamp", "original_timestamp"),
)

# Standard columns have a fixed type whatever their values look like (a userId that happens to
# be an ISO date stays varchar).
_FIXED_COMMON: Final[dict[str, ColumnType]] = {
    "id": "varchar",
    "anonymous_id": "varchar",
    "user_id": "varchar",
    "uuid": "varchar",
    "received_at": "timestamp",
    "sent_at": "timestamp",
    "timestamp": "timestamp",
    "original_timestamp": "timestamp",
    "uuid_ts": "timestamp",
}
_FIXED_EVENT: Final[dict[str, ColumnType]] = {
    **_FIXED_COMMON,
    "event": "varchar",
    "event_text": "varchar",
}
_FIXED_TYPES: Final[dict[str, dict[str, ColumnType]]] = {
    "tracks": _FIXED_EVENT,
    "identifies": _FIXED_COMMON,
    "users": _FIXED_COMMON,
    "accounts": _FIXED_COMMON,
    "pages": {**_FIXED_COMMON, "name": "varchar", "category": "varchar"},
    "screens": {**_FIXED_COMMON, "name": "varchar", "category": "varchar"},
    "groups": {**_FIXED_COMMON, "group_id": "varchar"},
    "aliases": {**_FIXED_COMMON, "previous_id": "varchar"},
}
# Tables upserted on ``id`` (the userId / groupId) rather than appended.
UPSERTED: Final = frozenset({"users", "accounts"})

# Segment's columns of each table (connections spec §12.2), which the table has even when no
# event held a value (NULL), so a query naming them works whatever sent the events: plain HTTP
# clients and server libraries send no ``sentAt`` and often no ``timestamp``. Every Segment
# library sets ``context.library`` ("other libraries only collect context.library"), so
# every Segment table has ``context_library_name`` and ``_version``; other ``context_*``
# columns depend on the library and are created when a value arrives.
_STANDARD_MESSAGE: Final[dict[str, ColumnType]] = {
    **_FIXED_COMMON,
    "context_library_name": "varchar",
    "context_library_version": "varchar",
}
_STANDARD_EVENT: Final[dict[str, ColumnType]] = {
    **_STANDARD_MESSAGE,
    "event": "varchar",
    "event_text": "varchar",
}
_STANDARD_ENTITY: Final[dict[str, ColumnType]] = {
    c: t for c, t in _FIXED_COMMON.items() if c not in ("anonymous_id", "user_id")
}
_STANDARD: Final[dict[str, dict[str, ColumnType]]] = {
    "tracks": _STANDARD_EVENT,
    "identifies": _STANDARD_MESSAGE,
    "pages": {**_STANDARD_MESSAGE, "name": "varchar", "category": "varchar"},
    "screens": {**_STANDARD_MESSAGE, "name": "varchar", "category": "varchar"},
    "groups": {**_STANDARD_MESSAGE, "group_id": "varchar"},
    "aliases": {**_STANDARD_MESSAGE, "previous_id": "varchar"},
    "users": _STANDARD_ENTITY,
    "accounts": _STANDARD_ENTITY,
}


def standard_columns(table: str) -> dict[str, ColumnType]:
    """Segment's columns of ``table`` (an event table has those of ``tracks``)."""
    return dict(_STANDARD.get(table, _STANDARD_EVENT))


_UUID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "headwater:warehouse-row")
_UUID_SEED: Final = _UUID_NAMESPACE.bytes
_VARIANT: Final = "89ab"

_LEAF_TYPES: Final = frozenset({str, int, float, bool, list})
_dumps: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode

# RFC 3339 date-time: what Segment infers a timestamp column from (a date alone, or a time
# without zone, stays varchar).
_rfc3339 = re.compile(
    r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)", re.ASCII
).fullmatch
_integer_text = re.compile(r"\s*[+-]?\d+\s*", re.ASCII).fullmatch
# Unambiguous (not "\d+\.?\d*"), so a long digit run that fails costs one pass, not its square.
_decimal_text = re.compile(
    r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*", re.ASCII
).fullmatch
# Go's strconv.ParseBool, which is what "best effort" means for Segment's (Go) loaders.
_BOOL_TEXT: Final[dict[str, bool]] = {
    "1": True,
    "t": True,
    "T": True,
    "true": True,
    "TRUE": True,
    "True": True,
    "0": False,
    "f": False,
    "F": False,
    "false": False,
    "FALSE": False,
    "False": False,
}


# --- rows ------------------------------------------------------------------------------------


def rows_for(
    event: Mapping[str, Any], *, now: datetime, naming: Naming = DUCKDB
) -> list[tuple[str, Row]]:
    """The ``(table, row)`` pairs one event adds; ``[]`` for types warehouses do not keep.

    Rows never hold None (a null is a missing key); ``now`` fills ``uuid_ts`` for every row.
    ``naming`` applies a warehouse's identifier rules (Redshift's ``_open``) to table and
    column names, and must be the one the loader writes with.
    """
    builder = _builders.get(naming)
    if builder is None:
        builder = _builders[naming] = _Builder(naming)
    kind = event.get("type")
    build = builder.by_type.get(kind) if isinstance(kind, str) else None
    if build is None:
        return []
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return build(event, now)


def object_row(
    collection: str,
    object_id: str,
    properties: Mapping[str, Any],
    *,
    received_at: datetime,
    now: datetime,
    naming: Naming = DUCKDB,
) -> tuple[str, Row]:
    """The ``(table, row)`` of an object a source function set (``Segment.set``): table
    ``<collection>``, its ``id``, ``received_at``, ``uuid_ts`` and the properties as columns."""
    builder = _builders.get(naming)
    if builder is None:
        builder = _builders[naming] = _Builder(naming)
    row: Row = {"id": object_id, "received_at": received_at, "uuid_ts": now}
    if properties:
        _flatten(properties, "", builder.object_columns, row)
    return naming.table(collection), row


def group_rows(pairs: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, TableRows]:
    """Rows per table, in arrival order, each column typed from its latest non-null value
    (Segment: "we take the most recent occurrence of a column and choose its datatype").

    ``users`` and ``accounts`` rows are merged per ``id`` first (see ``merge_by_id``), so each
    holds one row per user or group, ready to upsert. Each table also names its standard
    columns, which loaders create even when every row lacks them.
    """
    tables: dict[str, TableRows] = {}
    for table, row in pairs:
        rows = tables.get(table)
        if rows is None:
            rows = tables[table] = TableRows(table)
        rows.rows.append(row if type(row) is dict else dict(row))
    for table, rows in tables.items():
        if table in UPSERTED:
            rows.rows = merge_by_id(rows.rows)
        rows.types = _types(rows.rows, _FIXED_TYPES.get(table, _FIXED_EVENT))
        rows.standard = standard_columns(table)
    return tables


def merge_by_id(rows: Iterable[Row]) -> list[Row]:
    """One row per ``id``: the newer row's values win column by column, the older one fills in
    columns the newer lacks (a trait sent once stays). Newer means a later ``timestamp`` (else
    ``received_at``); on a tie or when either is unknown, the later row in the list."""
    merged: dict[Any, Row] = {}
    loose: list[Row] = []
    for row in rows:
        key = row.get("id")
        if key is None:
            loose.append(row)
            continue
        have = merged.get(key)
        if have is None:
            merged[key] = dict(row)
        elif _older(row, have):
            for column, value in row.items():
                if have.get(column) is None:
                    have[column] = value
        else:
            have.update((c, v) for c, v in row.items() if v is not None)
    return [*merged.values(), *loose]


def _older(row: Mapping[str, Any], than: Mapping[str, Any]) -> bool:
    mine = row.get("timestamp") or row.get("received_at")
    theirs = than.get("timestamp") or than.get("received_at")
    if not isinstance(mine, datetime) or not isinstance(theirs, datetime):
        return False
    return mine < theirs


def _types(rows: list[Row], fixed: Mapping[str, ColumnType]) -> dict[str, ColumnType]:
    latest: Row = {}
    for row in rows:
        latest.update(row)  # C speed; nulls (which rows_for never makes) are fixed below
    types: dict[str, ColumnType] = {}
    for column, value in latest.items():
        if value is None:
            value = next((r[column] for r in reversed(rows) if r.get(column) is not None), None)
            if value is None:
                continue  # only nulls: no column (Segment creates none)
        types[column] = fixed.get(column) or column_type(value)
    return types


class _Columns:
    """Raw (flattened, unconverted) keys → final column names; ``""`` for a dropped key."""

    __slots__ = ("cache", "naming", "prefix", "reserved")

    def __init__(self, naming: Naming, reserved: frozenset[str], prefix: str = "") -> None:
        self.naming = naming
        self.reserved = reserved
        self.prefix = prefix
        self.cache: dict[str, str] = {}

    def resolve(self, raw: str) -> str:
        snaked = snake_case(raw)
        if not snaked:
            name = ""
        elif self.prefix:
            name = self.naming.identifier(self.prefix + snaked)
        elif snaked in self.reserved or snaked.startswith("context_"):
            name = ""
        else:
            name = self.naming.identifier(snaked)
        if len(self.cache) >= _CACHE_LIMIT:
            self.cache.clear()
        self.cache[raw] = name
        return name


def _flatten(obj: Mapping[str, Any], prefix: str, columns: _Columns, row: Row) -> None:
    cache = columns.cache
    for key, value in obj.items():
        if value is None:
            continue
        kind = type(value)
        if kind is dict or (kind not in _LEAF_TYPES and isinstance(value, Mapping)):
            if value:
                _flatten(value, (prefix + key if prefix else key) + "_", columns, row)
            continue
        raw = prefix + key if prefix else key
        name = cache.get(raw)
        if name is None:
            name = columns.resolve(raw)
        if not name:
            continue
        if kind is str:
            row[name] = value if len(value) <= MAX_VARCHAR else value[:MAX_VARCHAR]
            continue
        value = _scalar(value)
        if value is not None:
            row[name] = value


def _scalar(value: Any) -> Any:
    """A leaf value as the row holds it; None when it must not make a column."""
    kind = type(value)
    if kind is bool:
        return value
    if kind is int:
        return value if INT_MIN <= value <= INT_MAX else _big_int(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is list or kind is tuple:
        text = _dumps(value)
        return text if len(text) <= MAX_VARCHAR else text[:MAX_VARCHAR]
    # Not from JSON: values built in code (tests, functions). Keep their kind when it has one.
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, int):
        return _scalar(int(value))
    if isinstance(value, float):
        return _scalar(float(value))
    if isinstance(value, (list, tuple)):
        return _scalar(list(value))
    return str(value)[:MAX_VARCHAR]


def _big_int(value: int) -> float | str:
    try:
        return float(value)
    except OverflowError:
        return str(value)[:MAX_VARCHAR]


def _text(value: Any) -> str | None:
    """An id-like envelope field: strings as sent (cut at 512), numbers as their text."""
    if type(value) is str:
        return (value if len(value) <= MAX_VARCHAR else value[:MAX_VARCHAR]) or None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def _row_uuid(message_id: str) -> str:
    """``uuid.uuid3(_UUID_NAMESPACE, message_id)``, formatted without building a UUID object
    (a fifth of the cost, on every event)."""
    h = hashlib.md5(_UUID_SEED + message_id.encode(), usedforsecurity=False).hexdigest()
    return f"{h[:8]}-{h[8:12]}-3{h[13:16]}-{_VARIANT[int(h[16], 16) & 3]}{h[17:20]}-{h[20:]}"


_RESERVED_OBJECT: Final = frozenset({"id", "received_at", "uuid_ts"})


class _Builder:
    """Everything ``rows_for`` needs for one Naming, with its name caches."""

    def __init__(self, naming: Naming) -> None:
        self.naming = naming
        self.track_columns = _Columns(naming, RESERVED_TRACK)
        self.columns = _Columns(naming, RESERVED)
        self.group_columns = _Columns(naming, RESERVED_GROUP)
        self.context_columns = _Columns(naming, frozenset(), prefix="context_")
        self.object_columns = _Columns(naming, _RESERVED_OBJECT)
        self.event_tables: dict[str, str] = {}
        self.by_type: dict[str, Callable[[Mapping[str, Any], datetime], list[tuple[str, Row]]]] = {
            "track": self.track,
            "identify": self.identify,
            "page": self.page,
            "screen": self.screen,
            "group": self.group,
            "alias": self.alias,
        }

    # The envelope: ids, timestamps, uuid_ts, context.
    def base(self, event: Mapping[str, Any], now: datetime) -> tuple[Row, Row]:
        """The message row's standard columns, and the entity row's (users/accounts)."""
        row: Row = {}
        entity: Row = {}
        message_id = _text(event.get("messageId"))
        if message_id is not None:
            row["id"] = message_id
        anonymous_id = _text(event.get("anonymousId"))
        if anonymous_id is not None:
            row["anonymous_id"] = anonymous_id
        user_id = _text(event.get("userId"))
        if user_id is not None:
            row["user_id"] = user_id
        for key, column in _TIMESTAMPS:
            value = event.get(key)
            if value is not None:
                parsed = parse_timestamp(value)
                if parsed is not None:
                    row[column] = entity[column] = parsed
        if message_id is not None:
            row["uuid"] = entity["uuid"] = _row_uuid(message_id)
        row["uuid_ts"] = entity["uuid_ts"] = now
        context = event.get("context")
        if isinstance(context, Mapping) and context:
            _flatten(context, "", self.context_columns, row)
        return row, entity

    def payload(self, event: Mapping[str, Any], key: str, columns: _Columns) -> Row:
        found: Row = {}
        value = event.get(key)
        if isinstance(value, Mapping) and value:
            _flatten(value, "", columns, found)
        return found

    def event_table(self, name: str) -> str:
        table = self.event_tables.get(name)
        if table is None:
            table = self.naming.event_table(name)
            if len(self.event_tables) >= _CACHE_LIMIT:
                self.event_tables.clear()
            self.event_tables[name] = table
        return table

    def track(self, event: Mapping[str, Any], now: datetime) -> list[tuple[str, Row]]:
        row, _ = self.base(event, now)
        name = event.get("event")
        table = self.event_table(name) if isinstance(name, str) else ""
        if table:
            row["event"] = table
        text = _text(name)
        if text is not None:
            row["event_text"] = text
        if not table:
            return [("tracks", row)]
        own = dict(row)
        properties = event.get("properties")
        if isinstance(properties, Mapping) and properties:
            _flatten(properties, "", self.track_columns, own)
        return [("tracks", row), (table, own)]

    def identify(self, event: Mapping[str, Any], now: datetime) -> list[tuple[str, Row]]:
        row, entity = self.base(event, now)
        traits = self.payload(event, "traits", self.columns)
        row.update(traits)
        user_id = row.get("user_id")
        if user_id is None:
            return [("identifies", row)]
        return [("identifies", row), ("users", {"id": user_id, **entity, **traits})]

    def page(self, event: Mapping[str, Any], now: datetime) -> list[tuple[str, Row]]:
        return [("pages", self.viewed(event, now))]

    def screen(self, event: Mapping[str, Any], now: datetime) -> list[tuple[str, Row]]:
        return [("screens", self.viewed(event, now))]

    def viewed(self, event: Mapping[str, Any], now: datetime) -> Row:
        row, _ = self.base(event, now)
        properties = event.get("properties")
        if isinstance(properties, Mapping) and properties:
            _flatten(properties, "", self.columns, row)
        for key in ("name", "category"):
            value = _text(event.get(key))
            if value is not None:
                row[key] = value
        return row

    def group(self, event: Mapping[str, Any], now: datetime) -> list[tuple[str, Row]]:
        row, entity = self.base(event, now)
        group_id = _text(event.get("groupId"))
        if group_id is not None:
            row["group_id"] = group_id
        traits = self.payload(event, "traits", self.group_columns)
        row.update(traits)
        if group_id is None:
            return [("groups", row)]
        return [("groups", row), ("accounts", {"id": group_id, **entity, **traits})]

    def alias(self, event: Mapping[str, Any], now: datetime) -> list[tuple[str, Row]]:
        row, _ = self.base(event, now)
        previous_id = _text(event.get("previousId"))
        if previous_id is not None:
            row["previous_id"] = previous_id
        return [("aliases", row)]


_builders: dict[Naming, _Builder] = {}


# --- types and casts -------------------------------------------------------------------------


def column_type(value: Any) -> ColumnType:
    """The type a column gets when ``value`` creates it.

    Strings are ``timestamp`` only when they are an RFC 3339 date-time (with seconds and a
    zone) that parses; ``"2015-12-12"`` or ``"12/12/2015"`` stay varchar.
    """
    kind = type(value)
    if kind is str:
        return "timestamp" if is_timestamp_text(value) else "varchar"
    if kind is bool:
        return "boolean"
    if kind is int:
        return "integer" if INT_MIN <= value <= INT_MAX else "float"
    if kind is float:
        return "float"
    if isinstance(value, datetime):
        return "timestamp"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer" if INT_MIN <= value <= INT_MAX else "float"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return column_type(str(value))
    return "varchar"


def is_timestamp_text(value: str) -> bool:
    """True for an RFC 3339 date-time that is a real instant (no month 13, no hour 24)."""
    return (
        20 <= len(value) <= 64
        and value[4] == "-"
        and _rfc3339(value) is not None
        and parse_timestamp(value) is not None
    )


def cast(value: Any, column_type: ColumnType) -> Any:
    """``value`` fitted into an existing column of ``column_type``; None when it cannot be.

    None back for a non-None value means "dropped": the loader reports it as a sync notice
    (Segment: "fields that cannot be casted may be dropped"). Floats into integer columns are
    truncated toward zero (5.5 → 5, -5.5 → -5), which is Go's conversion and Segment's
    "precision is lost". Booleans read as 1/0, and 0/1 (or Go's ParseBool words) as booleans.
    Strings into timestamp columns parse leniently (a bare date is midnight UTC); numbers never
    become timestamps (seconds or milliseconds? no way to tell).
    """
    if value is None:
        return None
    kind = type(value)
    if column_type == "varchar":
        return _to_varchar(value, kind)
    if column_type == "integer":
        return _to_integer(value, kind)
    if column_type == "float":
        return _to_float(value, kind)
    if column_type == "boolean":
        return _to_boolean(value, kind)
    if column_type == "timestamp":
        return _to_timestamp(value)
    raise ValueError(f"unknown column type {column_type!r}")


def _to_varchar(value: Any, kind: type) -> str:
    if kind is str:
        text: str = value
    elif kind is bool:
        text = "true" if value else "false"
    elif isinstance(value, datetime):
        text = format_timestamp(value)
    elif kind is list or kind is tuple or kind is dict:
        text = _dumps(value)
    else:
        text = str(value)
    return text if len(text) <= MAX_VARCHAR else text[:MAX_VARCHAR]


def _in_int64(number: int) -> int | None:
    return number if INT_MIN <= number <= INT_MAX else None


def _to_integer(value: Any, kind: type) -> int | None:
    if kind is int:
        return _in_int64(value)
    if kind is bool:
        return int(value)
    if kind is float:
        return _in_int64(int(value)) if math.isfinite(value) else None
    if kind is str:
        if _integer_text(value):
            return _in_int64(int(value))
        if _decimal_text(value):
            number = float(value)
            return _in_int64(int(number)) if math.isfinite(number) else None
    return None


def _to_float(value: Any, kind: type) -> float | None:
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int or kind is bool:
        try:
            return float(value)
        except OverflowError:
            return None
    if kind is str and _decimal_text(value):
        number = float(value)
        return number if math.isfinite(number) else None
    return None


def _to_boolean(value: Any, kind: type) -> bool | None:
    if kind is bool:
        return bool(value)
    if kind is int or kind is float:
        return bool(value) if value in (0, 1) else None
    if kind is str:
        return _BOOL_TEXT.get(value.strip())
    return None


def _to_timestamp(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, str):
        return parse_timestamp(value)
    return None
