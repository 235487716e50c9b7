"""The Tracking API's hot routes on their own HTTP protocol (``headwater.hot_routes``).

The same answers as the ASGI app gives on a connection handed to uvicorn (the Tracking API's own
code behind both), and the HTTP/1.1 a client relies on (keep-alive, chunked and gzip bodies,
pipelining, ``Expect: 100-continue``) with the slow-client guards of ``headwater.connections``.
Real server processes, real sockets.
"""

from __future__ import annotations

import base64
import gzip
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.live import ADMIN_TOKEN, LiveServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # every test here starts a headwater server process

AUTH = "Basic " + base64.b64encode(b"BENCH_WRITE_KEY:").decode()
EVENT = {"userId": "u-1", "event": "Order Completed", "properties": {"total": 27.5}}
CONFIG = "workspace: hot\nsources:\n  - name: web\n    write_key: BENCH_WRITE_KEY\n"


class Server:
    """``headwater serve --role ingest`` on a loopback port, reached over raw sockets."""

    def __init__(self, base: Path, server_options: str = "") -> None:
        config = base / "headwater.yaml"
        config.write_text(CONFIG + server_options)
        self.live = LiveServer(data_dir=base / "data", config=config)
        self.live.start()
        self.url = self.live.url

    def stop(self) -> None:
        self.live.stop()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.live.port), timeout=10)


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp("hot"))
    yield server
    server.stop()


def request(path: str, body: bytes, *headers: str, method: str = "POST") -> bytes:
    head = [f"{method} {path} HTTP/1.1", "Host: test", *headers]
    if body and not any(h.lower().startswith("transfer-encoding") for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def track(event: dict[str, object] | None = None) -> bytes:
    return request("/v1/track", json.dumps(event or EVENT).encode(), f"Authorization: {AUTH}")


class Responses:
    """HTTP/1.1 responses read off a raw socket, one at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def next(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"the connection closed mid-response: {self.buffer!r}"
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            assert self._fill(), "the connection closed mid-body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    def closed(self) -> bool:
        """Whether the server closed the connection (nothing more is sent on it)."""
        try:
            return not self._fill() and not self.buffer
        except ConnectionResetError:
            return True


# --- the same answers as the uvicorn layer ----------------------------------------------------


def _answers(url: str, *, asgi: bool) -> list[tuple[int, object, str | None, str | None]]:
    """The answers to one request of each kind the Tracking API tells apart: on the hot routes'
    own protocol, or (``asgi``) on a connection a first GET handed to uvicorn and the ASGI app."""
    raw = json.dumps(EVENT).encode()
    auth = {"authorization": AUTH}

    def chunks() -> Iterator[bytes]:  # httpx sends an iterator chunked
        yield raw[:10]
        yield raw[10:]

    sent = [
        ("/v1/track", {"content": raw, "headers": auth}),
        (
            "/v1/track",
            {"content": gzip.compress(raw), "headers": {**auth, "content-encoding": "gzip"}},
        ),
        ("/v1/track", {"content": chunks(), "headers": auth}),
        ("/v1/track", {"content": raw, "headers": {**auth, "origin": "https://shop.example"}}),
        ("/v1/batch", {"json": {"batch": [{"type": "track", **EVENT}] * 3}, "headers": auth}),
        ("/v1/batch", {"json": {"batch": [{"type": "nope"}]}, "headers": auth}),
        ("/v1/track", {"json": {"userId": "u"}, "headers": auth}),  # no event: dropped, 200
        ("/v1/track", {"content": b"{", "headers": auth}),
        ("/v1/track", {"json": EVENT}),  # no write key
        ("/v1/track", {"json": EVENT, "headers": {"authorization": "Basic bm9wZTo="}}),
        ("/v1/track", {"content": b"[" * 50_000, "headers": auth}),  # over the 32 KB limit
    ]
    found = []
    limits = httpx.Limits(max_connections=1)  # one connection: after the GET, all ASGI's
    with httpx.Client(base_url=url, timeout=10, limits=limits) as client:
        if asgi:
            assert client.get("/health").status_code == 200
        for path, kwargs in sent:
            answer = client.post(path, **kwargs)  # type: ignore[arg-type]
            found.append(
                (
                    answer.status_code,
                    answer.json(),
                    answer.headers.get("access-control-allow-origin"),
                    answer.headers.get("vary"),
                )
            )
    return found


def test_the_hot_routes_answer_as_the_asgi_app_does(hand: Server) -> None:
    expected = _answers(hand.url, asgi=True)
    assert [a[0] for a in expected] == [200, 200, 200, 200, 200, 200, 200, 400, 400, 401, 400]
    assert expected[3][2:] == ("https://shop.example", "Origin")
    assert _answers(hand.url, asgi=False) == expected
    # Both paths stored what they acknowledged: six requests each carried events or drops.
    assert len(hand.live.records()) == 2 * 7


def test_keep_alive_and_pipelined_requests_are_answered_in_order(hand: Server) -> None:
    with hand.connect() as sock:
        responses = Responses(sock)
        sock.sendall(track())
        assert responses.next()[0] == 200
        bad = request("/v1/track", b"{", f"Authorization: {AUTH}")
        # Three requests in one write, the middle one not a hot route.
        sock.sendall(track() + request("/v1/other", b"", method="GET") + bad)
        statuses = [responses.next() for _ in range(3)]
    assert [s for s, _, _ in statuses] == [200, 404, 400]
    assert json.loads(statuses[2][2])["code"] == "invalid_json"


def test_other_requests_hand_the_connection_to_the_asgi_app(hand: Server) -> None:
    """A preflight (answered only by the ASGI app) between two hot requests; a chunked POST to
    a route the protocol leaves to the app, then a hot one: all answered, in order."""
    raw = json.dumps({"userId": "u-1", "traits": {"plan": "pro"}}).encode()
    preflight = request(
        "/v1/track",
        b"",
        "Origin: https://shop.example",
        "Access-Control-Request-Method: POST",
        method="OPTIONS",
    )
    identify = request("/v1/identify", b"", f"Authorization: {AUTH}", "Transfer-Encoding: chunked")
    identify += b"%x\r\n%s\r\n0\r\n\r\n" % (len(raw), raw)
    with hand.connect() as sock:
        responses = Responses(sock)
        sock.sendall(track() + preflight + track())
        answers = [responses.next() for _ in range(3)]
    with hand.connect() as sock:  # handed off inside one read: the rest is passed on re-framed
        responses = Responses(sock)
        sock.sendall(identify + track())
        answers += [responses.next() for _ in range(2)]
    assert [status for status, _, _ in answers] == [200, 204, 200, 200, 200]
    assert answers[1][1]["access-control-allow-methods"] == "GET, POST, OPTIONS"
    assert [json.loads(body) for _, _, body in answers[3:]] == [{"success": True}] * 2


def test_a_request_handed_off_across_reads_reaches_the_app_whole(hand: Server) -> None:
    """The connection changes hands only after a read that ends between heads or chunks: a
    chunked body cut inside a chunk, and a pipelined head cut in two, arrive whole."""
    raw = json.dumps({"name": "chunky", "settings": {"x": "y" * 500}}).encode()
    head = request(
        "/api/v1/sources",
        b"",
        f"Authorization: Bearer {ADMIN_TOKEN}",
        "Content-Type: application/json",
        "Transfer-Encoding: chunked",
    )
    half = len(raw) // 2
    with hand.connect() as sock:
        responses = Responses(sock)
        sock.sendall(head + b"%x\r\n" % len(raw) + raw[:half])
        time.sleep(0.2)  # a read of its own for the rest
        sock.sendall(raw[half:] + b"\r\n0\r\n\r\n")
        status, _, body = responses.next()
        assert (status, json.loads(body)["data"]["source"]["settings"]) == (201, {"x": "y" * 500})
    health = request("/health", b"", method="GET")
    with hand.connect() as sock:
        responses = Responses(sock)
        sock.sendall(health + health[:12])
        time.sleep(0.2)
        sock.sendall(health[12:])
        assert [responses.next()[0] for _ in range(2)] == [200, 200]


def test_a_chunk_too_large_to_hand_off_is_refused(hand: Server) -> None:
    """The parser holds a chunk until it ends; over 1 MiB, it is refused rather than held."""
    head = request("/api/v1/sources", b"", "Transfer-Encoding: chunked")
    with hand.connect() as sock:
        responses = Responses(sock)
        sock.sendall(head + b"%x\r\n" % (2 << 20) + b"x" * ((1 << 20) - 10_000))
        time.sleep(0.2)  # all of that read before the last piece crosses the limit
        sock.sendall(b"x" * 20_000)
        status, headers, body = responses.next()
        assert (status, headers["connection"]) == (413, "close")
        assert json.loads(body)["code"] == "payload_too_large"
        assert responses.closed()


def test_a_chunked_body_sent_in_pieces_is_decoded_whole(hand: Server) -> None:
    raw = json.dumps(EVENT).encode()
    head = request("/v1/track", b"", f"Authorization: {AUTH}", "Transfer-Encoding: chunked")
    with hand.connect() as sock:
        responses = Responses(sock)
        sock.sendall(head)
        for piece in (raw[:7], raw[7:20], raw[20:]):
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            time.sleep(0.05)
        sock.sendall(b"0\r\n\r\n")
        status, _, body = responses.next()
    assert (status, json.loads(body)) == (200, {"success": True})


def test_a_chunked_body_over_the_limit_is_refused(hand: Server) -> None:
    head = request("/v1/track", b"", f"Authorization: {AUTH}", "Transfer-Encoding: chunked")
    piece = b'"' + b"x" * 4094 + b'"'
    with hand.connect() as sock:
        responses = Responses(sock)
        sock.sendall(head + b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for _ in range(10)))
        sock.sendall(b"0\r\n\r\n")
        status, _, body = responses.next()
    assert status == 400 and json.loads(body)["code"] == "payload_too_large"


def test_expect_100_continue_is_answered_before_the_body(hand: Server) -> None:
    raw = json.dumps(EVENT).encode()
    head = request("/v1/track", b"", f"Authorization: {AUTH}", "Expect: 100-continue")
    head = head[:-2] + f"Content-Length: {len(raw)}\r\n\r\n".encode()
    with hand.connect() as sock:
        responses = Responses(sock)
        sock.sendall(head)
        assert responses.next()[0] == 100
        sock.sendall(raw)
        assert responses.next()[0] == 200


def test_http_1_0_and_connection_close_end_the_connection(hand: Server) -> None:
    raw = json.dumps(EVENT).encode()
    old = f"POST /v1/track HTTP/1.0\r\nAuthorization: {AUTH}\r\nContent-Length: {len(raw)}\r\n\r\n"
    closing = request("/v1/track", raw, f"Authorization: {AUTH}", "Connection: close")
    for sent in (old.encode() + raw, closing):
        with hand.connect() as sock:
            responses = Responses(sock)
            sock.sendall(sent)
            status, headers, _ = responses.next()
            assert (status, headers.get("connection")) == (200, "close")
            assert responses.closed()


def test_a_request_that_is_not_http_gets_400_and_a_close(hand: Server) -> None:
    with hand.connect() as sock:
        responses = Responses(sock)
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        status, _, body = responses.next()
        assert status == 400 and json.loads(body)["code"] == "bad_request"
        assert responses.closed()


# --- the guards of headwater.connections --------------------------------------------------------


def test_slow_and_idle_clients_are_closed_at_their_deadlines(tmp_path: Path) -> None:
    server = Server(
        tmp_path, "server:\n  header_timeout_seconds: 0.5\n  body_timeout_seconds: 0.5\n"
    )
    try:
        silent = server.connect()  # never sends a byte
        slow_head = server.connect()
        slow_head.sendall(b"POST /v1/track HTTP/1.1\r\nHost: test\r\n")
        slow_body = server.connect()
        slow_body.sendall(request("/v1/track", b"x" * 100, f"Authorization: {AUTH}")[:-90])
        idle = server.connect()
        idle_responses = Responses(idle)
        idle.sendall(track())
        assert idle_responses.next()[0] == 200
        for sock in (silent, slow_head, slow_body):
            status, headers, body = Responses(sock).next()
            assert (status, headers["connection"]) == (408, "close"), body
            assert json.loads(body)["code"] == "request_timeout"
            assert Responses(sock).closed()
        assert idle_responses.closed()  # closed without an answer: it asked nothing
        for sock in (silent, slow_head, slow_body, idle):
            sock.close()
    finally:
        server.stop()


def test_connections_over_the_cap_get_503_and_a_close(tmp_path: Path) -> None:
    server = Server(tmp_path, "server:\n  max_connections: 2\n")

    def served() -> socket.socket | None:
        """A connection the server answers (one closed just before may still be counted)."""
        sock = server.connect()
        sock.sendall(track())
        if Responses(sock).next()[0] == 200:
            return sock
        sock.close()
        return None

    try:
        first = wait_for(served, 10, "a first connection under the cap")
        second = wait_for(served, 10, "a second connection under the cap")
        third = server.connect()
        status, headers, body = Responses(third).next()
        assert (status, headers["retry-after"]) == (503, "5")
        assert json.loads(body)["code"] == "unavailable"
        assert Responses(third).closed()
        responses = Responses(first)
        first.sendall(track())
        assert responses.next()[0] == 200  # the ones under the cap are still served
        for sock in (first, second, third):
            sock.close()
    finally:
        server.stop()
