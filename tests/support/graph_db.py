"""A migrated state database for identity graph tests, on the engine a test names."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from headwater.store.database import database_url, open_engine
from headwater.store.migrations import migrate


@contextmanager
def migrated_engine(request: pytest.FixtureRequest, tmp_path: Path, kind: str) -> Iterator[Engine]:
    """``kind`` is "sqlite" (a file in ``tmp_path``) or "postgresql" (a fresh database on the
    session's server)."""
    url = (
        database_url(tmp_path, None)
        if kind == "sqlite"
        else database_url(tmp_path, request.getfixturevalue("pg_database"))
    )
    engine = open_engine(url, pool_size=4)
    migrate(engine)
    try:
        yield engine
    finally:
        engine.dispose()
