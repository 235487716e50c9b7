"""A PostgreSQL warehouse, loaded with COPY.

A load writes the batch (already an Arrow table of the right types) as CSV with pyarrow's C
writer and streams it with ``COPY … FROM STDIN`` into a temporary table, then moves new rows
into the real table with ``INSERT … SELECT … ON CONFLICT ("id") DO NOTHING`` (events) or
``DO UPDATE`` (``users``/``accounts``). A table created by this very load receives the COPY
directly: it is empty and the batch is already deduplicated.

Types: TIMESTAMP WITH TIME ZONE (the session runs in UTC), BIGINT, DOUBLE PRECISION, BOOLEAN,
VARCHAR(512) — Segment's width on Redshift and Postgres, so a dbt model or a query written
against Segment's tables sees the same types; the loader cuts strings at 512 characters.
``id`` is VARCHAR(512) PRIMARY KEY: the index that makes dedupe and upserts one lookup a row.

Every load takes a transaction-scoped advisory lock on its table, so two syncs writing the
same schema (two processes, or a retry overlapping a slow run) cannot race on CREATE/ALTER.
PostgreSQL cuts identifiers at 63 bytes; the loader cuts them the same way first, so the
catalog and the batch agree on names. ``query`` runs in a READ ONLY transaction.

A deletion is a ``DELETE`` under the table's lock, like a load. ``compact`` does nothing: the
deleted rows are dead tuples no query can read, and autovacuum makes their space reusable;
``VACUUM FULL`` would lock the customer's tables against every reader for the whole rewrite.
"""

from __future__ import annotations

import io
from collections.abc import Collection
from typing import Any, Final

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from headwater.errors import WarehouseError
from headwater.warehouse.columns import ColumnType, TableRows
from headwater.warehouse.loaders import (
    VARCHAR_LIMIT,
    Batch,
    Cast,
    Loader,
    LoadResult,
    RowMatch,
    prepare_batch,
    rows_cast,
    sql_column_type,
)

SQL_TYPES: Final[dict[ColumnType, str]] = {
    "timestamp": "TIMESTAMP WITH TIME ZONE",
    "integer": "BIGINT",
    "float": "DOUBLE PRECISION",
    "boolean": "BOOLEAN",
    "varchar": f"VARCHAR({VARCHAR_LIMIT})",
}
NAME_BYTES: Final = 63  # PostgreSQL's NAMEDATALEN - 1
_STAGE: Final = "__headwater_batch"
_COPY_CHUNK: Final = 1 << 20
_CSV: Final = pcsv.WriteOptions(include_header=False)

_TABLE_COLUMNS: Final = sql.SQL(
    "SELECT column_name, data_type FROM information_schema.columns "
    "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position"
)
_SCHEMA_COLUMNS: Final = sql.SQL(
    "SELECT c.table_name, c.column_name, c.data_type "
    "FROM information_schema.columns AS c JOIN information_schema.tables AS t "
    "USING (table_catalog, table_schema, table_name) "
    "WHERE c.table_schema = %s AND t.table_type = 'BASE TABLE' "
    "ORDER BY c.table_name, c.ordinal_position"
)


def _name(name: str) -> str:
    """The name PostgreSQL will store (it silently cuts identifiers at 63 bytes)."""
    raw = name.encode()
    return name if len(raw) <= NAME_BYTES else raw[:NAME_BYTES].decode(errors="ignore")


def _reason(exc: BaseException) -> str:
    """The useful part of libpq's message: 'password authentication failed for user …',
    'Connection refused', 'failed to resolve host …'."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if "failed: " in text:
        text = text.rsplit("failed: ", 1)[1]
    return text.removeprefix("FATAL:").strip()


class PostgresLoader(Loader):
    kind = "postgres"

    def __init__(self, url: str, *, cast: Cast = rows_cast, connect_timeout: int = 10) -> None:
        scheme, sep, rest = url.partition("://")
        if sep and scheme.startswith("postgres"):  # postgres://, postgresql+psycopg://
            url = "postgresql://" + rest
        try:
            self._params: dict[str, Any] = conninfo_to_dict(url)
        except psycopg.ProgrammingError as exc:
            raise WarehouseError(f"invalid PostgreSQL URL: {_reason(exc)}") from exc
        self._params.setdefault("connect_timeout", connect_timeout)
        self._params.setdefault("application_name", "headwater-warehouse")
        p = self._params
        self.where = (
            f"{p.get('user', '')}@{p.get('host', 'localhost')}:{p.get('port', 5432)}"
            f"/{p.get('dbname', '')}"
        )  # for messages: never the password
        self._cast = cast
        self._conn: psycopg.Connection[Any] | None = None

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            self._conn = None  # the server went away: reconnect
        if self._conn is None:
            try:
                conn = psycopg.connect(**self._params, autocommit=True)
                conn.execute("SET TIME ZONE 'UTC'")
            except psycopg.Error as exc:
                raise WarehouseError(
                    f"cannot connect to PostgreSQL {self.where}: {_reason(exc)}"
                ) from exc
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def ping(self) -> None:
        conn = self._connection()
        try:
            conn.execute("SELECT 1").fetchall()
        except psycopg.Error as exc:
            raise WarehouseError(f"PostgreSQL {self.where}: {_reason(exc)}") from exc

    def columns(self, schema: str) -> dict[str, dict[str, ColumnType]]:
        tables: dict[str, dict[str, ColumnType]] = {}
        rows = self._connection().execute(_SCHEMA_COLUMNS, [_name(schema)]).fetchall()
        for table, column, sql_type in rows:
            tables.setdefault(table, {})[column] = sql_column_type(sql_type)
        return tables

    def query(self, sql_text: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        conn = self._connection()
        try:
            with conn.transaction():
                conn.execute("SET TRANSACTION READ ONLY")
                cursor = conn.cursor()
                cursor.execute(sql_text.encode())
                if cursor.description is None:
                    return [], []
                return [d.name for d in cursor.description], list(cursor.fetchall())
        except psycopg.Error as exc:
            raise WarehouseError(
                _reason(exc) if isinstance(exc, psycopg.OperationalError) else str(exc).strip()
            ) from exc

    def load(self, schema: str, rows: TableRows) -> LoadResult:
        if not rows.rows:
            return LoadResult(0, [])
        conn = self._connection()
        schema_name, table = _name(schema), _name(rows.table)
        target = sql.Identifier(schema_name, table)
        with conn.transaction(), conn.cursor() as cursor:
            existing = _locked_columns(cursor, schema_name, table)
            batch = prepare_batch(table, rows, existing, self._cast, _name)
            if batch.data.num_rows == 0:
                return LoadResult(0, batch.notices)
            self._create_schema(cursor, schema_name)
            if not existing:
                cursor.execute(_create_table(target, batch))
                _copy(cursor, target, batch)  # a new, empty table: no staging needed
                return LoadResult(batch.data.num_rows, batch.notices)
            for column in batch.new_columns:
                cursor.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                        target, sql.Identifier(column), sql.SQL(SQL_TYPES[batch.types[column]])
                    )
                )
            stage = sql.Identifier(_STAGE)
            cursor.execute(
                sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP").format(stage, target)
            )
            _copy(cursor, stage, batch)
            cursor.execute(
                _upsert(target, stage, batch) if batch.upsert else _insert(target, stage, batch)
            )
            return LoadResult(max(cursor.rowcount, 0), batch.notices)

    def fetch(
        self, schema: str, table: str, column: str, values: Collection[str]
    ) -> list[dict[str, Any]]:
        if not values:
            return []
        conn = self._connection()
        schema_name, table_name = _name(schema), _name(table)
        try:
            with conn.transaction(), conn.cursor() as cursor:
                if not cursor.execute(_TABLE_COLUMNS, [schema_name, table_name]).fetchall():
                    return []
                cursor.execute(
                    sql.SQL("SELECT * FROM {} WHERE {} = ANY(%s)").format(
                        sql.Identifier(schema_name, table_name), sql.Identifier(_name(column))
                    ),
                    [list(values)],
                )
                names = [d.name for d in cursor.description or ()]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        except psycopg.Error as exc:
            raise WarehouseError(str(exc).strip()) from exc

    def replace(self, schema: str, rows: TableRows, key: str, keys: Collection[str]) -> LoadResult:
        conn = self._connection()
        schema_name, table = _name(schema), _name(rows.table)
        target = sql.Identifier(schema_name, table)
        with conn.transaction(), conn.cursor() as cursor:
            existing = _locked_columns(cursor, schema_name, table)
            batch = prepare_batch(table, rows, existing, self._cast, _name) if rows.rows else None
            filled = batch is not None and batch.data.num_rows > 0
            notices = batch.notices if batch is not None else []
            if not existing:
                if batch is None or not filled:
                    return LoadResult(0, notices)
                self._create_schema(cursor, schema_name)
                cursor.execute(_create_table(target, batch))
                _copy(cursor, target, batch)
                return LoadResult(batch.data.num_rows, notices)
            ids = batch.data["id"].to_pylist() if batch is not None else []
            where: list[sql.Composable] = []
            params: list[list[Any]] = []
            if ids:
                where.append(sql.SQL('"id" = ANY(%s)'))
                params.append(ids)
            if keys:
                where.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(_name(key))))
                params.append(list(keys))
            if where:
                cursor.execute(
                    sql.SQL("DELETE FROM {} WHERE {}").format(target, sql.SQL(" OR ").join(where)),
                    params,
                )
            if batch is None or not filled:
                return LoadResult(0, notices)
            for column in batch.new_columns:
                cursor.execute(
                    sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                        target, sql.Identifier(column), sql.SQL(SQL_TYPES[batch.types[column]])
                    )
                )
            _copy(cursor, target, batch)
            return LoadResult(batch.data.num_rows, notices)

    def delete(self, schema: str, table: str, match: RowMatch) -> int:
        if not match:
            return 0
        conn = self._connection()
        schema_name, table_name = _name(schema), _name(table)
        taken: list[sql.Composable] = []
        params: list[Any] = []
        for column, wanted in match.any_of.items():
            if wanted:
                taken.append(sql.SQL("{} = ANY(%s)").format(sql.Identifier(_name(column))))
                params.append(list(wanted))
        if match.pairs is not None and match.pairs[2]:
            first, second, pairs = match.pairs
            taken.append(
                sql.SQL("({}, {}) IN (SELECT * FROM unnest(%s::text[], %s::text[]))").format(
                    sql.Identifier(_name(first)), sql.Identifier(_name(second))
                )
            )
            params += [[a for a, _ in pairs], [b for _, b in pairs]]
        where = sql.SQL("({})").format(sql.SQL(" OR ").join(taken))
        if match.within is not None:
            column, allowed = match.within
            where += sql.SQL(" AND {} = ANY(%s)").format(sql.Identifier(_name(column)))
            params.append(list(allowed))
        try:
            with conn.transaction(), conn.cursor() as cursor:
                if not _locked_columns(cursor, schema_name, table_name):
                    return 0
                cursor.execute(
                    sql.SQL("DELETE FROM {} WHERE ").format(sql.Identifier(schema_name, table_name))
                    + where,
                    params,
                )
                return max(cursor.rowcount, 0)
        except psycopg.Error as exc:
            raise WarehouseError(f"{schema_name}.{table_name}: {str(exc).strip()}") from exc

    def compact(self) -> None:
        """Nothing to do (see the module's docstring)."""

    def replace_view(self, schema: str, name: str, select: str) -> None:
        conn = self._connection()
        schema_name = _name(schema)
        view = sql.Identifier(schema_name, _name(name))
        try:
            with conn.transaction(), conn.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    [f"headwater.warehouse:{schema_name}.{name}"],
                )
                self._create_schema(cursor, schema_name)
                cursor.execute(sql.SQL("DROP VIEW IF EXISTS {}").format(view))
                cursor.execute(sql.SQL("CREATE VIEW {} AS ").format(view) + sql.SQL(select))
        except psycopg.Error as exc:
            raise WarehouseError(f"view {schema_name}.{name}: {str(exc).strip()}") from exc

    def _create_schema(self, cursor: psycopg.Cursor[Any], schema: str) -> None:
        """CREATE SCHEMA only when missing: IF NOT EXISTS still needs the CREATE privilege
        on the database, which a warehouse user given an existing schema may lack."""
        found = cursor.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema])
        if found.fetchone() is None:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"headwater.warehouse:{schema}"],
            )
            cursor.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


def _create_table(target: sql.Composable, batch: Batch) -> sql.Composed:
    return sql.SQL("CREATE TABLE {} ({})").format(
        target,
        sql.SQL(", ").join(
            sql.SQL("{} {}").format(
                sql.Identifier(c),
                sql.SQL(SQL_TYPES[batch.types[c]]) + sql.SQL(" PRIMARY KEY" if c == "id" else ""),
            )
            for c in batch.columns
        ),
    )


def _column_list(batch: Batch, prefix: str | None = None) -> sql.Composable:
    return sql.SQL(", ").join(
        sql.Identifier(*([prefix] if prefix else []), c) for c in batch.columns
    )


def _locked_columns(cursor: psycopg.Cursor[Any], schema: str, table: str) -> dict[str, ColumnType]:
    """Take the table's lock (one loader per table at a time, whoever runs it) and read its
    columns with their types (empty: no such table yet)."""
    cursor.execute(
        "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
        [f"headwater.warehouse:{schema}.{table}"],
    )
    return {
        c: sql_column_type(t) for c, t in cursor.execute(_TABLE_COLUMNS, [schema, table]).fetchall()
    }


def _copy(cursor: psycopg.Cursor[Any], table: sql.Composable, batch: Batch) -> None:
    """The batch as CSV (unquoted empty = NULL, strings always quoted) through COPY."""
    buffer = io.BytesIO()
    pcsv.write_csv(_csv_ready(batch.data), buffer, _CSV)
    view = buffer.getbuffer()
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT csv)").format(table, _column_list(batch))
    with cursor.copy(statement) as copy:
        for start in range(0, len(view), _COPY_CHUNK):
            copy.write(view[start : start + _COPY_CHUNK])
    del view


def _csv_ready(data: pa.Table) -> pa.Table:
    """Timestamps as ``2024-01-01 00:00:00.000000+00`` text: Arrow's CSV writer formats
    zoned timestamps about 10x slower than this (0.78 s against 0.07 s for 120k rows)."""
    for index, column in enumerate(data.schema):
        if pa.types.is_timestamp(column.type):
            text = data.column(index).cast(pa.timestamp("us")).cast(pa.string())
            zoned = pc.call_function(
                "binary_join_element_wise", [text, pa.scalar("+00"), pa.scalar("")]
            )
            data = data.set_column(index, column.name, zoned)
    return data


def _insert(target: sql.Composable, stage: sql.Composable, batch: Batch) -> sql.Composed:
    columns = _column_list(batch)
    return sql.SQL('INSERT INTO {} ({}) SELECT {} FROM {} ON CONFLICT ("id") DO NOTHING').format(
        target, columns, columns, stage
    )


def _upsert(target: sql.Composable, stage: sql.Composable, batch: Batch) -> sql.Composed:
    """Upsert on id: the newer row's non-null values win, the older fills its gaps."""
    columns = _column_list(batch)
    key = batch.order_key
    newer: sql.Composable = sql.SQL("TRUE")
    if key:
        newer = sql.SQL("(t.{k} IS NULL OR excluded.{k} >= t.{k})").format(k=sql.Identifier(key))
    assignments = [
        sql.SQL(
            "{c} = CASE WHEN {newer} THEN coalesce(excluded.{c}, t.{c}) "
            "ELSE coalesce(t.{c}, excluded.{c}) END"
        ).format(c=sql.Identifier(c), newer=newer)
        for c in batch.columns
        if c != "id"
    ]
    action = (
        sql.SQL("DO UPDATE SET ") + sql.SQL(", ").join(assignments)
        if assignments
        else sql.SQL("DO NOTHING")
    )
    return sql.SQL('INSERT INTO {} AS t ({}) SELECT {} FROM {} ON CONFLICT ("id") {}').format(
        target, columns, columns, stage, action
    )
