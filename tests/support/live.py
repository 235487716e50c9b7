"""A real ``headwater serve`` process on a loopback port, and a way to read what it stored."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.store import schema
from headwater.store.archive import Archive
from headwater.store.database import database_url, open_engine
from headwater.store.ingest_log import IngestLog, open_ingest_log
from headwater.store.positions import StagePositions
from tests.support.markers import require_marker
from tests.support.ports import free_port
from tests.support.waiting import wait_for

ADMIN_TOKEN = "test-admin-token"

BASE_CONFIG = """\
workspace: test
sources:
  - name: web
    write_key: WK_web
  - name: server
    write_key: abc123
  - name: off
    write_key: WK_off
    enabled: false
"""


def run_headwater(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    """``headwater ARGS --data-dir DATA_DIR`` as a user runs it, with the tests' admin token."""
    return subprocess.run(
        [sys.executable, "-m", "headwater", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HEADWATER_ADMIN_TOKEN": ADMIN_TOKEN},
    )


def default_processes() -> set[str]:
    """The processes ``serve`` starts on SQLite by default (two ingest processes given two
    CPUs)."""
    ingest = {"ingest", "ingest-2"} if (os.cpu_count() or 1) >= 2 else {"ingest"}
    return ingest | {"api", "worker"}


@dataclass
class LiveServer:
    """One ``headwater serve``; ``role=ingest`` keeps every record in the log for the test to
    read, ``role=single`` runs every role in one process, and ``role=all`` is the supervisor
    with its ingest and worker processes (``pids()``; ``process`` is the supervisor).

    Only tests marked ``@pytest.mark.live`` may start one: ``pytest -m "not live"`` leaves
    every server process out.
    """

    data_dir: Path
    config: Path
    role: str = "ingest"
    database: str | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    output: Path | None = None
    open_files: int | None = None  # the server's open-file limit (soft and hard), if set
    env: dict[str, str] = field(default_factory=dict)  # more environment for the server
    ingest_processes: int | None = None  # --ingest-processes, if given

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        require_marker("live", "starts a headwater server process")
        command = [
            sys.executable,
            "-m",
            "headwater",
            "serve",
            "--config",
            str(self.config),
            "--data-dir",
            str(self.data_dir),
            "--port",
            str(self.port),
            "--role",
            self.role,
        ]
        if self.database:
            command += ["--database", self.database]
        if self.ingest_processes is not None:
            command += ["--ingest-processes", str(self.ingest_processes)]
        output = self.output = self.data_dir.parent / f"server-{self.port}.log"
        env = {**os.environ, "HEADWATER_ADMIN_TOKEN": ADMIN_TOKEN, **self.env}
        limit = self.open_files

        def limit_open_files() -> None:
            if limit is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

        with output.open("ab") as out:
            process = self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=limit_open_files
            )

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"server exited: {output.read_text()}")
            try:
                return httpx.get(f"{self.url}/ready", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_for(ready, timeout, "the server to be ready", interval=0.05)
        except AssertionError:
            self.stop()  # the caller's `finally` never runs: leave no server (and children) behind
            raise RuntimeError(f"server not ready in {timeout}s: {output.read_text()}") from None

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self.process = None

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    def pids(self) -> dict[str, int]:
        """The supervisor's children now, by name (``ingest``, ``ingest-2``, ``worker``)."""
        found = {path.stem: path.read_text() for path in self.run_dir.glob("*.pid")}
        return {name: int(pid) for name, pid in found.items() if name != "serve"}

    @contextmanager
    def _ingest_log(self) -> Iterator[tuple[Engine, IngestLog]]:
        """The server's state database and ingest log, opened from the outside."""
        engine = open_engine(database_url(self.data_dir, self.database))
        log = open_ingest_log(engine, self.data_dir, durability="normal", clock=time.time)
        try:
            yield engine, log
        finally:
            log.close()
            engine.dispose()

    def records(self) -> list[dict[str, Any]]:
        """Every record in the ingest log (as acknowledged, before any stage), oldest first
        per partition."""
        with self._ingest_log() as (_, log):
            return [
                msgspec.json.decode(payload)
                for partition in log.partitions
                for _, payload in log.read(partition, 0, 10**9)
            ]

    def wait_processed(self, timeout: float = 30.0) -> None:
        """Until the stage chain has taken every ingest log record into the processed stream."""
        with self._ingest_log() as (engine, log):
            positions = StagePositions(engine, clock=time.time)
            wait_for(
                lambda: all(positions.positions().get(p, 0) >= log.end(p) for p in log.partitions),
                timeout,
                "the stage chain to take in every ingest log record",
            )

    def processed(self) -> list[dict[str, Any]]:
        """Every record of the processed stream (after dedup), oldest first per partition."""
        engine = open_engine(database_url(self.data_dir, self.database))
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    sa.select(schema.log_records.c.payload).order_by(
                        schema.log_records.c.partition, schema.log_records.c.offset
                    )
                ).scalars()
                return [msgspec.json.decode(payload) for payload in rows]
        finally:
            engine.dispose()

    def archived(self) -> list[dict[str, Any]]:
        """Every event in the archive, whatever its hour."""
        archive = Archive(self.data_dir / "archive")
        start, end = datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)
        return [event for source in archive.sources() for event in archive.read(source, start, end)]

    def events(self) -> list[dict[str, Any]]:
        return [event for record in self.records() for event in record["events"]]

    def dropped(self) -> list[dict[str, Any]]:
        return [entry for record in self.records() for entry in record["dropped"]]


@contextmanager
def serving(base: Path, config: str = BASE_CONFIG, role: str = "ingest") -> Iterator[LiveServer]:
    """A started server whose headwater.yaml is ``config``, with its data under ``base``."""
    path = base / "headwater.yaml"
    path.write_text(config)
    server = LiveServer(data_dir=base / "data", config=path, role=role)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def webhook_workspace(directory: Path, url: str) -> Path:
    """A ``headwater.yaml`` with one source (write key ``WK_web``) and a webhook to ``url``."""
    config = directory / "headwater.yaml"
    config.write_text(f"""workspace: test
sources:
  - name: web
    write_key: WK_web
destinations:
  - name: hook
    type: webhook
    source: web
    settings: {{url: "{url}"}}
""")
    return config
