"""Starting the processes a benchmark measures: loopback ports, core pinning, readiness."""

from __future__ import annotations

import shutil
import socket
import time

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
