"""Starting the processes a benchmark measures: loopback ports, core pinning, readiness."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
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


def start_noop(core: int) -> tuple[subprocess.Popen[bytes], str]:
    """``noop_app.py`` on uvicorn (uvloop, httptools) pinned to ``core``: the ceiling for ingest,
    the receiver for delivery. Returns the process and its URL, once it answers."""
    port = free_port()
    process = subprocess.Popen(
        [
            *pin(core),
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
        ],
        cwd=Path(__file__).parent,
    )
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/", "the no-op server", timeout=20)
    return process, url
