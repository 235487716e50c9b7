"""A hand-rolled HTTP/1.1 protocol for the Tracking API's hot routes (single and batch POSTs).

uvicorn spends most of a small request in its ASGI machinery (a scope dict, a request/response
cycle object, an ``asyncio.Event``, message dicts, a check of every response header, a
keep-alive timer armed and cancelled per request). This protocol parses with the same
``httptools`` parser but answers ``POST`` on the given paths itself: it buffers the body within
the route's limit, calls ``handler(path, headers, body, client_ip)`` once the request is
complete and writes the response in one ``transport.write``. Measured doing the Tracking API's
work, it costs 39 CPU-µs a single-event request against 62 through uvicorn's ASGI path
(``bench/http_layers.py``, docs/decisions.md).

The first request that is not a hot route hands the connection on, with everything after it:
to another process if a ``relay`` takes it (``headwater.handoff``: the api process, so the REST
API never runs on this event loop), or else to ``fallback``, uvicorn's own protocol class
(``headwater.connections.guarded_protocol``) in this process, which serves it through the ASGI
app. Either way the request's head is written out again, as uvicorn does for a WebSocket
upgrade, and its body follows as it arrives. Answers stay in order: the hand-off waits for the
hot requests still being answered, and a relay also for their bytes to leave the write buffer.
The connection changes hands only after a read that leaves no part of a head or of a chunk in
the parser (httptools tells no offsets, so the rest of a read is passed on re-framed, and the
next read must start where a new head or chunk does).

It is a uvicorn protocol class (``uvicorn.run(app, http=hot_protocol(...))``), so uvicorn keeps
owning the socket, signals, graceful shutdown, the ``Date`` header and the connection set, and
it has the guards of ``headwater.connections``: a header deadline from the connection's start or
the request's first byte, a body deadline from the end of the headers (408, then close), an
idle keep-alive deadline, and a cap on open connections (503, then close). As there, a request
only notes when its phase began; one sweep per server closes the overrunning ones.

HTTP handled: keep-alive (HTTP/1.1 default, HTTP/1.0 opt-in), ``Content-Length`` and chunked
bodies, pipelining (answered in order; reading pauses while a request waits), ``Expect:
100-continue``, and whatever ``Content-Encoding`` the handler undoes (gzip for the Tracking API).
"""

from __future__ import annotations

import asyncio
import http
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httptools

# (path, headers with lower-case names, body, the client's address) -> (status, body, headers)
Handler = Callable[
    [str, dict[bytes, bytes], bytes, str | None],
    Awaitable[tuple[int, bytes, list[tuple[bytes, bytes]]]],
]
# (the connection, the bytes read from it for the fallback) -> whether another process took it
Relay = Callable[[asyncio.Transport, bytes], Awaitable[bool]]

_HEADERS, _BODY, _IDLE = 1, 2, 3  # the phases with a deadline; 0 while a request is answered
_STATUS = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in http.HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_JSON = b"content-type: application/json\r\n"
_CLOSE = b"connection: close\r\n"


def _closing(status: int, code: bytes, message: bytes, extra: bytes = b"") -> bytes:
    body = b'{"code":"' + code + b'","message":"' + message + b'"}'
    return (
        _STATUS[status] + _JSON + extra + _CLOSE + b"content-length: %d\r\n\r\n" % len(body) + body
    )


_TOO_SLOW = _closing(
    408, b"request_timeout", b"The request was not received in time; send it again, faster."
)
_TOO_MANY = _closing(
    503,
    b"unavailable",
    b"The server has too many open connections; retry later.",
    b"retry-after: 5\r\n",
)
_MALFORMED = _closing(400, b"bad_request", b"The request is not valid HTTP/1.1.")
_FAILED = _closing(500, b"server_error", b"The server failed; retry later.")
_CHUNK_TOO_LARGE = _closing(
    413,
    b"payload_too_large",
    b"A chunk of the chunked request body is over 1 MiB; send smaller chunks, or the body "
    b"with a Content-Length.",
)
# What the parser may hold of one request it passes on re-framed (a head, a chunk) before the
# connection can change hands.
MAX_FRAMED = 1 << 20

# A complete hot request: path, headers, body, keep-alive.
_Request = tuple[bytes, dict[bytes, bytes], bytes, bool]


class HotProtocol(asyncio.Protocol):
    """One connection. Configure a subclass with :func:`hot_protocol`; uvicorn makes one per
    connection with its ``config``, ``server_state`` and ``app_state``."""

    handler: Handler
    fallback: Callable[..., asyncio.Protocol]
    relay: Relay | None = None
    routes: Mapping[bytes, int] = {}  # path -> body limit of the POST routes served here
    header_timeout = 10.0
    body_timeout = 60.0
    keep_alive_timeout = 5.0  # uvicorn's default for idle kept-alive connections
    max_connections = 1 << 30

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: Any = None,
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._config = config
        self._state = server_state
        self._app_state = app_state
        self._connections: set[Any] = server_state.connections
        self._tasks: set[asyncio.Task[None]] = server_state.tasks
        self._loop = _loop or asyncio.get_event_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._peer: str | None = None
        self._queue: deque[_Request] = deque()
        self._busy = False  # a request is being answered
        self._closing = False  # answer what is queued, then close (shutdown)
        self._write_paused = False
        self._phase = 0
        self._since = 0.0
        # Once a request is not a hot route: what the fallback is to read, until it has taken
        # over the connection; then the fallback itself.
        self._pending: list[bytes] | None = None
        self._successor: asyncio.Protocol | None = None
        self._relaying = False  # a relay is under way
        # The parser holds part of a request's head, or of a chunk of a body it passes on
        # re-framed: the connection cannot change hands until that is through it.
        self._framing = False
        self._chunked = False
        # The request being parsed.
        self._url = b""
        self._headers: list[tuple[bytes, bytes]] = []
        self._expect = False
        self._body: list[bytes] = []
        self._size = 0
        self._limit = 0

    # --- connection -----------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._peer = peer[0] if isinstance(peer, tuple) else None
        self._connections.add(self)
        if len(self._connections) > self.max_connections:
            transport.write(_TOO_MANY)
            transport.close()
            return
        self._start(_HEADERS)  # also a client that never sends a byte
        _sweep_server(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._connections.discard(self)
        self._phase = 0
        self._queue.clear()  # a running handler finishes; its answer goes nowhere
        self._pending = None

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # Only a handed-off request gets this far (a hot one is answered as plain HTTP):
            # what follows its head belongs to the fallback too.
            if self._pending is not None or self._successor is not None:
                self._forward(data[upgrade.args[0] :])
            else:
                self._abort(_MALFORMED)
        except httptools.HttpParserError:
            self._abort(_MALFORMED)
            return
        if self._pending is None:
            return
        # A chunked body passed on is whole up to here only if this read ended with a chunk
        # (or the head): otherwise the next chunk's size line has begun inside the parser.
        if self._chunked and not data.endswith(b"\r\n"):
            self._framing = True
        if self._framing and sum(map(len, self._pending)) > MAX_FRAMED:
            self._abort(_CHUNK_TOO_LARGE)
            return
        self._hand_on()

    def pause_writing(self) -> None:
        """The client does not read its answers: stop reading its requests."""
        self._write_paused = True
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._transport is None:
            return
        if self._pending is not None:
            self._hand_on()
        elif not self._queue:
            self._transport.resume_reading()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: close once the answers under way are written."""
        if self._transport is None:
            return
        if self._busy:
            self._closing = True
        else:
            self._transport.close()

    # --- parser callbacks -----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._framing = True
        self._url = b""
        self._headers = []
        self._expect = False
        self._body = []
        self._size = 0
        if self._phase != _HEADERS:  # not the first request, whose deadline runs from connect
            self._start(_HEADERS)

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        # As uvicorn keeps them for ASGI (llhttp leaves trailing whitespace on the value).
        name = name.lower()
        value = value.rstrip(b" \t")
        self._headers.append((name, value))
        if name == b"expect" and value.lower() == b"100-continue":
            self._expect = True

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._limit = (
            self.routes.get(self._url.partition(b"?")[0], 0)
            if parser.get_method() == b"POST"
            else 0
        )
        if not self._limit or self._pending is not None or self._successor is not None:
            self._hand_off_head()
            return
        if self._expect:
            assert self._transport is not None
            self._transport.write(_CONTINUE)
        self._start(_BODY)  # until on_message_complete: at once if there is no body

    def on_chunk_header(self) -> None:
        self._framing = True

    def on_chunk_complete(self) -> None:
        self._framing = False

    def on_body(self, body: bytes) -> None:
        if not self._limit:
            self._forward(b"%x\r\n%s\r\n" % (len(body), body) if self._chunked else body)
            return
        # Keep no more than the limit and one chunk: enough for the handler to answer 400.
        if self._size <= self._limit:
            self._body.append(body)
        self._size += len(body)

    def on_message_complete(self) -> None:
        self._framing = False
        if not self._limit:
            if self._chunked:
                self._forward(b"0\r\n\r\n")
                self._chunked = False
                self._phase = 0
            return
        self._phase = 0
        request = (
            self._url.partition(b"?")[0],
            dict(self._headers),  # as the Tracking API reads them: the last repeated one wins
            self._body[0] if len(self._body) == 1 else b"".join(self._body),
            self._parser.should_keep_alive(),
        )
        if self._busy:  # pipelined: answered in order once the one before is
            self._queue.append(request)
            assert self._transport is not None
            self._transport.pause_reading()
            return
        self._busy = True
        task = self._loop.create_task(self._answer(request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- answering ------------------------------------------------------------------------------

    async def _answer(self, request: _Request) -> None:
        transport = self._transport
        assert transport is not None
        while True:
            path, headers, body, keep_alive = request
            try:
                status, content, extra = await self.handler(
                    path.decode("latin-1"), headers, body, self._client(headers)
                )
            except Exception:
                transport.write(_FAILED)
                transport.close()
                return
            if transport.is_closing():
                return
            keep_alive = keep_alive and not self._closing
            transport.write(self._response(status, content, extra, keep_alive))
            if not keep_alive:
                transport.close()
                return
            if not self._queue:
                break
            request = self._queue.popleft()
        self._busy = False
        if self._pending is not None:
            self._hand_on()
            return
        if self._phase == 0:  # no next request has begun: the connection idles
            self._start(_IDLE)
        if not self._write_paused:
            transport.resume_reading()

    def _client(self, headers: dict[bytes, bytes]) -> str | None:
        """The client's address: from ``X-Forwarded-For`` when a trusted proxy (uvicorn's
        ``forwarded_allow_ips``) sent the request, as uvicorn's proxy headers do for ASGI."""
        peer = self._peer
        forwarded = headers.get(b"x-forwarded-for")
        if forwarded is None or not _trusted(self._config, peer):
            return peer
        for host in reversed(forwarded.decode("latin-1").split(",")):
            host = host.strip()
            if host and not _trusted(self._config, host):
                return host
        return peer

    def _response(
        self, status: int, body: bytes, headers: list[tuple[bytes, bytes]], keep_alive: bool
    ) -> bytes:
        parts = [_STATUS.get(status) or b"HTTP/1.1 %d \r\n" % status]
        typed = False
        for name, value in (*self._state.default_headers, *headers):
            parts += (name, b": ", value, b"\r\n")
            typed = typed or name == b"content-type"
        if body and not typed:
            parts.append(_JSON)
        if not keep_alive:
            parts.append(_CLOSE)
        parts += (b"content-length: %d\r\n\r\n" % len(body), body)
        return b"".join(parts)

    def _abort(self, response: bytes) -> None:
        """Answer a request that cannot be served and close, unless an answer is under way
        (then close after it: the client is told nothing it could misread)."""
        assert self._transport is not None
        self._queue.clear()
        self._phase = 0
        if self._busy:
            self._closing = True
            self._transport.pause_reading()
            return
        self._transport.write(response)
        self._transport.close()

    # --- handing the connection to the fallback -------------------------------------------------

    def _hand_off_head(self) -> None:
        """Pass the request whose headers just ended on, as the client sent it."""
        parser = self._parser
        self._limit = 0
        self._chunked = any(
            name == b"transfer-encoding" and b"chunked" in value.lower()
            for name, value in self._headers
        )
        # A body of known length is passed on as it comes, and its rest is read by whoever
        # has the connection next; a chunked one goes through our parser, re-framed, until a
        # read ends between two chunks.
        self._framing = False
        if self._chunked:
            self._start(_BODY)
        else:
            self._phase = 0
        head = [
            parser.get_method(),
            b" ",
            self._url,
            b" HTTP/%s\r\n" % parser.get_http_version().encode(),
        ]
        for name, value in self._headers:
            head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        if self._pending is None and self._successor is None:
            self._pending = []
            assert self._transport is not None
            self._transport.pause_reading()
        self._forward(b"".join(head))

    def _forward(self, data: bytes) -> None:
        if self._successor is not None:
            self._successor.data_received(data)
        elif self._pending is not None:
            self._pending.append(data)

    def _hand_on(self) -> None:
        """Hand the connection on once our answers are all written and the parser holds no
        part of a request it passes on (until then, read on: the rest goes through it)."""
        transport = self._transport
        if self._busy or self._relaying or self._successor is not None or transport is None:
            return
        if transport.is_closing():
            return
        if self._framing:
            if not self._write_paused:
                transport.resume_reading()
            return
        transport.pause_reading()
        self._take_over()

    def _take_over(self) -> None:
        """To the relay's process if there is one and it takes the connection, else to the
        fallback here."""
        if self.relay is None:
            self._take_over_here()
            return
        self._relaying = True
        task = self._loop.create_task(self._relay(self.relay))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _relay(self, relay: Relay) -> None:
        transport = self._transport
        assert transport is not None
        if await self._drained() and self._pending is not None:
            pending = b"".join(self._pending)
            if await relay(transport, pending):
                self._pending = None
                self._connections.discard(self)
                # Closes this process's descriptor only: the connection stays open (no FIN,
                # no RST) for the process that holds the other one.
                transport.close()
                return
            if self._pending is not None:  # not lost meanwhile
                self._pending = [pending]
        self._relaying = False
        if self._pending is not None and not transport.is_closing():
            self._take_over_here()

    async def _drained(self) -> bool:
        """Whether our answers left the write buffer (a client that does not read them for a
        body deadline is served here instead): the other process writes after them."""
        transport = self._transport
        assert transport is not None
        deadline = self._loop.time() + self.body_timeout
        while transport.get_write_buffer_size():
            if transport.is_closing() or self._loop.time() > deadline:
                return False
            await asyncio.sleep(0.005)
        return not transport.is_closing()

    def _take_over_here(self) -> None:
        """Let the fallback own the connection from here."""
        transport, pending = self._transport, self._pending
        assert transport is not None and pending is not None
        self._connections.discard(self)
        successor = self.fallback(
            config=self._config,
            server_state=self._state,
            app_state=self._app_state,
            _loop=self._loop,
        )
        transport.set_protocol(successor)
        successor.connection_made(transport)
        self._successor, self._pending = successor, None
        transport.resume_reading()  # the fallback's flow control starts from "reading"
        successor.data_received(b"".join(pending))

    # --- deadlines ------------------------------------------------------------------------------

    def _start(self, phase: int) -> None:
        self._phase = phase
        self._since = self._loop.time()

    def overran(self, now: float) -> bool:
        """Close the connection if its current phase is past its deadline."""
        phase = self._phase
        if not phase or self._successor is not None:
            return False
        if phase == _HEADERS:
            limit = self.header_timeout
        elif phase == _BODY:
            limit = self.body_timeout
        else:
            limit = self.keep_alive_timeout
        if now - self._since < limit:
            return False
        self._phase = 0
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if phase != _IDLE and not self._busy:
                transport.write(_TOO_SLOW)
            transport.close()
        return True


def _trusted(config: Any, host: str | None) -> bool:
    allowed = getattr(config, "forwarded_allow_ips", None) or "127.0.0.1"
    if isinstance(allowed, str):
        allowed = [part.strip() for part in allowed.split(",")]
    return "*" in allowed or host in allowed


_swept: weakref.WeakSet[Any] = weakref.WeakSet()  # uvicorn ServerStates with a sweep running


def _sweep_server(protocol: HotProtocol) -> None:
    """Start the deadline sweep of ``protocol``'s server, once per server."""
    state = protocol._state
    if state in _swept:
        return
    _swept.add(state)
    loop, connections = protocol._loop, protocol._connections
    shortest = min(protocol.header_timeout, protocol.body_timeout, protocol.keep_alive_timeout)
    interval = min(max(shortest / 4, 0.05), 1.0)

    def sweep() -> None:
        now = loop.time()
        for connection in list(connections):
            if isinstance(connection, HotProtocol):
                connection.overran(now)
        loop.call_later(interval, sweep)

    loop.call_later(interval, sweep)


def hot_protocol(
    handler: Handler,
    routes: Mapping[bytes, int],
    *,
    fallback: Callable[..., asyncio.Protocol],
    relay: Relay | None = None,
    header_timeout: float = 10.0,
    body_timeout: float = 60.0,
    keep_alive_timeout: float = 5.0,
    max_connections: int = 1 << 30,
) -> type[HotProtocol]:
    """A protocol class for ``uvicorn.run(http=…)``: POST on ``routes`` (each path with its
    body limit in bytes) is answered by ``handler``; a connection's first other request hands
    it to ``relay`` (another process) when given and it takes it, or else to ``fallback``, a
    uvicorn protocol class built with the same arguments."""
    return type(
        "HotProtocol",
        (HotProtocol,),
        {
            "handler": staticmethod(handler),
            "fallback": fallback,
            "relay": staticmethod(relay) if relay is not None else None,
            "routes": dict(routes),
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
            "keep_alive_timeout": keep_alive_timeout,
            "max_connections": max_connections,
        },
    )
