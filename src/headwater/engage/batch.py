"""Batch computation: a definition compiled to one SQL query over a space's Profiles Sync
tables, for the full recompute (on creation, on edit, and as the periodic safety net) and for
everything the real-time engine leaves to batch (funnels, dynamic references, ``between``
windows, account-level definitions).

The query reads the tables Profiles Sync writes on every engine (spec §11.2): the event tables
(``pages``, ``screens``, one per Track event with one column per property, each row with
``segment_id`` — the profile at event time — and ``event_source_id``), ``profile_merges``
(every profile id → its current canonical id, so events count for the profile they belong to
now), ``user_traits`` (one row per trait of a canonical profile, the value as text),
``user_identifiers`` (§13.3's eligibility) and, for accounts, ``user_accounts`` (the user ↔
account links Group calls made, whole history) and ``account_traits`` (the accounts' traits),
or where a warehouse has none of those yet the ``groups`` event table. It returns rows
``(canonical_segment_id, value)``: an audience's members (value true), or every profile a
computed trait has a value for. For ``kind="accounts"`` the first column is the ``group_id``.

The meaning is ``realtime.py``'s and ``compare.py``'s: hourly buckets by event ``timestamp``
(an event in hour ``now_hour - N`` is outside ``within(N hours)``), a count over an empty
window is 0 in a condition, numbers compare as numbers (a numeric string too, never a bool),
everything else as text, a missing value satisfies only ``absent`` and ``omits``, and an array
(JSON text in the warehouse) satisfies a condition when one of its elements does. Where SQL
cannot say exactly what Python does, docs/decisions.md ("Engage: batch") lists it.

``compile_buckets`` is the other query: a real-time vector's hourly buckets per profile from
the events received before a moment, so a new real-time computation that includes historical
data starts from them and real time adds the rest (``buckets`` decodes its rows).

Identifiers are always double-quoted and literals single-quoted with quotes doubled: nothing in
a definition's text (event names, property paths, strings) reaches the SQL unquoted. The
module does not run SQL: the caller runs the text on its warehouse (``run``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

from headwater.engage.compare import number, text
from headwater.engage.definition import (
    AllUsers,
    And,
    AnyUser,
    Compare,
    Condition,
    ContextRef,
    Definition,
    Not,
    Or,
    PropertyRef,
    Reduce,
    Stream,
    TraitRef,
    Value,
)
from headwater.engage.definition import Literal as Const
from headwater.engage.realtime import FOLDED
from headwater.errors import DefinitionError
from headwater.timestamps import format_timestamp, parse_timestamp

Dialect = Literal["duckdb", "postgresql"]
HOUR: Final = 3600
EVENT_TEXT: Final = 512  # the warehouse cuts ``event_text`` (every string) at 512 characters
ELIGIBLE: Final = ("android.idfa", "email", "ios.idfa", "user_id")  # §13.3
PAGE_TABLES: Final = {"Page Viewed": "pages", "Screen Viewed": "screens"}
# Columns Segment writes in every event table (rows.py), and Profiles Sync's two: a property
# of the same name is dropped from the row, so ``property('id')`` has no column to read.
_STANDARD: Final = frozenset(
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
        "segment_id",
        "event_source_id",
    }
)
_TRACK_STANDARD: Final = _STANDARD | {"event", "event_text"}
# Python's float() on ASCII decimals; at most 200 digits a part and two exponent digits, so the
# cast can never overflow a double (which fails the query on both engines).
_NUMERIC: Final = (
    r"^\s*[+-]?([0-9]{1,200}(\.[0-9]{0,200})?|\.[0-9]{1,200})([eE][+-]?[0-9]{1,2})?\s*$"
)
# ISO-8601 times both engines cast (the day is checked against its month separately).
_ISO: Final = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"([T ]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,9})?)?)?"
    r"(Z|[+-]([01][0-9]|2[0-3])(:?[0-5][0-9])?)?$"
)


# A JSON array of scalars, as the warehouse writes an array property (compact JSON): its
# elements can be read on both engines without a cast that could fail.
_STRING = r'"([^"\\]|\\.)*"'
_SCALAR = rf"({_STRING}|-?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?|true|false|null)"
_ARRAY: Final = rf"^\[\s*({_SCALAR}(\s*,\s*{_SCALAR})*)?\s*\]$"


class Naming(Protocol):
    """How the warehouse names a property's column and a Track event's table
    (``headwater.warehouse.naming.Naming``)."""

    def column(self, name: str) -> str: ...

    def event_table(self, event: str) -> str: ...


Columns = Mapping[str, Mapping[str, str]]  # table → column → type (varchar, integer, …)
Kind = Literal["text", "integer", "float", "bool", "timestamp", "array"]
_KINDS: Final[dict[str, Kind]] = {
    "varchar": "text",
    "integer": "integer",
    "float": "float",
    "boolean": "bool",
    "timestamp": "timestamp",
}


@dataclass(frozen=True)
class Reference:
    """Another computation a definition reads by its key (``trait('high_value')``): batch
    computes it in the same query, so both see one moment's data."""

    kind: Literal["audience", "trait"]
    definition: Definition
    include_anonymous: bool = False


_NO_CONST: Final = object()


@dataclass(frozen=True)
class _V:
    """A value in SQL: its expression, what it holds, and its Python value when a literal."""

    sql: str
    kind: Kind
    const: Any = _NO_CONST
    listy: bool = False  # an event property's text, which holds an array as JSON

    @property
    def is_const(self) -> bool:
        return self.const is not _NO_CONST


@dataclass
class _Row:
    """The event row a ``where`` condition reads: its alias and table, and for a funnel
    step the parent event's."""

    alias: str
    table: str | None
    parent: _Row | None = None
    source: str = ""  # the SQL of the rows (a funnel step reads its parent's again)
    joins: list[str] = field(default_factory=list)  # LEFT JOINs its conditions need
    elements: str | None = None  # an array property's elements, one row each (``expand``)


@dataclass
class _Scope:
    """Whom values are computed for: ``users`` (canonical profiles) or ``accounts``."""

    kind: Literal["users", "accounts"]
    sid: str  # the SQL of the profile (or account) id in the current FROM
    joins: list[str] = field(default_factory=list)  # LEFT JOINs the top-level values need


def compile(
    definition: Definition,
    *,
    dialect: Dialect,
    schema: str,
    naming: Naming,
    columns: Columns,
    now: float,
    include_anonymous: bool = False,
    references: Mapping[str, Reference] | None = None,
    ignore_sources: Collection[str] = (),
) -> str:
    """One SQL query giving ``(canonical_segment_id, value)`` rows for ``definition``.

    ``columns``: the schema's tables and their columns' types (``Loader.columns``): a property
    no event carried has no column, and reads as missing. ``references``: the computations
    the definition reads by key. ``ignore_sources``: sources whose events compute nothing
    (Engage's own)."""
    compiler = _Compiler(
        dialect, schema, naming, columns, now, dict(references or {}), frozenset(ignore_sources)
    )
    return compiler.query(definition, include_anonymous)


Runner = Callable[[str], Iterable[Sequence[Any]]]


def run(queries: Mapping[str, str], runner: Runner) -> dict[str, dict[str, Any]]:
    """Each computation's values (``{segment_id: value}``) from its compiled query, run by
    ``runner`` (the warehouse's), with values as the real-time engine gives them."""
    return {
        computation: {str(row[0]): python_value(row[1]) for row in runner(sql)}
        for computation, sql in queries.items()
    }


def python_value(value: Any) -> Any:
    """A value the database returned, as the real-time engine would hold it: whole floats
    as ints (sums and averages), timestamps as Segment's ISO text, lists as lists."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) < 2**53 else value
    if isinstance(value, datetime):
        return format_timestamp(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, tuple | list):
        return [python_value(v) for v in value]
    if hasattr(value, "is_integer") and not isinstance(value, int | bool):  # Decimal
        return python_value(float(value))
    return value


# --- seeding real-time buckets from history ----------------------------------------------------


BUCKET_COLUMNS: Final = ("canonical_segment_id", "hour", "value", "n", "at")
FAMILIES: Final = ("count", "sum", "min", "max", "mode", "unique", "first", "last")


def compile_buckets(
    reduce: Reduce,
    *,
    family: str,
    keep: int | None,
    folds: bool,
    received_before: float,
    dialect: Dialect,
    schema: str,
    naming: Naming,
    columns: Columns,
    now: float,
    ignore_sources: Collection[str] = (),
) -> str:
    """One SQL query giving, for every profile, the hourly buckets of a real-time vector
    (``realtime._Vector``: its first reader's ``reduce``, ``family``, ``keep`` and ``folds``)
    from the events received before ``received_before``, as ``realtime.Plan.apply_event``
    then ``prune`` at ``now`` would hold them: a new computation that includes historical
    data starts from these, and real time adds the events received from then on.

    Rows ``(canonical_segment_id, hour, value, n, at)`` (``BUCKET_COLUMNS``), decoded by
    ``buckets``; ``hour`` is ``realtime.FOLDED`` for the bucket of hours older than ``keep``."""
    if family not in FAMILIES:
        raise ValueError(f"unknown vector family {family!r}")
    compiler = _Compiler(dialect, schema, naming, columns, now, {}, frozenset(ignore_sources))
    return compiler.buckets(reduce, family, keep, folds, received_before)


def buckets(rows: Iterable[Sequence[Any]], family: str) -> dict[str, dict[int, Any]]:
    """``compile_buckets``' rows as ``ProfileState.v`` holds a vector: ``{segment_id: {hour
    or FOLDED: bucket}}``, each bucket of the type ``realtime._add`` builds (count: int, sum:
    ``[total, n]``, min/max: the number or text, mode/unique: ``{value: n}``, first/last:
    ``[at, value]``), ready for ``realtime._combine`` with the buckets real time adds."""
    if family not in FAMILIES:
        raise ValueError(f"unknown vector family {family!r}")
    found: dict[str, dict[int, Any]] = {}
    for sid, hour, value, n, at in rows:
        slots = found.setdefault(str(sid), {})
        slot = int(hour)
        if family == "count":
            slots[slot] = int(n)
        elif family == "sum":
            slots[slot] = [float(value), int(n)]
        elif family in ("min", "max"):
            slots[slot] = value if isinstance(value, str) else float(value)
        elif family in ("mode", "unique"):
            slots.setdefault(slot, {})[str(value)] = int(n)
        else:
            slots[slot] = [_seconds(at), _event_value(value)]
    return found


def _seconds(value: Any) -> float:
    """An event's time as ``realtime.event_seconds`` gives it."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return float(value)


def _event_value(value: Any) -> Any:
    """A first/last value as the event held it (floats stay floats, unlike a trait's)."""
    if isinstance(value, datetime):
        return format_timestamp(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, tuple | list):
        return [_event_value(v) for v in value]
    if hasattr(value, "is_integer") and not isinstance(value, int | float):  # Decimal
        return float(value)
    return value


# --- quoting ------------------------------------------------------------------------------------


def quote(name: str) -> str:
    """An identifier, double-quoted (a quote in it doubled)."""
    if "\x00" in name:
        raise DefinitionError("a name cannot contain the NUL character", name, name.index("\x00"))
    return '"' + name.replace('"', '""') + '"'


def literal(value: str) -> str:
    """A string literal, single-quoted (a quote in it doubled; backslashes are plain
    characters in both dialects' standard strings)."""
    if "\x00" in value:
        raise DefinitionError(
            "a string cannot contain the NUL character", value, value.index("\x00")
        )
    return "'" + value.replace("'", "''") + "'"


# --- the compiler ----------------------------------------------------------------------------


class _Compiler:
    def __init__(
        self,
        dialect: Dialect,
        schema: str,
        naming: Naming,
        columns: Columns,
        now: float,
        references: dict[str, Reference],
        ignore_sources: frozenset[str],
    ) -> None:
        if dialect not in ("duckdb", "postgresql"):
            raise ValueError(f"unknown dialect {dialect!r}")
        self.dialect = dialect
        self.schema = quote(schema)
        self.naming = naming
        self.columns = columns
        self.now = now
        self.now_hour = math.floor(now / HOUR)
        self.references = references
        self.ignore_sources = ignore_sources
        self.ctes: list[tuple[str, str]] = []
        self.names = 0
        self.referenced: dict[tuple[str, str], str] = {}  # (scope kind, key) → CTE
        self.building: set[str] = set()

    # -- names and small SQL pieces --

    def fresh(self, prefix: str) -> str:
        self.names += 1
        return f"{prefix}{self.names}"

    def cte(self, prefix: str, sql: str) -> str:
        name = self.fresh(prefix)
        self.ctes.append((name, sql))
        return name

    def table(self, name: str) -> str:
        return f"{self.schema}.{quote(name)}"

    def has(self, table: str | None, column: str | None = None) -> bool:
        if table is None or table not in self.columns:
            return False
        return column is None or column in self.columns[table]

    @property
    def double(self) -> str:
        return "DOUBLE" if self.dialect == "duckdb" else "DOUBLE PRECISION"

    def collate(self, sql: str) -> str:
        """Text ordered by code point, as Python orders strings."""
        return f'({sql} COLLATE "C")' if self.dialect == "postgresql" else sql

    def matches(self, sql: str, pattern: str) -> str:
        if self.dialect == "duckdb":
            return f"regexp_matches({sql}, {literal(pattern)})"
        return f"({sql} ~ {literal(pattern)})"

    def at(self, seconds: float) -> str:
        stamp = datetime.fromtimestamp(seconds, UTC).isoformat()
        return f"CAST({literal(stamp)} AS TIMESTAMP WITH TIME ZONE)"

    def hour_of(self, sql: str) -> str:
        return f"floor(extract(epoch FROM {sql}) / 3600.0)"

    def null(self, kind: Kind) -> str:
        sql_type = {
            "text": "VARCHAR",
            "integer": "BIGINT",
            "float": self.double,
            "bool": "BOOLEAN",
            "timestamp": "TIMESTAMP WITH TIME ZONE",
            "array": "VARCHAR[]",
        }[kind]
        return f"CAST(NULL AS {sql_type})"

    def constant(self, value: Any) -> _V:
        if value is None:
            return _V(self.null("text"), "text", None)
        if isinstance(value, bool):
            return _V("TRUE" if value else "FALSE", "bool", value)
        if isinstance(value, int | float):
            return _V(self.number_sql(float(value)), "float", value)
        return _V(literal(str(value)), "text", value)

    def number_sql(self, value: float) -> str:
        if not math.isfinite(value):
            return self.null("float")
        return f"CAST({value!r} AS {self.double})"

    # -- typed views of a value (compare.py's number, text and instant) --

    def num(self, v: _V) -> str:
        if v.is_const:
            found = number(v.const)
            return self.null("float") if found is None else self.number_sql(found)
        if v.kind in ("integer", "float"):
            return f"CAST({v.sql} AS {self.double})"
        if v.kind == "text":
            return (
                f"(CASE WHEN {self.matches(v.sql, _NUMERIC)} "
                f"THEN CAST(trim({v.sql}) AS {self.double}) END)"
            )
        return self.null("float")

    def txt(self, v: _V) -> str:
        if v.is_const:
            return literal(text(v.const))
        if v.kind == "text":
            return v.sql
        if v.kind == "integer":
            return f"CAST({v.sql} AS VARCHAR)"
        if v.kind == "float":
            return (
                f"(CASE WHEN {v.sql} = floor({v.sql}) AND abs({v.sql}) < 1e15 "
                f"THEN CAST(CAST({v.sql} AS BIGINT) AS VARCHAR) ELSE CAST({v.sql} AS VARCHAR) END)"
            )
        if v.kind == "bool":
            return f"(CASE WHEN {v.sql} THEN 'true' ELSE 'false' END)"
        if v.kind == "timestamp":
            if self.dialect == "duckdb":
                return f"strftime({v.sql}, '%Y-%m-%dT%H:%M:%S.%gZ')"
            return f"to_char({v.sql} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
        return self.null("text")

    def instant(self, v: _V) -> str:
        if v.is_const:
            parsed = parse_timestamp(v.const) if not isinstance(v.const, bool) else None
            if parsed is None:
                return self.null("timestamp")
            return self.at(parsed.timestamp())
        if v.kind == "timestamp":
            return v.sql
        if v.kind == "text":
            year, month = f"CAST(substr({v.sql}, 1, 4) AS INTEGER)", f"substr({v.sql}, 6, 2)"
            leap = f"({year} % 4 = 0 AND ({year} % 100 <> 0 OR {year} % 400 = 0))"
            days = (
                f"CASE WHEN {month} = '02' THEN (CASE WHEN {leap} THEN 29 ELSE 28 END) "
                f"WHEN {month} IN ('04', '06', '09', '11') THEN 30 ELSE 31 END"
            )
            return (
                f"(CASE WHEN {self.matches(v.sql, _ISO)} THEN (CASE WHEN "
                f"CAST(substr({v.sql}, 9, 2) AS INTEGER) <= {days} "
                f"THEN CAST({v.sql} AS TIMESTAMP WITH TIME ZONE) END) END)"
            )
        return self.null("timestamp")

    # -- the whole query --

    def query(self, definition: Definition, include_anonymous: bool) -> str:
        name = self.computation(definition, include_anonymous, audience=definition.is_audience)
        body = f"SELECT sid AS canonical_segment_id, v AS value FROM {name}"
        ctes = ",\n".join(f"{quote(n)} AS (\n{sql}\n)" for n, sql in self.ctes)
        return f"WITH {ctes}\n{body}"

    def computation(self, definition: Definition, include_anonymous: bool, audience: bool) -> str:
        """A CTE ``(sid, v)`` with one row per member or per profile with a value."""
        kind = definition.kind
        universe = self.universe(kind)
        scope = _Scope(kind, "p.sid")
        root = definition.root
        if audience:
            condition = (
                self.condition(root, scope, None)
                if isinstance(root, Compare | And | Or | Not | AnyUser | AllUsers)
                else "FALSE"
            )
            if kind == "users" and not include_anonymous:
                condition = f"({condition}) AND {self.eligible('p.sid')}"
            joins = "".join(scope.joins)
            return self.cte(
                "c",
                f"SELECT p.sid AS sid, TRUE AS v FROM {universe} AS p{joins} WHERE {condition}",
            )
        value = self.trait_value(root, scope)
        joins = "".join(scope.joins)
        return self.cte(
            "c",
            f"SELECT sid, v FROM (SELECT p.sid AS sid, {value.sql} AS v "
            f"FROM {universe} AS p{joins}) AS x WHERE v IS NOT NULL",
        )

    def universe(self, kind: str) -> str:
        key = f"universe:{kind}"
        found = self.referenced.get((key, ""))
        if found is not None:
            return quote(found)
        if kind == "users":
            sql = (
                f"SELECT DISTINCT canonical_segment_id AS sid FROM {self.table('profile_merges')}"
                if self.has("profile_merges")
                else f"SELECT {self.null('text')} AS sid WHERE 1 = 0"
            )
        else:
            sql = f"SELECT DISTINCT aid AS sid FROM {quote(self.links())}"
        name = self.cte("u", sql)
        self.referenced[(key, "")] = name
        return quote(name)

    def links(self) -> str:
        """User ↔ account pairs: every canonical profile that sent a Group call for an
        account — Profiles Sync's ``user_accounts``, and the ``groups`` table's pairs, which
        are all in ``user_accounts`` too except where the warehouse was loaded before it
        existed (the union keeps those last two months of links)."""
        found = self.referenced.get(("links", ""))
        if found is not None:
            return found
        parts = []
        if self.has("user_accounts", "group_id"):
            parts.append(
                "SELECT a.group_id AS aid, a.canonical_segment_id AS sid "
                f"FROM {self.table('user_accounts')} AS a WHERE a.group_id IS NOT NULL"
            )
        if self.has("groups", "group_id"):
            parts.append(
                f"SELECT g.group_id AS aid, {self.canonical('g')} AS sid "
                f"FROM {self.table('groups')} AS g{self.merge_join('g')} "
                "WHERE g.group_id IS NOT NULL"
            )
        if parts:
            sql = " UNION ".join(parts)  # UNION: each pair once
            if len(parts) == 1:
                sql = "SELECT DISTINCT" + sql.removeprefix("SELECT")
        else:
            sql = f"SELECT {self.null('text')} AS aid, {self.null('text')} AS sid WHERE 1 = 0"
        name = self.cte("l", sql)
        self.referenced[("links", "")] = name
        return name

    def merge_join(self, alias: str) -> str:
        if not self.has("profile_merges"):
            return ""
        return (
            f" LEFT JOIN {self.table('profile_merges')} AS {alias}m "
            f"ON {alias}m.segment_id = {alias}.segment_id"
        )

    def canonical(self, alias: str) -> str:
        if not self.has("profile_merges"):
            return f"{alias}.segment_id"
        return f"COALESCE({alias}m.canonical_segment_id, {alias}.segment_id)"

    def eligible(self, sid: str) -> str:
        if not self.has("user_identifiers"):
            return "FALSE"
        types = ", ".join(literal(t) for t in ELIGIBLE)
        return (
            f"EXISTS (SELECT 1 FROM {self.table('user_identifiers')} AS ui "
            f"WHERE ui.canonical_segment_id = {sid} AND ui.type IN ({types}))"
        )

    # -- conditions --

    def condition(self, node: Condition, scope: _Scope, row: _Row | None) -> str:
        """SQL that is TRUE or FALSE, never NULL."""
        if isinstance(node, Compare):
            left = self.value(node.left, scope, row)
            args = [self.value(arg, scope, row) for arg in node.args]
            return self.holds(node.op, left, args, node.hours)
        if isinstance(node, And):
            return "(" + " AND ".join(self.condition(i, scope, row) for i in node.items) + ")"
        if isinstance(node, Or):
            return "(" + " OR ".join(self.condition(i, scope, row) for i in node.items) + ")"
        if isinstance(node, Not):
            return f"(NOT {self.condition(node.item, scope, row)})"
        if isinstance(node, AnyUser | AllUsers):
            return self.quantified(node, scope)
        raise ValueError(f"not a condition: {node!r}")

    def quantified(self, node: AnyUser | AllUsers, scope: _Scope) -> str:
        """ANY / ALL over an account's users: the users satisfying the inner condition, then
        a semi-join (ANY) or an anti-join (ALL: no user of the account outside them)."""
        links = quote(self.links())
        users = _Scope("users", "p.sid")
        condition = self.condition(node.item, users, None)
        joins = "".join(users.joins)
        members = self.cte(
            "q",
            f"SELECT p.sid AS sid FROM (SELECT DISTINCT sid FROM {links}) AS p{joins} "
            f"WHERE {condition}",
        )
        if isinstance(node, AnyUser):
            return (
                f"EXISTS (SELECT 1 FROM {links} AS k JOIN {quote(members)} AS q "
                f"ON q.sid = k.sid WHERE k.aid = {scope.sid})"
            )
        return (
            f"(NOT EXISTS (SELECT 1 FROM {links} AS k LEFT JOIN {quote(members)} AS q "
            f"ON q.sid = k.sid WHERE k.aid = {scope.sid} AND q.sid IS NULL))"
        )

    def holds(self, op: str, left: _V, args: list[_V], hours: int | None) -> str:
        if op == "absent":
            return f"({left.sql} IS NULL)"
        if op == "exists":
            return f"({left.sql} IS NOT NULL)"
        if op == "omits":
            return f"(NOT {self.holds('contains', left, args, hours)})"
        if left.kind == "array":
            alias = self.fresh("u")
            inner = self.holds(op, _V(f"{alias}.x", "text"), args, hours)
            return f"EXISTS (SELECT 1 FROM unnest({left.sql}) AS {alias}(x) WHERE {inner})"
        if left.listy:
            # an array property: a condition holds when one of its elements does (``$``)
            alias = self.fresh("u")
            each = self.holds(op, _V(f"{alias}.x", "text"), args, hours)
            whole = self.holds(op, _V(left.sql, "text"), args, hours)
            listed = self.listed(left.sql)
            # only an array reaches the JSON functions (engines may run both branches)
            safe = f"(CASE WHEN {listed} THEN {left.sql} ELSE '[]' END)"
            if self.dialect == "duckdb":
                elements = f"SELECT unnest(json_extract_string({safe}, '$[*]')) AS x"
            else:
                elements = f"SELECT jsonb_array_elements_text(CAST({safe} AS jsonb)) AS x"
            return (
                f"(CASE WHEN COALESCE({listed}, FALSE) "
                f"THEN EXISTS (SELECT 1 FROM ({elements}) AS {alias} WHERE {each}) "
                f"ELSE {whole} END)"
            )
        test = self.scalar(op, left, args, hours)
        return f"COALESCE(({left.sql} IS NOT NULL AND {test}), FALSE)"

    def listed(self, sql: str) -> str:
        """Whether a text is an array the warehouse wrote (JSON of scalars)."""
        return f"({sql} LIKE '[%' AND {self.matches(sql, _ARRAY)})"

    def expand(self, v: _V, row: _Row) -> str:
        """One row per element of an array property (the value itself when it is none), as
        the real-time engine adds each element to a most-frequent or unique reducer."""
        if row.elements is None:
            alias = self.fresh("e")
            listed = f"COALESCE({self.listed(v.sql)}, FALSE)"
            if self.dialect == "duckdb":
                items = (
                    f"unnest(CASE WHEN {listed} THEN json_extract_string(CASE WHEN {listed} "
                    f"THEN {v.sql} ELSE '[]' END, '$[*]') ELSE [{v.sql}] END)"
                )
            else:
                items = (
                    f"jsonb_array_elements_text(CASE WHEN {listed} THEN CAST(CASE WHEN {listed} "
                    f"THEN {v.sql} ELSE '[]' END AS jsonb) ELSE jsonb_build_array({v.sql}) END)"
                )
            row.joins.append(f" CROSS JOIN LATERAL (SELECT {items} AS x) AS {alias}")
            row.elements = f"{alias}.x"
        return row.elements

    def equal(self, left: _V, right: _V) -> str:
        """compare.py's ``_equal``: as numbers when both are, else as text (a bool's text is
        ``true``/``false``, never a number)."""
        a, b = self.num(left), self.num(right)
        ta, tb = self.txt(left), self.txt(right)
        if right.is_const and number(right.const) is None:
            return f"COALESCE({ta} = {tb}, FALSE)"
        if left.kind in ("integer", "float") and right.is_const:
            return f"COALESCE({a} = {b}, FALSE)"
        return (
            f"COALESCE(CASE WHEN {a} IS NOT NULL AND {b} IS NOT NULL THEN {a} = {b} "
            f"ELSE {ta} = {tb} END, FALSE)"
        )

    def scalar(self, op: str, left: _V, args: list[_V], hours: int | None) -> str:
        if op == "equals":
            return self.equal(left, args[0])
        if op == "differs":
            return f"(NOT {self.equal(left, args[0])})"
        if op == "one_of":
            return "(" + " OR ".join(self.equal(left, a) for a in args) + ")"
        if op in ("greater_than", "at_least", "less_than", "at_most"):
            sign = {"greater_than": ">", "at_least": ">=", "less_than": "<", "at_most": "<="}[op]
            if args[0].is_const and number(args[0].const) is None:
                return "FALSE"
            return f"COALESCE({self.num(left)} {sign} {self.num(args[0])}, FALSE)"
        if op == "contains":
            found = [
                f"COALESCE(strpos({self.txt(left)}, {self.txt(a)}) > 0, FALSE)"
                for a in args
                if not (a.is_const and a.const is None)
            ]
            return "(" + " OR ".join(found) + ")" if found else "FALSE"
        if op in ("starts_with", "ends_with"):
            arg = args[0]
            if arg.is_const and arg.const is None:
                return "FALSE"
            whole, part = self.txt(left), self.txt(arg)
            if op == "starts_with":
                return f"COALESCE(substr({whole}, 1, length({part})) = {part}, FALSE)"
            return f"COALESCE(right({whole}, length({part})) = {part}, FALSE)"
        at = self.instant(left)
        if op in ("before_date", "after_date"):
            sign = "<" if op == "before_date" else ">"
            return f"COALESCE({at} {sign} {self.instant(args[0])}, FALSE)"
        span = (hours or 0) * HOUR
        now, low, high = self.at(self.now), self.at(self.now - span), self.at(self.now + span)
        test = {
            "within_last": f"{at} BETWEEN {low} AND {now}",
            "within_next": f"{at} BETWEEN {now} AND {high}",
            "before_last": f"{at} <= {low}",
            "after_next": f"{at} >= {high}",
        }[op]
        return f"COALESCE({test}, FALSE)"

    # -- values --

    def value(self, node: Value, scope: _Scope, row: _Row | None) -> _V:
        if isinstance(node, Const):
            return self.constant(node.value)
        if isinstance(node, PropertyRef | ContextRef):
            if row is None:
                return _V(self.null("text"), "text")  # a property outside an event: missing
            return self.field(node, row)
        if isinstance(node, TraitRef):
            return self.trait(node.key, scope, row)
        if row is None:
            return self.reduced(node, scope)
        return self.step(node, scope, row)

    def field(self, node: PropertyRef | ContextRef, row: _Row) -> _V:
        """An event's property (or context value) as its column in the event's table."""
        if isinstance(node, PropertyRef) and node.parent:
            if row.parent is None:
                return _V(self.null("text"), "text")
            row = row.parent
        parts = node.path.split(".")
        if isinstance(node, ContextRef):
            column = self.naming.column("context_" + "_".join(parts))
        else:
            column = self.naming.column("_".join(parts))
            reserved = _STANDARD if row.table in PAGE_TABLES.values() else _TRACK_STANDARD
            if column in reserved or column.startswith("context_"):
                column = ""
        if not column or not self.has(row.table, column):
            return _V(self.null("text"), "text")
        assert row.table is not None
        kind = _KINDS.get(self.columns[row.table][column], "text")
        return _V(f"{row.alias}.{quote(column)}", kind, listy=kind == "text")

    def trait(self, key: str, scope: _Scope, row: _Row | None) -> _V:
        """A trait of the profile (or account): another computation's value when the key is
        one, else the custom trait (``user_traits``; an account's ``account_traits``, or in a
        warehouse without it the latest value of its Group calls in ``groups``)."""
        cte, kind = self.trait_cte(key, scope.kind)
        sid = scope.sid if row is None else f"{row.alias}.__sid"
        alias = self.fresh("t")
        joins = scope.joins if row is None else row.joins
        joins.append(f" LEFT JOIN {quote(cte)} AS {alias} ON {alias}.sid = {sid}")
        sql = f"{alias}.v"
        if kind == "bool":
            sql = f"COALESCE({sql}, FALSE)"  # not a member: false, as the engine reads it
        # a custom trait's text is JSON for what is not a string: an array compares by element
        return _V(sql, kind, listy=kind == "text" and key not in self.references)

    def trait_cte(self, key: str, kind: str) -> tuple[str, Kind]:
        reference = self.references.get(key)
        if reference is not None and reference.definition.kind == kind:
            found = self.referenced.get((kind, key))
            if found is None:
                if key in self.building:
                    raise DefinitionError(
                        f"the computation {key!r} reads itself", reference.definition.text, 0
                    )
                self.building.add(key)
                found = self.computation(
                    reference.definition,
                    reference.include_anonymous,
                    audience=reference.kind == "audience",
                )
                self.building.discard(key)
                self.referenced[(kind, key)] = found
            if reference.kind == "audience":
                return found, "bool"
            return found, _result_kind(reference.definition.root, self, kind)
        found = self.referenced.get((f"trait:{kind}", key))
        column_kind: Kind = "text"
        if kind == "users":
            sql = (
                f"SELECT canonical_segment_id AS sid, value AS v FROM "
                f"{self.table('user_traits')} WHERE name = {literal(key)}"
                if self.has("user_traits")
                else f"SELECT {self.null('text')} AS sid, {self.null('text')} AS v WHERE 1 = 0"
            )
        elif self.has("account_traits"):
            # Not mixed with ``groups``: a trait a Group call removed would come back.
            sql = (
                f"SELECT group_id AS sid, value AS v FROM {self.table('account_traits')} "
                f"WHERE name = {literal(key)}"
            )
        else:
            column = self.naming.column(key)
            if column and column not in _STANDARD and self.has("groups", column):
                column_kind = _KINDS.get(self.columns["groups"][column], "text")
                c = f"g.{quote(column)}"
                sql = (
                    f"SELECT g.group_id AS sid, (array_agg({c} ORDER BY "
                    f'COALESCE(g."timestamp", g.received_at) DESC) FILTER (WHERE {c} IS NOT NULL))'
                    f"[1] AS v FROM {self.table('groups')} AS g WHERE g.group_id IS NOT NULL "
                    "GROUP BY g.group_id"
                )
            else:
                sql = f"SELECT {self.null('text')} AS sid, {self.null('text')} AS v WHERE 1 = 0"
        if found is None:
            found = self.cte("t", sql)
            self.referenced[(f"trait:{kind}", key)] = found
        return found, column_kind

    def trait_value(self, root: Condition | Value, scope: _Scope) -> _V:
        """A computed trait's value per profile: a reduce over all the profile's events, with
        a count, sum or unique count 0 (not missing) once the profile had matching events,
        as the real-time trait that had a value keeps one."""
        if isinstance(root, Reduce):
            return self.reduced(root, scope, seen=True)
        if isinstance(root, TraitRef | Const):
            return self.value(root, scope, None)
        return _V(self.null("text"), "text")

    # -- streams --

    def source(self, stream: Stream, scope_kind: str) -> tuple[str, str | None]:
        """The rows of a stream's event with the id they count for (``__sid``), and the
        table they come from (None when no such event was ever loaded)."""
        name = stream.event
        table = PAGE_TABLES.get(name) or self.naming.event_table(name)
        if not table or not self.has(table):
            return f"SELECT {self.null('text')} AS __sid WHERE 1 = 0", None
        filters: list[str] = []
        if table not in PAGE_TABLES.values():
            filters.append(
                f"t.event_text = {literal(name[:EVENT_TEXT])}"
                if self.has(table, "event_text")
                else "FALSE"
            )
        excluded = sorted(set(stream.exclude_sources) | self.ignore_sources)
        if excluded and self.has(table, "event_source_id"):
            ids = ", ".join(literal(s) for s in excluded)
            filters.append(f"(t.event_source_id IS NULL OR t.event_source_id NOT IN ({ids}))")
        where = " WHERE " + " AND ".join(filters) if filters else ""
        if scope_kind == "users":
            sql = (
                f"SELECT {self.canonical('t')} AS __sid, t.* FROM {self.table(table)} AS t"
                f"{self.merge_join('t')}{where}"
            )
        else:
            links = quote(self.links())
            sql = (
                f"SELECT k.aid AS __sid, t.* FROM {self.table(table)} AS t{self.merge_join('t')} "
                f"JOIN {links} AS k ON k.sid = {self.canonical('t')}{where}"
            )
        return sql, table

    def when(self, alias: str, table: str | None) -> str:
        stamp = f'{alias}."timestamp"' if self.has(table, "timestamp") else None
        received = f"{alias}.received_at" if self.has(table, "received_at") else None
        if stamp and received:
            return f"COALESCE({stamp}, {received})"
        return stamp or received or self.null("timestamp")

    def window(self, stream: Stream, alias: str, table: str | None) -> str:
        """``realtime._read``'s hours: inside when ``now_hour - hour < end`` (and, for
        ``between``, ``>= start``), as bounds on the event's time."""
        window = stream.window
        if window is None:
            return "TRUE"
        at = self.when(alias, table)
        tests = [f"{at} >= {self.at((self.now_hour - window.end_hours + 1) * HOUR)}"]
        if window.start_hours > 0:
            tests.append(f"{at} < {self.at((self.now_hour - window.start_hours + 1) * HOUR)}")
        return "(" + " AND ".join(tests) + ")"

    def parent_window(self, stream: Stream, row: _Row, parent: _Row) -> str:
        """A funnel step: after the parent event, and (by hour) from ``start`` to ``end``
        hours after it."""
        child_at, parent_at = self.when(row.alias, row.table), self.when(parent.alias, parent.table)
        tests = [f"{child_at} >= {parent_at}"]
        if row.table == parent.table and self.has(row.table, "id"):
            tests.append(f"{row.alias}.id IS DISTINCT FROM {parent.alias}.id")
        window = stream.window
        if window is not None:
            hours = f"({self.hour_of(child_at)} - {self.hour_of(parent_at)})"
            tests.append(f"{hours} < {window.end_hours}")
            if window.start_hours > 0:
                tests.append(f"{hours} >= {window.start_hours}")
        return " AND ".join(tests)

    def reduced_value(self, node: Reduce, row: _Row) -> tuple[str, Kind, str]:
        """The value each event gives the reducer (``realtime._value_of``), its kind, and
        the SQL saying the event gives one."""
        if node.op == "count":
            return "1", "integer", "TRUE"
        ref = node.value
        v = self.field(ref, row) if ref is not None else _V(self.null("text"), "text")
        if node.op in ("sum", "avg") or (node.op in ("min", "max") and node.as_type != "string"):
            sql = self.num(v)
            return sql, "float", f"{sql} IS NOT NULL"
        if node.op in ("mode", "unique", "unique_count") and v.listy and node.as_type != "array":
            element = self.expand(v, row)
            return element, "text", f"{element} IS NOT NULL"
        if node.op in ("min", "max", "mode", "unique", "unique_count"):
            return self.txt(v), "text", f"{v.sql} IS NOT NULL"
        return v.sql, v.kind, f"{v.sql} IS NOT NULL"  # first, last: the value itself

    def aggregate(self, node: Reduce, row: _Row, given: str) -> tuple[str, Kind]:
        """The reducer over the rows where ``given`` holds (mode: see ``moded``)."""
        value, kind, gives = self.reduced_value(node, row)
        keep = f"FILTER (WHERE {given} AND {gives})"
        at = self.when(row.alias, row.table)
        op = node.op
        if op == "count":
            return f"count(*) FILTER (WHERE {given})", "integer"
        if op == "sum":
            return f"sum({value}) {keep}", "float"
        if op == "avg":
            return f"avg({value}) {keep}", "float"
        if op in ("min", "max"):
            if kind == "text":
                return f"{op}({self.collate(value)}) {keep}", "text"
            return f"{op}({value}) {keep}", "float"
        if op in ("first", "last"):
            order = "ASC" if op == "first" else "DESC"
            tie = f", {row.alias}.received_at {order}" if self.has(row.table, "received_at") else ""
            return f"(array_agg({value} ORDER BY {at} {order}{tie}) {keep})[1]", kind
        if op == "unique_count":
            return f"count(DISTINCT {value}) {keep}", "integer"
        if op == "unique":
            v = self.collate(value)
            return f"array_agg(DISTINCT {v} ORDER BY {v}) {keep}", "array"
        raise ValueError(op)

    def reduced(self, node: Reduce, scope: _Scope, *, seen: bool = False) -> _V:
        """A top-level reduce: one aggregate per profile (a CTE joined to the profiles); a
        count, sum or unique count is 0 over an empty window (``seen``: only once the
        profile had a matching event at all)."""
        sql, table = self.source(node.stream, scope.kind)
        row = _Row("a", table, source=sql)
        where = [self.condition(c, scope, row) for c in node.stream.where]
        window = self.window(node.stream, "a", table)
        zeroes = node.op in ("count", "sum", "unique_count")
        counted = seen and zeroes and node.stream.window is not None
        if node.op == "mode":
            name = self.moded(node, row, sql, where, window)
        else:
            if counted:
                given = window
                _, _, gives = self.reduced_value(node, row)
                extra = f", count(*) FILTER (WHERE {gives}) AS n"
            else:
                given = "TRUE"
                where = [*where, window]
                extra = ""
            agg, _ = self.aggregate(node, row, given)
            filters = " WHERE " + " AND ".join(where) if where else ""
            name = self.cte(
                "r",
                f"SELECT a.__sid AS sid, {agg} AS v{extra} FROM ({sql}) AS a"
                f"{''.join(row.joins)}{filters} "
                "GROUP BY a.__sid",
            )
        alias = self.fresh("j")
        scope.joins.append(f" LEFT JOIN {quote(name)} AS {alias} ON {alias}.sid = {scope.sid}")
        kind = _reduce_kind(node, self, row)
        value = f"{alias}.v"
        if zeroes:
            if counted:
                value = f"(CASE WHEN {alias}.n > 0 THEN COALESCE({alias}.v, 0) END)"
            elif not seen:
                value = f"COALESCE({alias}.v, 0)"
            elif node.stream.window is None:
                value = f"{alias}.v"
        return _V(value, kind)

    def moded(self, node: Reduce, row: _Row, sql: str, where: list[str], window: str) -> str:
        """Most frequent value: seen at least ``min_frequency`` times, ties alphabetical."""
        value, _, gives = self.reduced_value(node, row)
        filters = " AND ".join([*where, window, gives])
        least = max(node.min_frequency or 1, 1)
        counts = (
            f"SELECT a.__sid AS sid, {value} AS x, count(*) AS n FROM ({sql}) AS a"
            f"{''.join(row.joins)} WHERE {filters} GROUP BY a.__sid, {value}"
        )
        ranked = (
            f"SELECT sid, x, n, row_number() OVER (PARTITION BY sid ORDER BY n DESC, "
            f"{self.collate('x')} ASC) AS k FROM ({counts}) AS g"
        )
        return self.cte(
            "m", f"SELECT sid, x AS v FROM ({ranked}) AS h WHERE k = 1 AND n >= {least}"
        )

    def buckets(
        self, node: Reduce, family: str, keep: int | None, folds: bool, received_before: float
    ) -> str:
        """``compile_buckets``: the stream's rows received before the cut, each in its hour's
        bucket (or the folded one), one aggregate per profile and bucket."""
        sql, table = self.source(node.stream, "users")
        if table is None or not self.has(table, "received_at") or (keep is None and not folds):
            big, txt = "CAST(NULL AS BIGINT)", self.null("text")
            nothing = (txt, big, txt, big, self.null("timestamp"))
            pairs = zip(BUCKET_COLUMNS, nothing, strict=True)
            return f"SELECT {', '.join(f'{e} AS {quote(c)}' for c, e in pairs)} WHERE 1 = 0"
        row = _Row("a", table, source=sql)
        scope = _Scope("users", "a.__sid")
        where = [self.condition(c, scope, row) for c in node.stream.where]
        value, _, gives = self.reduced_value(node, row)
        at = self.when("a", table)
        hour = f"CAST({self.hour_of(at)} AS BIGINT)"
        old = "TRUE" if keep is None else f"({self.now_hour} - {hour} >= {int(keep)})"
        filters = [
            "a.__sid IS NOT NULL",
            f"{at} IS NOT NULL",
            f"a.received_at < {self.at(received_before)}",
            *where,
            gives,
        ]
        if folds:
            slot = f"(CASE WHEN {old} THEN {FOLDED} ELSE {hour} END)"
        else:
            filters.append(f"NOT {old}")
            slot = hour
        rows = (
            f"SELECT a.__sid AS sid, {slot} AS slot, {value} AS x, {at} AS w, "
            f"a.received_at AS r FROM ({sql}) AS a{''.join(row.joins)} "
            f"WHERE {' AND '.join(filters)}"
        )
        group = "sid, slot"
        value_sql, at_sql = self.null("text"), self.null("timestamp")
        if family == "sum":
            value_sql = "sum(x)"
        elif family in ("min", "max"):
            value_sql = f"{family}({self.collate('x') if node.as_type == 'string' else 'x'})"
        elif family in ("mode", "unique"):
            value_sql, group = "x", "sid, slot, x"
        elif family in ("first", "last"):  # ties at one time go by arrival (received_at)
            order = "ASC" if family == "first" else "DESC"
            value_sql = f"(array_agg(x ORDER BY w {order}, r {order}))[1]"
            at_sql = f"{'min' if family == 'first' else 'max'}(w)"
        picked = zip(BUCKET_COLUMNS, ("sid", "slot", value_sql, "count(*)", at_sql), strict=True)
        body = (
            f"SELECT {', '.join(f'{e} AS {quote(c)}' for c, e in picked)} "
            f"FROM ({rows}) AS s GROUP BY {group}"
        )
        if not self.ctes:
            return body
        ctes = ",\n".join(f"{quote(name)} AS (\n{cte}\n)" for name, cte in self.ctes)
        return f"WITH {ctes}\n{body}"

    def step(self, node: Reduce, scope: _Scope, parent: _Row) -> _V:
        """A funnel step (a reduce inside a parent event's ``where``): per parent event, the
        child events of the same profile after it, within its window. The parent's rows are
        joined to the child's and grouped by the parent row (a join engines can hash on the
        profile), then joined back to the parent by its ``id``."""
        if node.op == "mode" or not parent.source or not self.has(parent.table, "id"):
            return self.correlated_step(node, scope, parent)
        alias, again, found = self.fresh("c"), self.fresh("pa"), self.fresh("f")
        sql, table = self.source(node.stream, scope.kind)
        parent_again = _Row(again, parent.table, parent.parent, parent.source)
        row = _Row(alias, table, parent_again, sql)
        where = [self.condition(c, scope, row) for c in node.stream.where]
        on = [f"{alias}.__sid = {again}.__sid", self.parent_window(node.stream, row, parent_again)]
        agg, _ = self.aggregate(node, row, "TRUE")
        filters = " WHERE " + " AND ".join(where) if where else ""
        derived = (
            f"SELECT {again}.id AS id, {again}.__sid AS sid, {agg} AS v "
            f"FROM ({parent.source}) AS {again} JOIN ({sql}) AS {alias} ON {' AND '.join(on)}"
            f"{''.join(row.joins)}{filters} GROUP BY {again}.id, {again}.__sid"
        )
        parent.joins.append(
            f" LEFT JOIN ({derived}) AS {found} ON {found}.id = {parent.alias}.id "
            f"AND {found}.sid = {parent.alias}.__sid"
        )
        value = f"{found}.v"
        if node.op in ("count", "sum", "unique_count"):
            value = f"COALESCE({value}, 0)"
        return _V(value, _reduce_kind(node, self, row))

    def correlated_step(self, node: Reduce, scope: _Scope, parent: _Row) -> _V:
        """A funnel step as a correlated subquery (a most-frequent value, or a parent without
        row ids)."""
        alias = self.fresh("f")
        sql, table = self.source(node.stream, scope.kind)
        row = _Row(alias, table, parent, sql)
        where = [self.condition(c, scope, row) for c in node.stream.where]
        where.append(f"{alias}.__sid = {parent.alias}.__sid")
        where.append(self.parent_window(node.stream, row, parent))
        kind = _reduce_kind(node, self, row)
        if node.op == "mode":
            value, _, gives = self.reduced_value(node, row)
            joins = "".join(row.joins)
            least = max(node.min_frequency or 1, 1)
            inner = (
                f"SELECT {value} AS x, count(*) AS n FROM ({sql}) AS {alias}{joins} "
                f"WHERE {' AND '.join([*where, gives])} GROUP BY {value} "
                f"ORDER BY n DESC, {self.collate('x')} ASC LIMIT 1"
            )
            return _V(f"(SELECT x FROM ({inner}) AS o WHERE n >= {least})", kind)
        agg, _ = self.aggregate(node, row, "TRUE")
        joins = "".join(row.joins)
        value = f"(SELECT {agg} FROM ({sql}) AS {alias}{joins} WHERE {' AND '.join(where)})"
        if node.op in ("sum", "unique_count"):
            value = f"COALESCE({value}, 0)"
        return _V(value, kind)


def _reduce_kind(node: Reduce, compiler: _Compiler, row: _Row) -> Kind:
    op = node.op
    if op in ("count", "unique_count"):
        return "integer"
    if op in ("sum", "avg"):
        return "float"
    if op in ("min", "max"):
        return "text" if node.as_type == "string" else "float"
    if op == "mode":
        return "text"
    if op == "unique":
        return "array"
    return compiler.reduced_value(node, row)[1]


def _result_kind(root: Condition | Value, compiler: _Compiler, kind: str) -> Kind:
    """The kind of another computed trait's value, for comparing it."""
    if isinstance(root, Reduce):
        _, table = compiler.source(root.stream, kind)
        return _reduce_kind(root, compiler, _Row("a", table))
    return "text"
