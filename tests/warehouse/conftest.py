"""Fixtures the warehouse tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater.warehouse.loaders import Loader, open_loader


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def loader(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Loader]:
    """A loader on a fresh DuckDB file, and on a fresh PostgreSQL database."""
    target = (
        str(tmp_path / "warehouse.duckdb")
        if request.param == "duckdb"
        else request.getfixturevalue("pg_database")
    )
    with open_loader(request.param, target) as opened:
        yield opened
