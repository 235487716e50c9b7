"""Shared fixtures: a private PostgreSQL server on loopback, and migrated engines."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.store.database import database_url, open_engine
from headwater.store.migrations import migrate
from tests.destinations.receiver import Receiver
from tests.oracle.fixture import oracle  # noqa: F401  (the Node oracles, for every test package)


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail("PostgreSQL is not installed: run `apt-get install -y postgresql` "
                    "(scripts/test.sh does it for you).")
    return Path(found[-1]).parent


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PostgresServer:
    """A private PostgreSQL cluster on a loopback port; tests may stop and start it."""

    def __init__(self) -> None:
        self.bin_dir = _pg_bin()
        self.base = Path(tempfile.mkdtemp(prefix="headwater-pg-"))
        self.data, self.sock = self.base / "data", self.base / "sock"
        self.sock.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            shutil.chown(self.sock, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        subprocess.run(_as_postgres([str(self.bin_dir / "initdb"), "-D", str(self.data),
                                     "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
                       check=True, capture_output=True)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        subprocess.run(_as_postgres([
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "log"),
            "-w", "start", "-o",
            f"-h 127.0.0.1 -p {self.port} -k {self.sock} -c fsync=off -c max_connections=200"]),
            check=True, capture_output=True)

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(_as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data),
                                     "-m", mode, "stop"]), capture_output=True)

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


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
def pg_database(postgres_url: str) -> str:
    """A fresh, empty database on the session's server."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(database_url(Path("."), postgres_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return postgres_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated state database, once on SQLite and once on PostgreSQL."""
    url = (database_url(tmp_path, None) if request.param == "sqlite"
           else database_url(tmp_path, request.getfixturevalue("pg_database")))
    db = open_engine(url, pool_size=10)
    migrate(db)
    yield db
    db.dispose()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A loopback HTTP server standing in for a destination's API."""
    server = Receiver()
    yield server
    server.close()
