"""Keeping slow and idle clients from using up the process's open files.

Every connection holds a file descriptor, and so do the state database, the archive's hour
files and the destinations' HTTP pools. uvicorn closes idle keep-alive connections but has no
deadline for reading a request: a client that connects and never sends, or sends its headers
or body a byte at a time, holds its descriptor for ever, and enough of them leave the archive
unable to open a file. Three guards, all at the connection:

- a deadline for the request line and headers (``header_timeout``), from the connection's
  start or the request's first byte; then one for the body (``body_timeout``), from the end
  of the headers. A request too slow for either gets ``408`` and the connection is closed;
- a cap on open connections (``max_connections``) set well below the open-file limit, so the
  rest of the process always has descriptors left; a connection over the cap gets ``503``
  with ``Retry-After`` and is closed at once;
- ``serve`` raises the soft open-file limit to the hard one, as the default soft limit (often
  1024) is far below what the machine allows.
"""

from __future__ import annotations

import asyncio
import resource
import weakref
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 60.0
MAX_OPEN_FILES = 1 << 20  # what to ask for when the hard limit is unlimited


def raise_open_file_limit() -> int:
    """Raise the soft limit on open files to the hard limit; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = MAX_OPEN_FILES if hard == resource.RLIM_INFINITY else hard
    if soft == resource.RLIM_INFINITY or soft >= target:
        return MAX_OPEN_FILES if soft == resource.RLIM_INFINITY else soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return soft
    return target


def default_max_connections(open_files: int) -> int:
    """Connections to allow under ``open_files``: a quarter (at least 512) is kept for the
    database, archive, destination pools and logs, but connections get at least half."""
    return max(open_files - max(512, open_files // 4), open_files // 2, 1)


def _response(status: bytes, code: bytes, message: bytes, extra: bytes = b"") -> bytes:
    """A complete HTTP response in the Tracking API's error shape, closing the connection."""
    body = b'{"code":"' + code + b'","message":"' + message + b'"}'
    return (
        b"HTTP/1.1 "
        + status
        + b"\r\ncontent-type: application/json\r\n"
        + extra
        + b"connection: close\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


_TOO_SLOW = _response(
    b"408 Request Timeout",
    b"request_timeout",
    b"The request was not received in time; send it again, faster.",
)
_TOO_MANY = _response(
    b"503 Service Unavailable",
    b"unavailable",
    b"The server has too many open connections; retry later.",
    b"retry-after: 5\r\n",
)


class GuardedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with read deadlines and a cap on open connections.

    Configure a subclass with ``guarded_protocol``; uvicorn creates one per connection. A
    request only notes when its current phase began (no timer per request, which would cost
    the hot path two timer handles); one sweep per server, a few times per deadline, closes
    the connections that overran.
    """

    header_timeout = DEFAULT_HEADER_TIMEOUT
    body_timeout = DEFAULT_BODY_TIMEOUT
    max_connections = 1 << 30

    def __init__(self, *args: Any, pending: bytes = b"", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase: str | None = None  # "headers" or "body" while a deadline runs
        self._since = 0.0
        # What another process read from the connection before handing it here
        # (headwater.handoff): parsed before anything the socket brings.
        self._handed = pending

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.write(_TOO_MANY)
            transport.close()
            return
        self._start("headers")  # also a client that never sends a byte
        _sweep_server(self)
        if self._handed:
            handed, self._handed = self._handed, b""
            self.data_received(handed)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._phase is None:  # the first byte of a request on a kept-alive connection
            self._start("headers")

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._start("body")  # until on_message_complete: at once if no body

    def on_message_complete(self) -> None:
        self._phase = None
        super().on_message_complete()

    def _start(self, phase: str) -> None:
        self._phase = phase
        self._since = self.loop.time()

    def overran(self, now: float) -> bool:
        """Close the connection if its current phase is past its deadline."""
        phase = self._phase
        if phase is None:
            return False
        limit = self.header_timeout if phase == "headers" else self.body_timeout
        if now - self._since < limit:
            return False
        self._phase = None
        self._too_slow(phase)
        return True

    def _too_slow(self, phase: str) -> None:
        if self.transport.is_closing():
            return
        # Answer 408 unless a response is under way on this connection (an earlier
        # pipelined request's, or this one's, sent before its body was read).
        cycle = self.cycle
        if phase == "headers":
            idle = cycle is None or cycle.response_complete
        else:
            idle = not self.pipeline and not cycle.response_started
        if idle:
            self.transport.write(_TOO_SLOW)
        # An application waiting for the body hears a disconnect; its answer goes nowhere.
        self.transport.close()


_swept: weakref.WeakSet[Any] = weakref.WeakSet()  # uvicorn ServerStates with a sweep running


def _sweep_server(protocol: GuardedProtocol) -> None:
    """Start the deadline sweep of ``protocol``'s server, once per server."""
    state = protocol.server_state
    if state in _swept:
        return
    _swept.add(state)
    loop, connections = protocol.loop, protocol.connections
    # Deadlines are kept to within a quarter of the shorter one (at most a second late).
    interval = min(max(min(protocol.header_timeout, protocol.body_timeout) / 4, 0.05), 1.0)

    def sweep() -> None:
        now = loop.time()
        for connection in list(connections):
            if isinstance(connection, GuardedProtocol):
                connection.overran(now)
        loop.call_later(interval, sweep)

    loop.call_later(interval, sweep)


def guarded_protocol(
    *, header_timeout: float, body_timeout: float, max_connections: int
) -> type[GuardedProtocol]:
    """A protocol class for ``uvicorn.run(http=…)`` with these limits."""
    return type(
        "GuardedProtocol",
        (GuardedProtocol,),
        {
            "header_timeout": header_timeout,
            "body_timeout": body_timeout,
            "max_connections": max_connections,
        },
    )
