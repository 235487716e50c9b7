"""``headwater serve``'s api process: the ingest process answers the Tracking API's hot routes
and passes every other connection to it (issue 11, ``headwater.handoff``).

Real supervisors, raw sockets. Which process answered is read from ``/proc``: the process
holding the server's end of the client's connection once the answer has come.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import ADMIN_TOKEN, BASE_CONFIG, LiveServer
from tests.support.sockets import holders, listens
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # every test here starts a headwater server process

WRITE_KEY = "Basic " + base64.b64encode(b"WK_web:").decode()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    config = tmp_path / "headwater.yaml"
    config.write_text(BASE_CONFIG)
    # One ingest process: which process answers is what these tests look at.
    server = LiveServer(data_dir=tmp_path / "data", config=config, role="all", ingest_processes=1)
    server.start()
    try:
        # /ready is answered before the api process is up (the ingest process answers it then).
        wait_for(api_listens(server), 30, "the api process to take connections")
        yield server
    finally:
        server.stop()


def api_listens(live: LiveServer) -> Callable[[], bool]:
    return lambda: (live.run_dir / "api.sock").exists()


def request(method: str, path: str, *headers: str, body: bytes = b"") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: test", *headers]
    if body:
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def track(user: str, *headers: str, context: dict[str, Any] | None = None) -> bytes:
    event = {"userId": user, "event": "E", "context": context or {}}
    return request(
        "POST",
        "/v1/track",
        f"Authorization: {WRITE_KEY}",
        *headers,
        body=json.dumps(event).encode(),
    )


REST = request("GET", "/api/v1/sources", f"Authorization: Bearer {ADMIN_TOKEN}")
HEALTH = request("GET", "/health")
METRICS = request("GET", "/metrics")
PREFLIGHT = request(
    "OPTIONS",
    "/v1/track",
    "Origin: https://shop.example",
    "Access-Control-Request-Method: POST",
)


def pixel(user: str) -> bytes:
    message = {"writeKey": "WK_web", "userId": user, "event": "Email Opened"}
    data = base64.urlsafe_b64encode(json.dumps(message).encode()).decode()
    return request("GET", f"/v1/pixel/track?data={data}")


class Client:
    """One kept-alive connection to the server; HTTP/1.1 responses read one at a time."""

    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.sock = socket.create_connection(("127.0.0.1", live.port), timeout=10)
        self.buffer = b""

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def next(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    def ask(self, data: bytes) -> tuple[int, dict[str, str], bytes]:
        self.send(data)
        return self.next()

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        assert chunk, f"the server closed the connection: {self.buffer!r}"
        self.buffer += chunk

    def served_by(self) -> str:
        """The one process holding the server's end of this connection (the one that hands it
        over lets go of it just after the other process has it)."""
        port = self.sock.getsockname()[1]
        found = wait_for(
            lambda: len(held := holders(self.live.pids(), self.live.port, port)) == 1 and held,
            10,
            "one process to hold the connection",
        )
        [name] = found
        return name

    def open(self) -> bool:
        """Whether the server has neither closed nor reset the connection, nor sent anything
        unasked."""
        timeout = self.sock.gettimeout()
        self.sock.setblocking(False)  # a socket with a timeout would wait for something
        try:
            self.sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return True
        except ConnectionResetError:
            return False
        finally:
            self.sock.settimeout(timeout)
        return False  # the end of the stream, or bytes nobody asked for


def names(sources: bytes) -> list[str]:
    return [source["name"] for source in json.loads(sources)["data"]["sources"]]


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def stored(live: LiveServer, user: str) -> list[dict[str, Any]]:
    return [event for event in live.events() if event.get("userId") == user]


def test_the_api_process_answers_all_but_the_hot_routes(live: LiveServer) -> None:
    pids = live.pids()
    assert set(pids) == {"ingest", "api", "worker"}
    assert listens(pids["ingest"], live.port)
    assert not listens(pids["api"], live.port)  # it never listens on the public port
    # Where the cores are busy, the hot routes' process gets the CPU first.
    assert niceness(pids["api"]) == min(niceness(pids["ingest"]) + 10, 19)

    user = uuid.uuid4().hex
    expected = [
        (REST, 200, "api"),
        (HEALTH, 200, "api"),
        (METRICS, 200, "api"),
        (pixel(user), 200, "api"),
        (PREFLIGHT, 204, "api"),
        (track(user), 200, "ingest"),
    ]
    answers = []
    for sent, _, _ in expected:
        with Client(live) as client:
            status, headers, body = client.ask(sent)
            answers.append((sent, status, client.served_by()))
            if sent == REST:
                assert names(body) == ["off", "server", "web"]
            if sent == PREFLIGHT:
                assert headers["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert answers == expected
    # The pixel's event went into the ingest log from the api process.
    assert [e["event"] for e in stored(live, user)] == ["Email Opened", "E"]


def test_a_connection_moves_to_the_api_process_with_its_answers_in_order(
    live: LiveServer,
) -> None:
    users = [uuid.uuid4().hex for _ in range(6)]
    with Client(live) as client:
        assert client.ask(track(users[0]))[0] == 200
        assert client.served_by() == "ingest"
        # Hot POSTs, then a REST GET, then more requests: one write, answered in order.
        client.send(track(users[1]) + track(users[2]) + REST + track(users[3]) + pixel(users[4]))
        answers = [client.next() for _ in range(5)]
        assert [status for status, _, _ in answers] == [200] * 5
        assert names(answers[2][2]) == ["off", "server", "web"]
        assert answers[4][1]["content-type"] == "image/gif"
        assert client.served_by() == "api"
        # The ingest process let go of its descriptor without a FIN or an RST: the client's
        # connection is open, and served.
        assert client.open()
        assert client.ask(HEALTH)[0] == 200
        # The api process sees the client's real address; X-Forwarded-For from it is trusted
        # (loopback), as the ingest process trusts it.
        direct = {"direct": True}
        assert client.ask(track(users[5], context=direct))[0] == 200
        assert client.ask(track(users[5], "X-Forwarded-For: 203.0.113.7", context=direct))[0] == 200
        assert client.served_by() == "api"
    assert [len(stored(live, user)) for user in users[:5]] == [1, 1, 1, 1, 1]
    assert [e["context"]["ip"] for e in stored(live, users[5])] == ["127.0.0.1", "203.0.113.7"]


def test_a_request_body_read_with_its_head_goes_along_whole(live: LiveServer) -> None:
    """More than a Unix socket's buffer: the pending bytes follow the descriptor."""
    blob = uuid.uuid4().hex * 25_000  # 800 KB
    body = json.dumps({"name": "big", "settings": {"blob": blob}}).encode()
    big = request(
        "POST",
        "/api/v1/sources",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "Content-Type: application/json",
        body=body,
    )
    with Client(live) as client:
        status, _, answer = client.ask(big)
        assert status == 201, answer
        assert client.served_by() == "api"
        status, _, answer = client.ask(
            request("GET", "/api/v1/sources/big", f"Authorization: Bearer {ADMIN_TOKEN}")
        )
    assert status == 200
    assert json.loads(answer)["data"]["source"]["settings"] == {"blob": blob}


def test_a_connection_moves_only_between_heads_or_chunks(live: LiveServer) -> None:
    """A chunked body cut inside a chunk, and a pipelined head cut in two, by the reads of the
    ingest process: both reach the api process whole."""
    raw = json.dumps({"name": "chunky", "settings": {"x": "y" * 500}}).encode()
    head = request(
        "POST",
        "/api/v1/sources",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
    )
    half = len(raw) // 2
    with Client(live) as client:
        client.send(head + b"%x\r\n" % len(raw) + raw[:half])
        time.sleep(0.2)  # a read of its own for the rest
        status, _, body = client.ask(raw[half:] + b"\r\n0\r\n\r\n")
        assert (status, json.loads(body)["data"]["source"]["settings"]) == (201, {"x": "y" * 500})
        assert client.served_by() == "api"
    with Client(live) as client:
        client.send(HEALTH + REST[:12])
        time.sleep(0.2)
        client.send(REST[12:])
        assert [client.next()[0] for _ in range(2)] == [200, 200]
        assert client.served_by() == "api"


def test_a_killed_api_process_leaves_its_work_to_the_ingest_process(live: LiveServer) -> None:
    first = live.pids()["api"]
    failures: list[str] = []
    cut: list[float] = []  # when a connection was dropped without an answer
    answered = 0
    stop = threading.Event()

    def load() -> None:
        """REST, pixel and hot requests on fresh connections throughout."""
        nonlocal answered
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        while not stop.is_set():
            try:
                for path in ("/api/v1/sources", "/health"):
                    answer = httpx.get(live.url + path, headers=headers, timeout=10)
                    if answer.status_code != 200:
                        failures.append(f"{path}: {answer.status_code}")
                answer = httpx.post(
                    live.url + "/v1/track",
                    json={"userId": "u", "event": "E"},
                    headers={"Authorization": WRITE_KEY},
                    timeout=10,
                )
                if answer.status_code != 200:
                    failures.append(f"/v1/track: {answer.status_code}")
                answered += 3
            except httpx.RemoteProtocolError:
                cut.append(time.monotonic())
            except httpx.HTTPError as exc:
                failures.append(repr(exc))

    thread = threading.Thread(target=load)
    thread.start()
    try:
        wait_for(lambda: answered >= 30, 30, "requests before the kill")
        killed_at = time.monotonic()
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not Path(f"/proc/{first}").exists() or _zombie(first), 10, "the kill")
        dead_at = time.monotonic()
        # While no api process runs, the ingest process serves the connection itself.
        with Client(live) as client:
            assert client.ask(REST)[0] == 200
            assert client.served_by() == "ingest"
            assert client.ask(track("u"))[0] == 200
        second = wait_for(
            lambda: (pid := live.pids().get("api")) != first and pid,
            30,
            "the supervisor to start the api process again",
        )
        # Once it is back, it takes connections again.
        wait_for(lambda: _served_by(live) == "api", 30, "the new api process to take a connection")
        assert live.pids()["api"] == second
        during = answered
        wait_for(lambda: answered >= during + 30, 30, "requests after the restart")
    finally:
        stop.set()
        thread.join()
    assert failures == []  # nothing was refused
    # Only the request the killed process was answering as it died may be cut (the load is one
    # request at a time): a busy machine makes that window wider, never another failure.
    assert len(cut) <= 1 and all(killed_at <= at <= dead_at + 1.0 for at in cut), cut


def _served_by(live: LiveServer) -> str:
    with Client(live) as client:
        assert client.ask(REST)[0] == 200
        return client.served_by()


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"
