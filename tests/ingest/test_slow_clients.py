"""Slow and idle clients cannot use up the server's open files (issue 10).

Real sockets against a live server with short deadlines: connections that send nothing, or
trickle their headers or body, are answered 408 and closed on time; connections past the cap
get 503 at once; and a flood past the open-file limit leaves ingest and the archive working.
"""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from headwater.connections import default_max_connections
from headwater.store.archive import Archive
from tests.support.live import BASE_CONFIG, LiveServer

AUTH = "Basic " + base64.b64encode(b"WK_web:").decode()
TICK = 0.2


def make_server(tmp_path: Path, server_section: str, open_files: int | None = None) -> LiveServer:
    config = tmp_path / "headwater.yaml"
    config.write_text(BASE_CONFIG + "server:\n" + server_section)
    live = LiveServer(  # one ingest process: the caps are per process
        data_dir=tmp_path / "data",
        config=config,
        role="all",
        open_files=open_files,
        ingest_processes=1,
    )
    live.start()
    return live


@dataclass
class Client:
    """One raw connection that sends ``first`` and then ``drip`` every tick."""

    kind: str
    sock: socket.socket
    drip: bytes
    opened: float = field(default_factory=time.monotonic)
    closed: float | None = None
    received: bytes = b""

    def tick(self) -> None:
        if self.closed is not None:
            return
        try:
            while chunk := self.sock.recv(65536):
                self.received += chunk
            self.closed = time.monotonic()  # EOF: the server closed it
        except BlockingIOError:
            pass
        except OSError:  # reset
            self.closed = time.monotonic()
        if self.closed is None and self.drip:
            try:
                self.sock.send(self.drip)
            except OSError:
                self.closed = time.monotonic()


def open_client(port: int, kind: str, first: bytes, drip: bytes) -> Client:
    sock = socket.create_connection(("127.0.0.1", port))
    if first:
        sock.sendall(first)
    sock.setblocking(False)
    return Client(kind, sock, drip)


def header_trickler(port: int) -> Client:
    return open_client(port, "headers", b"POST /v1/track HTTP/1.1\r\nHost: x\r\n", b"X-Slow: 1\r\n")


def body_trickler(port: int) -> Client:
    head = (
        f"POST /v1/track HTTP/1.1\r\nHost: x\r\nAuthorization: {AUTH}\r\n"
        "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
    ).encode()
    return open_client(port, "body", head, b" ")


def run(clients: list[Client], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(c.closed is None for c in clients):
        for client in clients:
            client.tick()
        time.sleep(TICK)


def archived(live: LiveServer, users: set[str]) -> bool:
    archive = Archive(live.data_dir / "archive")
    now = datetime.now(UTC)
    found = {
        e.get("userId")
        for source in archive.sources()
        for e in archive.read(source, now - timedelta(hours=1), now + timedelta(hours=1))
    }
    return users <= found


def wait_archived(live: LiveServer, users: set[str]) -> None:
    deadline = time.monotonic() + 30
    while not archived(live, users):
        assert time.monotonic() < deadline, "events never reached the archive"
        time.sleep(0.1)


def open_fds(live: LiveServer) -> int:
    """Open files of the process that holds the connections (under `serve`, its ingest)."""
    assert live.process is not None
    pid = live.pids().get("ingest", live.process.pid)
    return len(os.listdir(f"/proc/{pid}/fd"))


@pytest.mark.live
def test_slow_clients_get_408_on_time_while_others_are_served(tmp_path: Path) -> None:
    live = make_server(tmp_path, "  header_timeout_seconds: 1\n  body_timeout_seconds: 2\n")
    try:
        port = live.port
        clients = [open_client(port, "silent", b"", b"") for _ in range(10)]
        clients += [header_trickler(port) for _ in range(20)]
        clients += [body_trickler(port) for _ in range(20)]
        # A kept-alive connection whose second request trickles: its deadline starts then.
        kept = socket.create_connection(("127.0.0.1", port))
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept.recv(65536).startswith(b"HTTP/1.1 200")
        kept.sendall(b"GET /health HTTP/1.1\r\n")
        kept.setblocking(False)
        clients.append(Client("kept-alive", kept, b"X-Slow: 1\r\n"))

        users = set()
        with httpx.Client(base_url=live.url, timeout=5) as http:
            for _ in range(3):  # meanwhile, a normal client is served as usual
                user = uuid.uuid4().hex
                started = time.monotonic()
                response = http.post(
                    "/v1/track",
                    json={"userId": user, "event": "E"},
                    headers={"Authorization": AUTH},
                )
                assert response.status_code == 200
                assert time.monotonic() - started < 2.0
                users.add(user)
                run(clients, 0.3)
        run(clients, 6)

        for client in clients:
            assert client.closed is not None, f"a {client.kind} client is still connected"
            lasted = client.closed - client.opened
            limit = 2.0 if client.kind == "body" else 1.0
            assert limit - 0.1 <= lasted <= limit + 1.5, (client.kind, lasted)
            if client.kind != "body":  # a body trickler may see a reset instead
                assert client.received.startswith(b"HTTP/1.1 408") or (
                    client.kind == "kept-alive" and b"HTTP/1.1 408" in client.received
                ), client
            client.sock.close()
        wait_archived(live, users)
        assert httpx.get(f"{live.url}/ready").status_code == 200
    finally:
        live.stop()


@pytest.mark.live
def test_connections_over_the_cap_get_503_at_once(tmp_path: Path) -> None:
    live = make_server(tmp_path, "  header_timeout_seconds: 2\n  max_connections: 20\n")
    try:
        before = open_fds(live)
        held = [open_client(live.port, "silent", b"", b"") for _ in range(20)]
        time.sleep(0.2)
        extra = [open_client(live.port, "extra", b"", b"") for _ in range(15)]
        run(extra, 1.0)
        for client in extra:
            assert client.closed is not None and client.closed - client.opened < 0.5
            assert client.received.startswith(b"HTTP/1.1 503"), client.received
            assert b"retry-after: 5" in client.received
        assert open_fds(live) <= before + 20 + 2
        assert all(c.closed is None for c in held)
        run(held, 4)  # the header deadline frees the slots
        assert all(c.closed is not None for c in held)
        response = httpx.post(
            f"{live.url}/v1/track",
            json={"userId": "u", "event": "E"},
            headers={"Authorization": AUTH},
        )
        assert response.status_code == 200
    finally:
        live.stop()


@pytest.mark.live
def test_a_flood_past_the_open_file_limit_leaves_ingest_and_the_archive_working(
    tmp_path: Path,
) -> None:
    """The finding, scaled down: far more trickling connections than the process may open."""
    live = make_server(tmp_path, "  header_timeout_seconds: 1\n", open_files=256)
    try:
        assert live.output is not None
        assert (
            f"connections: up to {default_max_connections(256)} of 256 open files"
            in live.output.read_text()
        )
        users: set[str] = set()
        with httpx.Client(base_url=live.url, timeout=5) as http:
            # A client connected before the flood keeps its connection and is served.
            assert http.get("/health").status_code == 200
            flood = [header_trickler(live.port) for _ in range(400)]
            for _ in range(6):
                user = uuid.uuid4().hex
                response = http.post(
                    "/v1/track",
                    json={"userId": user, "event": "E"},
                    headers={"Authorization": AUTH},
                )
                assert response.status_code == 200, response.text
                users.add(user)
                run(flood, 0.3)
            run(flood, 5)
            assert all(c.closed is not None for c in flood)
            refused = sum(c.received.startswith(b"HTTP/1.1 503") for c in flood)
            timed_out = sum(c.received.startswith(b"HTTP/1.1 408") for c in flood)
            assert refused >= 400 - default_max_connections(256) - 5
            assert timed_out + refused == 400
            for client in flood:
                client.sock.close()
            # After the flood, new connections are served again, and nothing was lost.
            user = uuid.uuid4().hex
            assert (
                httpx.post(
                    f"{live.url}/v1/track",
                    json={"userId": user, "event": "E"},
                    headers={"Authorization": AUTH},
                ).status_code
                == 200
            )
            users.add(user)
        wait_archived(live, users)
        assert httpx.get(f"{live.url}/ready").status_code == 200
        log = live.output.read_text()
        assert "Too many open files" not in log and "EMFILE" not in log, log[-2000:]
    finally:
        live.stop()


def test_serve_raises_the_soft_open_file_limit_to_the_hard_one() -> None:
    code = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "from headwater.connections import raise_open_file_limit\n"
        "print(raise_open_file_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    raised, soft, hard = (int(x) for x in out)
    expected = hard if hard != -1 else 1 << 20
    assert raised == soft == expected
    assert default_max_connections(1024) == 512
    assert default_max_connections(20_000) == 15_000
