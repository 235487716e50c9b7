"""Put Segment-shaped rows into a warehouse in bulk: DuckDB (embedded) and PostgreSQL.

What every loader shares lives here; ``duckdb`` and ``postgres`` only speak their database.

- A load is one table in one transaction: create the schema and table if missing, ``ADD
  COLUMN`` for columns seen for the first time (typed from ``TableRows.types``, and only when
  the batch has a non-null value, AC-127), then insert. A column's type, once in the catalog,
  is never changed: values are cast into it (``Cast``, by default the rows module's ``cast``,
  so one set of rules decides rows and loads); a value that cannot be cast is loaded as NULL
  and reported in one notice per column (a count and the first offending value), not one
  notice per value — a million identical notices would hide the others.
- The columns are ``id``, Segment's standard columns (``TableRows.standard``: ``sent_at``,
  ``original_timestamp``… exist in every table even when no event had a value, so queries
  naming them never fail), those of ``TableRows.types`` (the rows module lists every column
  with a non-null value), then any other key found in the rows, in name order. A table made
  before it had a standard column gets it (``ADD COLUMN``) with its next load.
- Rows become one pyarrow table and the database ingests it in one statement (DuckDB scans
  it; PostgreSQL receives it as CSV through ``COPY``). Python touches values once on the
  common path: non-timestamp columns convert in a single C pass over the dicts, and only a
  column holding a value of another kind meets ``cast`` value by value.
- Dedupe (AC-129) happens twice: inside the batch here (the first row of an ``id`` wins: it
  is the earlier copy of a retried message), and against the table in SQL.
- ``users`` (AC-128) and ``accounts`` are upserted on ``id``: within the batch and against
  the table, each column takes the non-null value of the newest row — newest meaning the
  latest ``timestamp`` (``received_at`` when the batch has no ``timestamp``; ties, and rows
  without either, go to the later row). A trait a newer identify lacks keeps its value; an
  older identify loaded late only fills columns that are still NULL.
- Strings are cut at 512 characters (Segment's limit) and NUL characters are removed
  (PostgreSQL cannot store them; DuckDB does the same so both warehouses agree).
- Rows without an ``id`` cannot be deduplicated and are skipped with a notice.
- A deletion (a regulation's, ``warehouse/erasure.py``) is ``delete`` with a ``RowMatch`` per
  table and batch of ids, then one ``compact`` so the deleted values leave the storage too.

A loader is a session: it connects on first use and keeps the connection until ``close()``
(a sync opens one per run and closes it at the end). Loaders are not thread-safe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Final, Literal, NamedTuple
from typing import cast as typed

import pyarrow as pa
import pyarrow.compute as pc

from headwater.errors import WarehouseError
from headwater.warehouse.columns import ColumnType, TableRows
from headwater.warehouse.rows import cast as rows_cast
from headwater.warehouse.rows import column_type

__all__ = [
    "UPSERT_TABLES",
    "VARCHAR_LIMIT",
    "Batch",
    "Cast",
    "LoadResult",
    "Loader",
    "RowMatch",
    "WarehouseError",
    "open_loader",
    "prepare_batch",
    "rows_cast",
    "sql_column_type",
]

VARCHAR_LIMIT: Final = 512  # Segment truncates strings to 512 characters
UPSERT_TABLES: Final = frozenset({"users", "accounts"})  # one row per id, latest traits
ORDER_KEYS: Final = ("timestamp", "received_at")  # what "newest" means for an upsert

# ``cast(value, column_type)``: called for a non-null value whose Python type is not already
# the column's kind; returns the value as that kind (``datetime`` in UTC, ``int``, ``float``,
# ``bool``, ``str``), or None — or raises ValueError/TypeError — when it cannot, and the
# loader then stores NULL and counts it in a notice. The default is the rows module's
# ``cast``, so one set of rules decides both the rows and the loads.
Cast = Callable[[Any, ColumnType], Any]

ARROW_TYPES: Final[dict[ColumnType, pa.DataType]] = {
    "timestamp": pa.timestamp("us", tz="UTC"),
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "varchar": pa.string(),
}
# Python types that go to Arrow without ``cast`` (bool is not an int here: type() is exact).
_NATIVE: Final[dict[ColumnType, frozenset[type]]] = {
    "timestamp": frozenset({datetime}),
    "integer": frozenset({int}),
    "float": frozenset({float, int}),
    "boolean": frozenset({bool}),
    "varchar": frozenset({str}),
}
_CAST_ERRORS: Final = (ValueError, TypeError, OverflowError, ArithmeticError)
_ARROW_ERRORS: Final = (pa.ArrowException, OverflowError, TypeError, ValueError)


class LoadResult(NamedTuple):
    """Rows inserted (for users/accounts: inserted or updated) and the load's notices."""

    rows: int
    notices: list[str]


_INTEGER_TYPES: Final = frozenset(
    {
        "BIGINT",
        "INTEGER",
        "INT",
        "SMALLINT",
        "TINYINT",
        "HUGEINT",
        "UBIGINT",
        "UINTEGER",
        "USMALLINT",
        "UTINYINT",
        "UHUGEINT",
        "INT8",
        "INT4",
        "INT2",
    }
)


def sql_column_type(sql_type: str) -> ColumnType:
    """Which of the five types a catalog type is, so a column altered by its owner (TEXT,
    NUMERIC, INTEGER…) still gets values of the right kind."""
    name = sql_type.upper()
    if name.startswith(("TIMESTAMP", "DATE")):
        return "timestamp"
    if name in _INTEGER_TYPES:
        return "integer"
    if name.startswith(("DOUBLE", "FLOAT", "REAL", "DECIMAL", "NUMERIC")):
        return "float"
    if name in ("BOOLEAN", "BOOL"):
        return "boolean"
    return "varchar"


# --- rows → one Arrow table ------------------------------------------------------------------


@dataclass
class Batch:
    """One table's rows ready to load: an Arrow table whose columns already have the
    warehouse's types, deduplicated (or merged, for upserts) on ``id``."""

    table: str
    columns: list[str]  # ``id`` first; names as the warehouse stores them
    types: dict[str, ColumnType]  # every batch column's type (the catalog's if it exists)
    new_columns: list[str]  # batch columns not yet in the table (all of them if it is new)
    data: pa.Table
    upsert: bool
    order_key: str | None  # the batch column that says which row is newest (upserts)
    notices: list[str] = field(default_factory=list)


def prepare_batch(
    table: str,
    rows: TableRows,
    existing: dict[str, ColumnType],
    cast: Cast,
    name: Callable[[str], str] = str,
) -> Batch:
    """Turn ``rows`` into a ``Batch`` for a table whose catalog columns are ``existing``.

    ``name`` maps a column name to the form the database stores (PostgreSQL cuts names at
    63 bytes); two names that end up equal are one column, and the first one wins.
    """
    notices: list[str] = []
    records = rows.rows
    # Segment's columns the table still lacks: created even when this batch has no value.
    required = {key for key in rows.standard if key != "id" and name(key) not in existing}
    # Column order: id, Segment's columns, the rows module's (it lists columns as it met
    # them), then any stragglers.
    keys: dict[str, None] = {"id": None}
    keys.update(dict.fromkeys(k for k in rows.standard if k in required))
    keys.update(dict.fromkeys(rows.types))
    keys.update(dict.fromkeys(sorted(set().union(*records) - keys.keys())))

    plan: dict[str, tuple[str, ColumnType]] = {}  # row key -> (column, type)
    used: set[str] = set()
    for key in keys:
        column = "id" if key == "id" else name(key)
        if column in used:
            notices.append(
                f"{table}.{key}: same column name as {column!r} in the warehouse; values skipped"
            )
            continue
        to: ColumnType = (
            "varchar"
            if key == "id"
            else (
                existing.get(column)
                or rows.types.get(key)
                or rows.standard.get(key)
                or _first_type(records, key)
            )
        )
        plan[key] = (column, existing.get(column, to) if key == "id" else to)
        used.add(column)

    arrays = _arrow_columns(records, plan, cast, table, notices)
    columns: list[str] = []
    kept: list[pa.Array[Any]] = []
    types: dict[str, ColumnType] = {}
    for key, (column, to) in plan.items():
        array = arrays[key]
        if (
            key != "id"
            and array.null_count == len(array)
            and column not in existing
            and key not in required
        ):
            continue  # a column is created only for a non-null value (AC-127)
        columns.append(column)
        kept.append(array)
        types[column] = to
    data = pa.Table.from_arrays(kept, names=columns)

    missing = data["id"].null_count
    if missing:
        data = data.filter(pc.is_valid(data["id"]))
        notices.append(f"{table}: {missing} row(s) without an id were skipped")
    upsert = table in UPSERT_TABLES or rows.upsert
    # Newest = latest ``timestamp`` (else ``received_at``); a batch with neither is newest.
    order_key = (
        next((k for k in ORDER_KEYS if k in types and data[k].null_count < data.num_rows), None)
        if upsert
        else None
    )
    data = _merge(data, order_key) if upsert else _first_per_id(data)
    return Batch(
        table=table,
        columns=columns,
        types=types,
        new_columns=[c for c in columns if c not in existing],
        data=data,
        upsert=upsert,
        order_key=order_key,
        notices=notices,
    )


def _arrow_columns(
    records: list[dict[str, Any]],
    plan: dict[str, tuple[str, ColumnType]],
    cast: Cast,
    table: str,
    notices: list[str],
) -> dict[str, pa.Array[Any]]:
    """Every planned column as Arrow, keyed by row key.

    Non-timestamp columns first go through one ``pa.array`` of the rows as a struct — a
    single pass in C over the dicts. That conversion fails on any value of another kind
    (text in an integer column…), and then those columns go one by one through ``cast``;
    its only silent conversions (float → int truncated, bool → float) are the casts' own.
    Timestamp columns always go one by one: Arrow would read an int as microseconds.
    """
    arrays: dict[str, pa.Array[Any]] = {}
    fast = {k: to for k, (_, to) in plan.items() if to != "timestamp"}
    if fast:
        try:
            struct = typed(
                pa.StructArray,
                pa.array(records, type=pa.struct([(k, ARROW_TYPES[t]) for k, t in fast.items()])),
            )
        except _ARROW_ERRORS:
            pass
        else:
            for index, (key, kind) in enumerate(fast.items()):
                child = struct.field(index)
                arrays[key] = _clip(child) if kind == "varchar" else child
    for key, (column, to) in plan.items():
        if key in arrays:
            continue
        array, failed = _arrow_column([r.get(key) for r in records], to, cast)
        if failed.count and key != "id":  # an id that is not text becomes text
            notices.append(
                f"{table}.{column}: {failed.count} value(s) could not be cast to "
                f"{to} and were loaded as NULL (first: {failed.example!r:.80})"
            )
        arrays[key] = array
    return arrays


def _first_type(records: Iterable[dict[str, Any]], key: str) -> ColumnType:
    for record in records:
        value = record.get(key)
        if value is not None:
            return column_type(value)
    return "varchar"


@dataclass
class _Failed:
    count: int = 0
    example: Any = None

    def add(self, value: Any) -> None:
        if not self.count:
            self.example = value
        self.count += 1


def _arrow_column(
    values: list[Any],
    to: ColumnType,
    cast: Cast,
) -> tuple[pa.Array[Any], _Failed]:
    """One column as Arrow; values of the column's own kind take the fast path."""
    arrow_type = ARROW_TYPES[to]
    native = _NATIVE[to]
    failed = _Failed()
    kinds = set(map(type, values))
    kinds.discard(type(None))
    array: pa.Array[Any] | None = None
    if kinds <= native:
        try:
            array = pa.array(values, type=arrow_type)
        except _ARROW_ERRORS:
            array = None  # e.g. an int beyond 64 bits: sort it out value by value
    if array is None:
        converted: list[Any] = []
        for value in values:
            if value is None or type(value) in native:
                converted.append(value)
                continue
            try:
                result = cast(value, to)
            except _CAST_ERRORS:
                result = None
            if result is None:
                failed.add(value)
            converted.append(result)
        try:
            array = pa.array(converted, type=arrow_type)
        except _ARROW_ERRORS:
            array = pa.array(_scalars(converted, values, arrow_type, failed), type=arrow_type)
    if to == "varchar":
        array = _clip(array)
    return array, failed


def _scalars(
    converted: list[Any], original: list[Any], arrow_type: pa.DataType, failed: _Failed
) -> list[Any]:
    out: list[Any] = []
    for value, source in zip(converted, original, strict=True):
        if value is not None:
            try:
                pa.scalar(value, type=arrow_type)
            except _ARROW_ERRORS:
                value = None
                failed.add(source)
        out.append(value)
    return out


def _clip(array: pa.Array[Any]) -> pa.Array[Any]:
    """Segment's 512-character cut, and no NUL characters (PostgreSQL refuses them)."""
    if len(array) == array.null_count:
        return array
    longest = pc.max(pc.utf8_length(typed(pa.StringArray, array))).as_py()
    if longest is not None and longest > VARCHAR_LIMIT:
        array = pc.utf8_slice_codeunits(array, 0, VARCHAR_LIMIT)
    if pc.any(pc.match_substring(array, "\x00")).as_py():
        array = pc.replace_substring(array, "\x00", "")
    return array


def _first_per_id(data: pa.Table) -> pa.Table:
    """Within a batch the first copy of a message wins (AC-129)."""
    if pc.count_distinct(data["id"]).as_py() == data.num_rows:
        return data
    seq = pa.array(range(data.num_rows), pa.int64())
    first = (
        data.select(["id"])
        .append_column("__seq", seq)
        .group_by("id", use_threads=False)
        .aggregate([("__seq", "min")])
    )
    # Groups come in order of first appearance, so the first rows are already in batch order.
    return data.take(first["__seq_min"])


def _merge(data: pa.Table, order_key: str | None) -> pa.Table:
    """One row per id; each column is the newest non-null value (upsert tables)."""
    others = [c for c in data.column_names if c != "id"]
    if not others or pc.count_distinct(data["id"]).as_py() == data.num_rows:
        return _first_per_id(data)
    seq = pa.array(range(data.num_rows), pa.int64())
    ordered = data.append_column("__seq", seq)
    # Oldest first (rows without an order key count as oldest), batch order on ties.
    sort_keys: list[Any] = [("__seq", "ascending", "at_start")]
    if order_key:
        sort_keys.insert(0, (order_key, "ascending", "at_start"))
    ordered = ordered.sort_by(sort_keys)
    skip_nulls = pc.ScalarAggregateOptions(skip_nulls=True)
    merged = ordered.group_by("id", use_threads=False).aggregate(
        [(c, "last", skip_nulls) for c in others]
    )
    return merged.rename_columns({f"{c}_last": c for c in others}).select(data.column_names)


# --- the interface -----------------------------------------------------------------------------


@dataclass(frozen=True)
class RowMatch:
    """The rows a deletion takes: those where a column of ``any_of`` holds one of its values,
    or whose two ``pairs`` columns hold one of its ``(first, second)`` pairs; with ``within``,
    only among rows whose column holds one of those values (a source's rows in a schema that
    several sources share). A match with no values takes nothing."""

    any_of: Mapping[str, Collection[str]] = field(default_factory=dict)
    pairs: tuple[str, str, Collection[tuple[str, str]]] | None = None
    within: tuple[str, Collection[str]] | None = None

    def __bool__(self) -> bool:
        if self.within is not None and not self.within[1]:
            return False
        return any(self.any_of.values()) or bool(self.pairs and self.pairs[2])


Kind = Literal["duckdb", "postgres"]


class Loader(ABC):
    """One warehouse. Connects on first use; ``close()`` (or ``with``) releases it."""

    kind: str

    @abstractmethod
    def ping(self) -> None:
        """Connect (for writing) and check the warehouse answers; WarehouseError if not."""

    @abstractmethod
    def columns(self, schema: str) -> dict[str, dict[str, ColumnType]]:
        """Tables and typed columns of ``schema`` from the catalog (empty if none)."""

    @abstractmethod
    def load(self, schema: str, rows: TableRows) -> LoadResult:
        """Load one table's rows in one transaction (schema evolution, casts, dedupe)."""

    @abstractmethod
    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run a read-only query; column names and rows."""

    @abstractmethod
    def fetch(
        self, schema: str, table: str, column: str, values: Collection[str]
    ) -> list[dict[str, Any]]:
        """The rows of a table whose ``column`` holds one of ``values``, as dicts (column →
        Python value); none when the table does not exist."""

    @abstractmethod
    def replace(self, schema: str, rows: TableRows, key: str, keys: Collection[str]) -> LoadResult:
        """Replace rows, in one transaction: delete those whose ``key`` column holds one of
        ``keys`` and those whose ``id`` is in ``rows``, then insert ``rows`` (schema
        evolution and casts as ``load``). A materialized table's "these profiles now hold
        exactly these rows" (Profiles Sync's merges). ``rows`` may be empty: delete only."""

    @abstractmethod
    def replace_view(self, schema: str, name: str, select: str) -> None:
        """Make ``schema.name`` the view of ``select`` (whatever its columns were before)."""

    @abstractmethod
    def delete(self, schema: str, table: str, match: RowMatch) -> int:
        """Delete the rows ``match`` takes, in one transaction; how many went (0 when the
        table does not exist)."""

    @abstractmethod
    def compact(self) -> None:
        """Make the values of rows deleted by ``delete`` leave the storage, not only the
        tables; safe to repeat, and it finishes what a crash interrupted."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection (and, for DuckDB, the file)."""

    def __enter__(self) -> Loader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_loader(kind: Kind | str, target: str, *, cast: Cast = rows_cast) -> Loader:
    """A loader for ``kind``: a DuckDB file path, or a PostgreSQL URL."""
    if kind == "duckdb":
        from headwater.warehouse.loaders.duckdb import DuckDBLoader

        return DuckDBLoader(target, cast=cast)
    if kind in ("postgres", "postgresql"):
        from headwater.warehouse.loaders.postgres import PostgresLoader

        return PostgresLoader(target, cast=cast)
    raise ValueError(f"unknown warehouse kind {kind!r} (expected 'duckdb' or 'postgres')")
