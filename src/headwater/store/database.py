"""One way to open the state database, whichever engine backs it.

SQLite is the embedded default (one file in the data directory); PostgreSQL is used when a
``postgresql://`` URL is given. Every role opens its engines through ``open_engine`` so the
pragmas that make SQLite safe for several writers (WAL, busy timeout) are never forgotten.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

Durability = Literal["normal", "full"]


def database_url(data_dir: Path, url: str | None) -> str:
    """The state database URL: the given one, or ``state.db`` inside the data directory."""
    if url:
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            # Use psycopg 3, the driver we ship, whatever the user wrote.
            return "postgresql+psycopg://" + url.split("://", 1)[1]
        return url
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'state.db'}"


def open_engine(url: str, *, durability: Durability = "normal", pool_size: int = 5) -> Engine:
    """Create an engine with the settings Headwater relies on for its dialect."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None},
            pool_size=pool_size,
            max_overflow=pool_size * 2,
        )
        synchronous = "FULL" if durability == "full" else "NORMAL"

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn: Any) -> None:
            # The driver runs in autocommit mode so that we issue BEGIN ourselves. A transaction
            # that reads before it writes takes the write lock up front (IMMEDIATE): two
            # deferred transactions upgrading at once would fail without waiting.
            immediate = conn.get_execution_options().get("write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return sa.create_engine(
        url, pool_size=pool_size, max_overflow=pool_size * 2, pool_pre_ping=True
    )


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that reads and then writes (it holds SQLite's write lock from the start)."""
    with engine.connect().execution_options(write=True) as conn, conn.begin():
        yield conn
