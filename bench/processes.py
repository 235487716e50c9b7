"""Starting the processes a benchmark measures: loopback ports, core pinning, readiness."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pin(core: int) -> list[str]:
    """The command prefix that runs a process on one core (nothing where taskset is missing)."""
    return ["taskset", "-c", str(core)] if shutil.which("taskset") else []


def wait_ready(url: str, what: str, timeout: float = 30.0) -> None:
    """Until ``url`` answers anything below 500; exits the benchmark if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not come up at {url}")


def noop_command(port: int) -> list[str]:
    """The command that serves ``noop_app.py`` on uvicorn (uvloop, httptools) at ``port``."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        "noop_app:app",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def start_noop(core: int | None) -> tuple[subprocess.Popen[bytes], str]:
    """``noop_app.py`` on uvicorn (uvloop, httptools), pinned to ``core`` unless it is None: the
    ceiling for ingest, the receiver for delivery. Returns the process and its URL once it
    answers."""
    port = free_port()
    process = subprocess.Popen(
        [*(pin(core) if core is not None else []), *noop_command(port)],
        cwd=Path(__file__).parent,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/", "the no-op server", timeout=20)
    return process, url


TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def postgres_cpu_seconds(postmaster: int | None) -> float:
    """CPU time of a PostgreSQL server's backends (the postmaster's children) so far."""
    if postmaster is None:
        return 0.0
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def server_processes(server: subprocess.Popen[bytes], data: Path) -> dict[str, int]:
    """Every process of a ``headwater serve``: its role children (pid files in ``run/``)
    and the server itself."""
    found = {p.stem: int(p.read_text()) for p in (data / "run").glob("*.pid") if p.stem != "serve"}
    found["serve"] = server.pid
    return found


def fresh_database(url: str) -> str:
    """A new empty database on the PostgreSQL server at ``url``; its URL."""
    import sqlalchemy as sa

    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        "postgresql+psycopg://" + url.split("://", 1)[1], isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def postgres_server(settings: dict[str, str] | None = None) -> Iterator[tuple[str, int]]:
    """A throwaway cluster on a loopback port (the way tests/support/postgres.py starts one),
    with its default durability settings (fsync on) and ``settings`` (server options such as
    ``shared_buffers``): its URL and its postmaster's pid."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        raise SystemExit("PostgreSQL is not installed (apt-get install -y postgresql)")
    bin_dir = Path(found[-1]).parent
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    base = Path(tempfile.mkdtemp(prefix="headwater-bench-pg-"))
    data, sock_dir = base / "data", base / "sock"
    sock_dir.mkdir()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock_dir, "postgres")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    try:
        subprocess.run(
            [
                *as_postgres,
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [
                *as_postgres,
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(base / "log"),
                "-w",
                "start",
                "-o",
                f"-h 127.0.0.1 -p {port} -k {sock_dir}"
                + "".join(f" -c {name}={value}" for name, value in (settings or {}).items()),
            ],
            check=True,
            capture_output=True,
        )
        postmaster = int((data / "postmaster.pid").read_text().split()[0])
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", postmaster
    finally:
        subprocess.run(
            [*as_postgres, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"],
            capture_output=True,
        )
        shutil.rmtree(base, ignore_errors=True)
