"""The embedded warehouse: one DuckDB file.

DuckDB lets one process write a file, or several processes read it, never both. So the
loader opens the file for writing only for a sync — on the first ``ping``/``load`` — and
``close()`` (which the sync calls when its run ends) releases it; between syncs anyone may
open it read-only (``query`` does, and so can the ``duckdb`` CLI or a BI tool). Opening is
retried for ``lock_timeout`` seconds (30 by default) when the other side holds the file, so
a short query delays a sync instead of failing it, and a query started during a short sync
waits for its end; past that, a clear "in use" error. Keeping the file for a whole run rather
than per table spares an open and a checkpoint (≈16 ms) per table and chunk.

Types: TIMESTAMPTZ (``TIMESTAMP WITH TIME ZONE``; the session time zone is UTC), BIGINT,
DOUBLE, BOOLEAN, VARCHAR (DuckDB ignores a length; the loader cuts at 512 characters).

Dedupe is an anti-join on ``id`` (``NOT EXISTS``), which DuckDB runs as a hash join over the
table's ``id`` column, and ``id`` gets no PRIMARY KEY: measured on 500k rows, the ART index
made a load 6x slower (0.86 s against 0.13 s) while the anti-join against 500k existing ids
took 0.04 s. ``users``/``accounts`` use ``MERGE INTO`` for the same reason. DuckDB matches
identifiers case-insensitively, so names are compared in lower case.

The writer raises ``checkpoint_threshold`` to 1 GB: with DuckDB's 16 MB default, a sync of
a million events checkpointed dozens of times and loaded at 48k events/s; now the WAL is
folded into the file once, at ``close()`` (58k events/s, the checkpoint included).

A deletion's ``DELETE`` only marks rows deleted, and neither ``CHECKPOINT`` nor rewriting
the table frees the bytes: DuckDB leaves freed blocks as they were, so a deleted value stays
readable in the file. ``compact`` therefore copies the database into a fresh file (``COPY FROM
DATABASE``: tables, views, types) and puts it in place with ``os.replace`` — 15 s for 10 M
rows of 16 columns. A file ``<path>.erased``, made before the first ``DELETE`` and removed
once the fresh file is in place, says a copy is owed, so a crash between the two is finished
by the next ``compact``; a copy left half-written is thrown away and made again.

Rows are read back through Arrow: fetching TIMESTAMPTZ as Python objects needs ``pytz``,
which is not a dependency.
"""

from __future__ import annotations

import os
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Final

import duckdb
import pyarrow as pa

from headwater.errors import WarehouseError
from headwater.warehouse.columns import ColumnType, TableRows
from headwater.warehouse.loaders import (
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
    "float": "DOUBLE",
    "boolean": "BOOLEAN",
    "varchar": "VARCHAR",
}
_BATCH: Final = "__headwater_batch"
_KEYS: Final = "__headwater_keys"
_IDS: Final = "__headwater_ids"
CHECKPOINT_THRESHOLD: Final = "1GB"  # the Arrow table's name inside a load's connection
_FRESH: Final = "__headwater_fresh"  # the fresh file, attached while ``compact`` copies

_TABLE_COLUMNS: Final = """
SELECT column_name, data_type FROM information_schema.columns
WHERE table_catalog = current_database() AND lower(table_schema) = ? AND lower(table_name) = ?
ORDER BY ordinal_position"""
_SCHEMA_COLUMNS: Final = """
SELECT c.table_name, c.column_name, c.data_type
FROM information_schema.columns AS c JOIN information_schema.tables AS t
  ON t.table_catalog = c.table_catalog AND t.table_schema = c.table_schema
 AND t.table_name = c.table_name
WHERE c.table_catalog = current_database() AND lower(c.table_schema) = ?
  AND t.table_type = 'BASE TABLE'
ORDER BY c.table_name, c.ordinal_position"""


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _name(name: str) -> str:
    return name.lower()


class DuckDBLoader(Loader):
    kind = "duckdb"

    def __init__(
        self, path: str | os.PathLike[str], *, cast: Cast = rows_cast, lock_timeout: float = 30.0
    ) -> None:
        self.path = Path(path)
        self._cast = cast
        self._lock_timeout = lock_timeout
        self._conn: duckdb.DuckDBPyConnection | None = None

    # --- connections ---------------------------------------------------------------------------

    def _connect(self, *, read_only: bool) -> duckdb.DuckDBPyConnection:
        """Open the file, waiting while another process holds it."""
        if not self.path.parent.is_dir():
            raise WarehouseError(
                f"cannot open DuckDB file {self.path}: directory {self.path.parent} does not exist"
            )
        if read_only and not self.path.exists():
            raise WarehouseError(f"DuckDB file {self.path} does not exist (nothing loaded yet)")
        deadline = time.monotonic() + self._lock_timeout
        pause = 0.05
        while True:
            try:
                conn = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.Error as exc:
                text = str(exc)
                # Another process (lock) or another connection of this one (configuration).
                busy = "lock" in text.lower() or "different configuration" in text
                if not busy:
                    raise WarehouseError(f"cannot open DuckDB file {self.path}: {text}") from exc
                if time.monotonic() >= deadline:
                    raise WarehouseError(
                        f"DuckDB file {self.path} is in use: a sync writes it, or readers hold "
                        f"it open; try again when they are done ({text})"
                    ) from exc
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
        try:
            conn.execute("SET TimeZone = 'UTC'")
            if not read_only:
                conn.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        except duckdb.Error:
            conn.close()
            raise
        return conn

    def _writer(self) -> duckdb.DuckDBPyConnection:
        if self._conn is None:
            self._conn = self._connect(read_only=False)
        return self._conn

    @contextmanager
    def _reader(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """This loader's own connection during a sync, else the file opened read-only."""
        if self._conn is not None:
            yield self._conn
            return
        conn = self._connect(read_only=True)
        try:
            yield conn
        finally:
            conn.close()

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    # --- operations ----------------------------------------------------------------------------

    def ping(self) -> None:
        try:
            self._writer().execute("SELECT 1").fetchall()
        except duckdb.Error as exc:
            raise WarehouseError(f"DuckDB file {self.path}: {exc}") from exc

    def columns(self, schema: str) -> dict[str, dict[str, ColumnType]]:
        if self._conn is None and not self.path.exists():
            return {}
        tables: dict[str, dict[str, ColumnType]] = {}
        with self._reader() as conn:
            for table, column, sql_type in conn.execute(
                _SCHEMA_COLUMNS, [_name(schema)]
            ).fetchall():
                tables.setdefault(table, {})[column] = sql_column_type(sql_type)
        return tables

    def query(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        with self._reader() as conn:
            try:
                relation = conn.sql(sql)
                if relation is None:  # a statement without a result
                    return [], []
                names = list(relation.columns)
                data = relation.to_arrow_table()
            except duckdb.Error as exc:
                raise WarehouseError(str(exc)) from exc
        columns = [column.to_pylist() for column in data.columns]
        return names, list(zip(*columns, strict=True))

    def load(self, schema: str, rows: TableRows) -> LoadResult:
        if not rows.rows:
            return LoadResult(0, [])
        conn = self._writer()
        schema_name, table = _name(schema), _name(rows.table)
        target = f"{quote(schema_name)}.{quote(table)}"
        conn.begin()
        try:
            existing = _columns(conn, schema_name, table)
            batch = prepare_batch(table, rows, existing, self._cast, _name)
            if batch.data.num_rows == 0:
                conn.rollback()
                return LoadResult(0, batch.notices)
            _ensure_table(conn, schema_name, target, batch, existing)
            conn.register(_BATCH, batch.data)
            try:
                statement = _merge(target, batch) if batch.upsert else _insert(target, batch)
                result = conn.execute(statement).fetchone()
            finally:
                conn.unregister(_BATCH)
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except duckdb.Error:  # the connection is unusable (e.g. a fatal error): reopen
                with suppress(duckdb.Error):
                    self.close()
            raise
        return LoadResult(int(result[0]) if result else 0, batch.notices)

    def fetch(
        self, schema: str, table: str, column: str, values: Collection[str]
    ) -> list[dict[str, Any]]:
        if not values or (self._conn is None and not self.path.exists()):
            return []
        schema_name, table_name = _name(schema), _name(table)
        with self._reader() as conn:
            if not conn.execute(_TABLE_COLUMNS, [schema_name, table_name]).fetchall():
                return []
            conn.register(_KEYS, pa.table({"k": pa.array(list(values), pa.string())}))
            try:
                relation = conn.sql(
                    f"SELECT * FROM {quote(schema_name)}.{quote(table_name)} "
                    f"WHERE {quote(_name(column))} IN (SELECT k FROM {_KEYS})"
                )
                data = relation.to_arrow_table() if relation is not None else None
            except duckdb.Error as exc:
                raise WarehouseError(str(exc)) from exc
            finally:
                conn.unregister(_KEYS)
        return [] if data is None else data.to_pylist()

    def replace(self, schema: str, rows: TableRows, key: str, keys: Collection[str]) -> LoadResult:
        conn = self._writer()
        schema_name, table = _name(schema), _name(rows.table)
        target = f"{quote(schema_name)}.{quote(table)}"
        conn.begin()
        try:
            existing = _columns(conn, schema_name, table)
            batch = prepare_batch(table, rows, existing, self._cast, _name) if rows.rows else None
            if not existing and (batch is None or batch.data.num_rows == 0):
                conn.rollback()  # nothing to delete, nothing to insert
                return LoadResult(0, batch.notices if batch else [])
            if batch is not None and batch.data.num_rows:
                _ensure_table(conn, schema_name, target, batch, existing)
            if existing:
                ids = batch.data["id"] if batch is not None else pa.array([], pa.string())
                where = [f'"id" IN (SELECT k FROM {_IDS})'] if len(ids) else []
                if keys:
                    where.append(f"{quote(_name(key))} IN (SELECT k FROM {_KEYS})")
                conn.register(_KEYS, pa.table({"k": pa.array(list(keys), pa.string())}))
                conn.register(_IDS, pa.table({"k": ids}))
                try:
                    if where:
                        conn.execute(f"DELETE FROM {target} WHERE {' OR '.join(where)}")
                finally:
                    conn.unregister(_KEYS)
                    conn.unregister(_IDS)
            inserted = 0
            if batch is not None and batch.data.num_rows:
                columns = ", ".join(quote(c) for c in batch.columns)
                conn.register(_BATCH, batch.data)
                try:
                    conn.execute(f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {_BATCH}")
                finally:
                    conn.unregister(_BATCH)
                inserted = batch.data.num_rows
            conn.commit()
        except BaseException:
            with suppress(duckdb.Error):
                conn.rollback()
            raise
        return LoadResult(inserted, batch.notices if batch else [])

    def delete(self, schema: str, table: str, match: RowMatch) -> int:
        if not match or (self._conn is None and not self.path.exists()):
            return 0
        conn = self._writer()
        schema_name, table_name = _name(schema), _name(table)
        if not conn.execute(_TABLE_COLUMNS, [schema_name, table_name]).fetchall():
            return 0
        where, tables = _where(match)
        owed = self._erased.exists()
        self._erased.touch()  # before the DELETE: a crash after it still owes a compact
        conn.begin()
        try:
            for name, data in tables.items():
                conn.register(name, data)
            found = conn.execute(
                f"DELETE FROM {quote(schema_name)}.{quote(table_name)} WHERE {where}"
            ).fetchone()
            conn.commit()
        except BaseException as exc:
            with suppress(duckdb.Error):
                conn.rollback()
            if isinstance(exc, duckdb.Error):
                raise WarehouseError(f"{schema_name}.{table_name}: {exc}") from exc
            raise
        finally:
            for name in tables:
                with suppress(duckdb.Error):
                    conn.unregister(name)
        deleted = int(found[0]) if found else 0
        if not deleted and not owed:
            self._erased.unlink(missing_ok=True)
        return deleted

    def compact(self) -> None:
        fresh = self.path.with_name(self.path.name + ".fresh")
        for leftover in (fresh, fresh.with_name(fresh.name + ".wal")):
            leftover.unlink(missing_ok=True)  # a copy a crash interrupted
        if not self._erased.exists():
            return
        conn = self._writer()
        try:
            database = conn.execute("SELECT current_database()").fetchone()
            assert database is not None
            conn.execute(f"ATTACH {_literal(str(fresh))} AS {_FRESH}")
            try:
                conn.execute(f"COPY FROM DATABASE {quote(str(database[0]))} TO {_FRESH}")
            finally:
                conn.execute(f"DETACH {_FRESH}")
        except duckdb.Error as exc:
            raise WarehouseError(f"DuckDB file {self.path}: compacting: {exc}") from exc
        self.close()  # checkpoints: the old file's WAL is folded in and removed
        wal = self.path.with_name(self.path.name + ".wal")
        if wal.exists() or fresh.with_name(fresh.name + ".wal").exists():
            raise WarehouseError(f"DuckDB file {self.path}: a WAL remained after compacting")
        os.chmod(fresh, self.path.stat().st_mode & 0o777)
        _fsync(fresh)
        os.replace(fresh, self.path)
        _fsync(self.path.parent)
        self._erased.unlink()

    @property
    def _erased(self) -> Path:
        return self.path.with_name(self.path.name + ".erased")

    def replace_view(self, schema: str, name: str, select: str) -> None:
        conn = self._writer()
        schema_name = _name(schema)
        conn.begin()
        try:
            conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema_name)}")
            conn.execute(f"DROP VIEW IF EXISTS {quote(schema_name)}.{quote(_name(name))}")
            conn.execute(f"CREATE VIEW {quote(schema_name)}.{quote(_name(name))} AS {select}")
            conn.commit()
        except BaseException as exc:
            with suppress(duckdb.Error):
                conn.rollback()
            if isinstance(exc, duckdb.Error):
                raise WarehouseError(f"view {schema_name}.{name}: {exc}") from exc
            raise


def _where(match: RowMatch) -> tuple[str, dict[str, pa.Table]]:
    """The condition of a ``DELETE`` and the Arrow tables of values it reads."""
    tables: dict[str, pa.Table] = {}

    def values(data: pa.Table) -> str:
        name = f"__headwater_values_{len(tables)}"
        tables[name] = data
        return name

    taken: list[str] = []
    for column, wanted in match.any_of.items():
        if wanted:
            table = values(pa.table({"v": pa.array(list(wanted), pa.string())}))
            taken.append(f"{quote(column)} IN (SELECT v FROM {table})")
    if match.pairs is not None and match.pairs[2]:
        first, second, pairs = match.pairs
        table = values(
            pa.table(
                {
                    "a": pa.array([a for a, _ in pairs], pa.string()),
                    "b": pa.array([b for _, b in pairs], pa.string()),
                }
            )
        )
        taken.append(
            f"EXISTS (SELECT 1 FROM {table} AS p "
            f"WHERE p.a = {quote(first)} AND p.b = {quote(second)})"
        )
    where = "(" + " OR ".join(taken) + ")"
    if match.within is not None:
        column, allowed = match.within
        table = values(pa.table({"v": pa.array(list(allowed), pa.string())}))
        where += f" AND {quote(column)} IN (SELECT v FROM {table})"
    return where, tables


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _columns(conn: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, ColumnType]:
    """The table's columns with their types (empty: no such table yet)."""
    return {
        _name(c): sql_column_type(t)
        for c, t in conn.execute(_TABLE_COLUMNS, [schema, table]).fetchall()
    }


def _ensure_table(
    conn: duckdb.DuckDBPyConnection,
    schema_name: str,
    target: str,
    batch: Batch,
    existing: dict[str, ColumnType],
) -> None:
    """Create the schema and table, or add the batch's new columns."""
    conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote(schema_name)}")
    if not existing:
        columns = ", ".join(
            f"{quote(c)} {SQL_TYPES[batch.types[c]]}" + (" NOT NULL" if c == "id" else "")
            for c in batch.columns
        )
        conn.execute(f"CREATE TABLE {target} ({columns})")
        return
    for column in batch.new_columns:
        conn.execute(
            f"ALTER TABLE {target} ADD COLUMN {quote(column)} {SQL_TYPES[batch.types[column]]}"
        )


def _insert(target: str, batch: Batch) -> str:
    """New ids only: a hash anti-join against the table (AC-129)."""
    columns = ", ".join(quote(c) for c in batch.columns)
    return (
        f"INSERT INTO {target} ({columns}) SELECT {columns} FROM {_BATCH} AS b "
        f'WHERE NOT EXISTS (SELECT 1 FROM {target} AS t WHERE t."id" = b."id")'
    )


def _merge(target: str, batch: Batch) -> str:
    """Upsert on id: the newer row's non-null values win, the older fills its gaps."""
    columns = ", ".join(quote(c) for c in batch.columns)
    values = ", ".join(f"b.{quote(c)}" for c in batch.columns)
    key = batch.order_key
    newer = f"(t.{quote(key)} IS NULL OR b.{quote(key)} >= t.{quote(key)})" if key else "TRUE"
    assignments = ", ".join(
        f"{quote(c)} = CASE WHEN {newer} THEN coalesce(b.{quote(c)}, t.{quote(c)}) "
        f"ELSE coalesce(t.{quote(c)}, b.{quote(c)}) END"
        for c in batch.columns
        if c != "id"
    )
    matched = f" WHEN MATCHED THEN UPDATE SET {assignments}" if assignments else ""
    return (
        f'MERGE INTO {target} AS t USING {_BATCH} AS b ON t."id" = b."id"{matched} '
        f"WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({values})"
    )
