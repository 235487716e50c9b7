"""Fixtures the Engage tests share."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from tests.support.clock import Clock
from tests.support.sql_traits import SqlTraitWorld, make_world


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def world(
    request: pytest.FixtureRequest, engine: Engine, clock: Clock, tmp_path: Path
) -> SqlTraitWorld:
    """A workspace with space ``main`` and warehouse ``dw``: an embedded DuckDB file, and a
    PostgreSQL database (on each state database)."""
    url = request.getfixturevalue("pg_database") if request.param == "postgres" else None
    return make_world(engine, clock, request.param, tmp_path, url)
