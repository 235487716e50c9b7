"""Shared fixtures (a private PostgreSQL server, migrated engines, a fake clock, a receiver) and
the markers every test gets from what it uses (see tests/README.md)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from headwater.destinations.runtime.install import installed
from headwater.store.database import database_url, open_engine
from headwater.store.migrations import migrate
from tests.oracle.fixture import oracle  # noqa: F401  (the Node oracles, for every test package)
from tests.support import markers
from tests.support.clock import Clock
from tests.support.postgres import PostgresServer, new_database
from tests.support.receiver import Receiver

# Segment's Actions destinations, installed ahead of time by scripts/test.sh (`headwater catalog
# install --dir .cache/actions`): every server a test starts shares them instead of installing.
ACTIONS_DIR = Path(__file__).resolve().parent.parent / ".cache" / "actions"
os.environ.setdefault("HEADWATER_ACTIONS_DIR", str(ACTIONS_DIR))
# The functions' JavaScript libraries likewise (scripts/test.sh installs them there).
os.environ.setdefault(
    "HEADWATER_FUNCTIONS_LIBRARIES_DIR", str(ACTIONS_DIR.parent / "functions-libraries")
)

# Fixtures that start or use the session's PostgreSQL server: a test using any of them (directly
# or through another fixture) is marked `postgres`.
POSTGRES_FIXTURES = frozenset({"postgres_url", "pg_database", "private_postgres"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `postgres` every test that needs the PostgreSQL server, so `-m "not postgres"`
    runs without one; the `engine` fixture's postgresql half asks for it at run time."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        # any fixture parametrized on the database ("engine", a module's server "base_url")
        on_postgres = callspec is not None and "postgresql" in callspec.params.values()
        if on_postgres or fixtures & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    markers.set_current(item)  # before the test's fixtures start: see tests/support/markers.py


def pytest_runtest_logfinish() -> None:
    markers.set_current(None)


@pytest.fixture(scope="session")
def actions_dir() -> Path:
    """The shared install of Segment's Actions package (read-only): made ahead of time, never
    on first use."""
    found = Path(os.environ["HEADWATER_ACTIONS_DIR"])
    if not installed(found):
        pytest.fail(
            f"Segment's Actions package is not installed in {found}: run scripts/test.sh, or "
            f"`.venv/bin/headwater catalog install --dir {found}`"
        )
    return found


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL server started for this test session (superuser `postgres`)."""
    server = PostgresServer()
    server.start()
    try:
        yield server.url
    finally:
        server.remove()


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of the test's own, which it may stop and start (outages)."""
    server = PostgresServer()
    server.start()
    yield server
    server.remove()


@pytest.fixture
def pg_database(postgres_url: str) -> str:
    """A fresh, empty database on the session's server."""
    return new_database(postgres_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated state database, once on SQLite and once on PostgreSQL."""
    url = (
        database_url(tmp_path, None)
        if request.param == "sqlite"
        else database_url(tmp_path, request.getfixturevalue("pg_database"))
    )
    db = open_engine(url, pool_size=10)
    migrate(db)
    yield db
    db.dispose()


@pytest.fixture
def clock() -> Clock:
    """A wall clock that stands still until the test moves it; pass it as ``clock=``."""
    return Clock()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A loopback HTTP server standing in for a destination's API."""
    server = Receiver()
    yield server
    server.close()
