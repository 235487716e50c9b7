"""Run a user's read-only query on a warehouse and stream its rows (SQL traits read with it).

``WarehouseQueries.rows`` has the shape of ``headwater.engage.sql_traits.runs.Runner`` (the
engage package may not import this one, nor this one it: the server hands one to the other).
Rows come in batches, never the whole result at once: a SQL trait may return 25 million.

- **DuckDB**: the file opened read-only (a sync writing it makes the opening wait, as the
  loader's ``query`` does), with ``enable_external_access`` off: a query reads the warehouse's
  tables and nothing else on the machine — no ``read_csv('/etc/…')``, no ``ATTACH`` of the
  state database, no extension downloads. Rows come through Arrow record batches.
- **PostgreSQL**: a ``READ ONLY`` transaction and a server-side cursor, fetched in batches;
  ``statement_timeout`` bounds each fetch.

Errors are told apart for the caller: what the query causes (syntax, an unknown table,
``permission denied for schema``, too slow) is a ``QueryError``, for its author to fix; not
reaching the warehouse (refused connection, a file in use past the wait) is a
``WarehouseError``, worth retrying.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import duckdb
import psycopg
from psycopg.conninfo import conninfo_to_dict

from headwater.errors import NotFoundError, QueryError, UnsafePathError, WarehouseError
from headwater.warehouse.connect import duckdb_path, postgres_url
from headwater.warehouse.store import WarehouseInfo, WarehouseStore

BATCH_ROWS: Final = 10_000
CONNECT_TIMEOUT: Final = 10  # seconds
QUERYABLE: Final = frozenset({"duckdb", "postgres"})

Rows = tuple[list[str], Iterator[tuple[Any, ...]]]


class WarehouseQueries:
    """Queries on the workspace's DuckDB and PostgreSQL warehouses."""

    def __init__(
        self, warehouses: WarehouseStore, data_dir: Path, *, lock_timeout: float = 30.0
    ) -> None:
        self._warehouses = warehouses
        self._data_dir = data_dir
        self._lock_timeout = lock_timeout

    @contextmanager
    def rows(
        self,
        warehouse_id: str,
        query: str,
        *,
        limit: int | None = None,
        timeout: float | None = None,
    ) -> Iterator[Rows]:
        """The query's column names and an iterator of its rows (at most ``limit``), valid
        inside the ``with``; ``timeout`` seconds bound the query (None: no bound)."""
        warehouse = self._warehouses.get(warehouse_id)
        if warehouse is None:
            raise NotFoundError(f"no warehouse has the id {warehouse_id!r}", "warehouse")
        statement = _statement(query)
        if warehouse.type == "duckdb":
            with self._duckdb(warehouse, statement, limit, timeout) as found:
                yield found
        elif warehouse.type == "postgres":
            with _postgres(warehouse, statement, limit, timeout) as found:
                yield found
        else:
            raise QueryError(
                f"warehouse {warehouse.name!r} is a {warehouse.type}: queries run on DuckDB "
                "and PostgreSQL warehouses",
                "warehouse",
            )

    @contextmanager
    def _duckdb(
        self, warehouse: WarehouseInfo, statement: str, limit: int | None, timeout: float | None
    ) -> Iterator[Rows]:
        try:
            path = duckdb_path(warehouse, self._data_dir)
        except UnsafePathError as exc:
            raise WarehouseError(f"warehouse {warehouse.name}: settings.{exc}") from None
        conn = _open_duckdb(path, self._lock_timeout)
        timer = _interrupt_after(conn, timeout)
        try:
            try:
                relation = conn.sql(statement)
            except duckdb.Error as exc:
                raise _duckdb_error(exc, timeout) from None
            if relation is None:
                raise QueryError("the query returns no rows: write a SELECT statement", "query")
            if limit is not None:
                relation = relation.limit(limit)
            columns = list(relation.columns)
            try:
                reader = relation.to_arrow_reader(BATCH_ROWS)
            except duckdb.Error as exc:
                raise _duckdb_error(exc, timeout) from None
            yield columns, _duckdb_rows(reader, timeout)
        finally:
            if timer is not None:
                timer.cancel()
            conn.close()


def _statement(query: str) -> str:
    """The query without the trailing semicolons people end SQL with."""
    text = query.strip()
    while text.endswith(";"):
        text = text[:-1].rstrip()
    if not text:
        raise QueryError("the query is empty", "query")
    if "\x00" in text:
        raise QueryError("the query contains a NUL character", "query")
    return text


# --- DuckDB ------------------------------------------------------------------------------------


def _open_duckdb(path: Path, lock_timeout: float) -> duckdb.DuckDBPyConnection:
    """The file read-only and cut off from the file system, waiting while a sync writes it."""
    if not path.exists():  # an empty warehouse: no table to query, as in a new database
        raise QueryError(
            f"the warehouse has no tables yet: nothing was loaded into DuckDB file {path}",
            "warehouse",
        )
    deadline = time.monotonic() + lock_timeout
    pause = 0.05
    while True:
        try:
            conn = duckdb.connect(
                str(path), read_only=True, config={"enable_external_access": False}
            )
            break
        except duckdb.Error as exc:
            text = str(exc)
            busy = "lock" in text.lower() or "different configuration" in text
            if not busy:
                raise WarehouseError(f"cannot open DuckDB file {path}: {text}") from exc
            if time.monotonic() >= deadline:
                raise WarehouseError(
                    f"DuckDB file {path} is in use: a sync writes it; the query runs again "
                    f"later ({text})"
                ) from exc
            time.sleep(pause)
            pause = min(pause * 2, 0.5)
    try:
        conn.execute("SET TimeZone = 'UTC'")
    except duckdb.Error:
        conn.close()
        raise
    return conn


def _interrupt_after(
    conn: duckdb.DuckDBPyConnection, timeout: float | None
) -> threading.Timer | None:
    if timeout is None:
        return None
    timer = threading.Timer(timeout, conn.interrupt)
    timer.daemon = True
    timer.start()
    return timer


def _duckdb_rows(reader: Any, timeout: float | None) -> Iterator[tuple[Any, ...]]:
    try:
        for batch in reader:
            columns = [column.to_pylist() for column in batch.columns]
            yield from zip(*columns, strict=True)
    except duckdb.Error as exc:
        raise _duckdb_error(exc, timeout) from None


def _duckdb_error(exc: duckdb.Error, timeout: float | None) -> Exception:
    if isinstance(exc, duckdb.InterruptException):
        return QueryError(f"the query ran longer than {timeout:g} seconds; make it faster", "query")
    if isinstance(exc, duckdb.IOException | duckdb.ConnectionException | duckdb.FatalException):
        return WarehouseError(f"DuckDB: {exc}")
    return QueryError(str(exc), "query")


# --- PostgreSQL --------------------------------------------------------------------------------


@contextmanager
def _postgres(
    warehouse: WarehouseInfo, statement: str, limit: int | None, timeout: float | None
) -> Iterator[Rows]:
    try:
        params: dict[str, Any] = conninfo_to_dict(postgres_url(warehouse))
    except psycopg.ProgrammingError as exc:
        raise WarehouseError(f"warehouse {warehouse.name}: {_reason(exc)}") from None
    params.setdefault("connect_timeout", CONNECT_TIMEOUT)
    params["application_name"] = "headwater-sql-traits"
    where = f"{params.get('user', '')}@{params.get('host', '')}:{params.get('port', 5432)}"
    try:
        conn = psycopg.connect(**params, autocommit=True)
    except psycopg.Error as exc:
        raise WarehouseError(f"cannot connect to PostgreSQL {where}: {_reason(exc)}") from None
    try:
        with conn.transaction(), conn.cursor(name="headwater_sql_trait") as cursor:
            try:
                conn.execute("SET TRANSACTION READ ONLY")
                conn.execute("SET LOCAL TIME ZONE 'UTC'")
                if timeout is not None:
                    conn.execute(f"SET LOCAL statement_timeout = {max(1, int(timeout * 1000))}")
                cursor.itersize = BATCH_ROWS
                cursor.execute(statement.encode())
            except psycopg.Error as exc:
                raise _postgres_error(conn, exc, timeout) from None
            if cursor.description is None:
                raise QueryError("the query returns no rows: write a SELECT statement", "query")
            columns = [d.name for d in cursor.description]
            yield columns, _postgres_rows(conn, cursor, limit, timeout)
    except psycopg.Error as exc:  # closing the cursor, ending the transaction
        raise _postgres_error(conn, exc, timeout) from None
    finally:
        conn.close()


def _postgres_rows(
    conn: psycopg.Connection[Any],
    cursor: psycopg.ServerCursor[Any],
    limit: int | None,
    timeout: float | None,
) -> Iterator[tuple[Any, ...]]:
    left = limit
    try:
        while left is None or left > 0:
            size = BATCH_ROWS if left is None else min(BATCH_ROWS, left)
            batch = cursor.fetchmany(size)
            if not batch:
                return
            if left is not None:
                left -= len(batch)
            yield from batch
    except psycopg.Error as exc:
        raise _postgres_error(conn, exc, timeout) from None


def _postgres_error(
    conn: psycopg.Connection[Any], exc: psycopg.Error, timeout: float | None
) -> Exception:
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return QueryError(
            f"the query ran longer than {timeout or 0:g} seconds; make it faster", "query"
        )
    if conn.broken or isinstance(exc, psycopg.OperationalError):
        return WarehouseError(f"PostgreSQL: {_reason(exc)}")
    return QueryError(_reason(exc), "query")


def _reason(exc: BaseException) -> str:
    """libpq's message without its framing ('connection to server … failed: ')."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    if "failed: " in text:
        text = text.rsplit("failed: ", 1)[1]
    return text.removeprefix("FATAL:").strip()
