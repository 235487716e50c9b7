"""A private PostgreSQL cluster on a loopback port, started by the test fixtures."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa

from headwater.store.database import database_url
from tests.support.markers import require_marker
from tests.support.ports import free_port


def _pg_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        pytest.fail(
            "PostgreSQL is not installed: run `apt-get install -y postgresql` "
            "(scripts/test.sh does it for you)."
        )
    return Path(found[-1]).parent


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


class PostgresServer:
    """A private PostgreSQL cluster on a loopback port; tests may stop and start it."""

    def __init__(self) -> None:
        require_marker("postgres", "starts a PostgreSQL server")
        self.bin_dir = _pg_bin()
        self.base = Path(tempfile.mkdtemp(prefix="headwater-pg-"))
        self.data, self.sock = self.base / "data", self.base / "sock"
        self.sock.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            shutil.chown(self.sock, "postgres")
        self.port = free_port()
        subprocess.run(
            _as_postgres(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "-E",
                    "UTF8",
                ]
            ),
            check=True,
            capture_output=True,
        )

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        subprocess.run(
            _as_postgres(
                [
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-l",
                    str(self.base / "log"),
                    "-w",
                    "start",
                    "-o",
                    f"-h 127.0.0.1 -p {self.port} -k {self.sock} -c fsync=off -c max_connections=200",
                ]
            ),
            check=True,
            capture_output=True,
        )

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            _as_postgres([str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", mode, "stop"]),
            capture_output=True,
        )

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)


def new_database(server_url: str) -> str:
    """A fresh, empty database on the server at ``server_url``; its URL."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(database_url(Path("."), server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


def pg_settings(url: str) -> dict[str, Any]:
    """A PostgreSQL warehouse's settings for a database URL of the tests' server."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname,
        "port": parts.port,
        "database": parts.path.lstrip("/"),
        "user": parts.username,
        "password": parts.password,
    }
