"""Which process holds a TCP socket, read from ``/proc`` (Linux)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

_LISTEN, _ESTABLISHED = "0A", "01"


def _inodes(local_port: int, state: str, remote_port: int | None = None) -> set[str]:
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if (
                int(fields[1].rsplit(":", 1)[1], 16) == local_port
                and fields[3] == state
                and (remote_port is None or int(fields[2].rsplit(":", 1)[1], 16) == remote_port)
            ):
                found.add(fields[9])
    return found


def _holds(pid: int, inodes: set[str]) -> bool:
    links = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except (FileNotFoundError, PermissionError):  # gone, or a zombie
        return False
    for fd in fds:
        try:
            links.add(os.readlink(fd))
        except FileNotFoundError:
            continue
    return any(f"socket:[{inode}]" in links for inode in inodes)


def listens(pid: int, port: int) -> bool:
    """Whether ``pid`` holds a listening TCP socket on ``port``."""
    return _holds(pid, _inodes(port, _LISTEN))


def holders(pids: Mapping[str, int], server_port: int, client_port: int) -> set[str]:
    """The names of the processes in ``pids`` that hold the server's end of the connection
    from ``client_port`` to ``server_port``."""
    inodes = _inodes(server_port, _ESTABLISHED, client_port)
    assert inodes, f"no connection from port {client_port} to port {server_port}"
    return {name for name, pid in pids.items() if _holds(pid, inodes)}
