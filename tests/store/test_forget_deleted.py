"""Deleted rows leave no bytes in the state database's file or its WAL (SQLite)."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from headwater.store.database import database_url, forget_deleted, open_engine
from headwater.store.migrations import migrate
from headwater.store.schema import meta
from tests.support.search import find_marker

MARKER = "MARKER-d3c9a1"


def write_and_delete(url: str) -> None:
    engine = open_engine(url)
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(meta.insert(), [{"key": f"k{i}", "value": MARKER * 40} for i in range(50)])
    with engine.begin() as conn:
        conn.execute(sa.delete(meta).where(meta.c.key.like("k%")))
    assert forget_deleted(engine)
    engine.dispose()


def test_deleted_rows_are_gone_from_every_byte(tmp_path: Path) -> None:
    write_and_delete(database_url(tmp_path, None))
    assert find_marker(tmp_path, MARKER) == []


def test_without_secure_delete_the_bytes_would_linger(tmp_path: Path) -> None:
    """The search above can fail: SQLite's default leaves a deleted row in its free page."""
    import sqlite3

    path = tmp_path / "plain.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA secure_delete=OFF")
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", [(MARKER * 40,) for _ in range(50)])
    conn.execute("DELETE FROM t")
    conn.close()
    assert find_marker(tmp_path, MARKER)
