"""Connections passed from an ingest process to the api process, which serves every request
that is not a hot route.

An ingest process's event loop answers the Tracking API's hot routes; running FastAPI on the
same loop and threads costs them latency (the paced p99 in ``bench/ingest.py``). So when a
connection's first request is not a hot route, the ingest process passes the connection itself
(its socket file descriptor, over a Unix socket with ``SCM_RIGHTS``) with the bytes it already
read, and the api process serves it from then on with the full ASGI app. The client keeps its
one connection to the one port; the api process never listens on that port.

The exchange on a Unix connection of its own, per connection handed over:

1. ingest → api: the descriptor, with ``MAGIC``, the pending bytes' length and the bytes;
2. api → ingest: ``TAKEN`` once it has them all;
3. ingest → api: ``TAKEN``; the api process serves the connection from here, and the ingest
   process closes its own descriptor (a ``close`` of one of two descriptors of a socket sends
   neither FIN nor RST).

Nothing is written to the client before step 3, so until then either side can walk away: an
ingest process that hears no ``TAKEN`` in time (the api process is starting, restarting, dead
or stuck) serves the connection itself, as a single process does; an api process that hears no
``TAKEN`` back closes its copy of the descriptor, which leaves the connection to the ingest
process.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvicorn

logger = logging.getLogger(__name__)

SOCKET_NAME = "api.sock"  # in <data dir>/run
# The api process's nice value: where the cores are busy, the kernel gives the hot routes'
# processes the CPU first, and the REST API what is left (a tenth of a core at least, per core
# it competes for); on idle cores it changes nothing.
NICENESS = 10
TIMEOUT = 2.0  # seconds for one exchange, each side
MAGIC = b"HWC1"
TAKEN = b"+"
_HEADER = struct.Struct("!4sI")  # MAGIC, length of the pending bytes
_MAX_PATH = 107  # sun_path holds 108 bytes with the trailing NUL


def unix_address(path: Path) -> str:
    """``path`` as a Unix socket address. A path too long for ``sun_path`` is reached through
    a descriptor of its directory (``/proc/self/fd/N/name``), kept open for the process."""
    if len(os.fsencode(path)) <= _MAX_PATH:
        return str(path)
    directory = os.open(path.parent, os.O_PATH | os.O_CLOEXEC)
    return f"/proc/self/fd/{directory}/{path.name}"


# --- the ingest process's side -----------------------------------------------------------------


class Sender:
    """Passes a connection to the api process listening on ``path``: a ``relay`` for
    :func:`headwater.hot_routes.hot_protocol`."""

    def __init__(self, path: Path, timeout: float = TIMEOUT) -> None:
        self.address = unix_address(path)
        self.timeout = timeout

    async def __call__(self, transport: asyncio.Transport, pending: bytes) -> bool:
        """True once the api process holds the connection (close this process's descriptor
        then); False if it does not (serve the connection here)."""
        sock = transport.get_extra_info("socket")
        if sock is None or transport.is_closing():
            return False
        channel = socket.socket(
            socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        )
        try:
            try:
                channel.connect(self.address)
            except OSError:  # no api process now, or its backlog is full
                return False
            message = _HEADER.pack(MAGIC, len(pending)) + pending
            rights = array.array("i", [sock.fileno()])
            sent = channel.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)])
            loop = asyncio.get_running_loop()
            async with asyncio.timeout(self.timeout):
                if sent < len(message):
                    await loop.sock_sendall(channel, memoryview(message)[sent:])
                if await loop.sock_recv(channel, 1) != TAKEN:
                    return False
            channel.send(TAKEN)
            return True
        except (OSError, TimeoutError):
            return False
        finally:
            channel.close()


# --- the api process's side --------------------------------------------------------------------

Adopt = Callable[[socket.socket, bytes], Awaitable[None]]


class Receiver:
    """Listens on ``path`` for connections handed over and gives each, with its pending bytes,
    to ``adopt``."""

    def __init__(self, path: Path, adopt: Adopt, timeout: float = TIMEOUT) -> None:
        self.path = path
        self.adopt = adopt
        self.timeout = timeout
        self._listener: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # left by an api process that was killed
        listener = socket.socket(
            socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
        )
        try:
            listener.bind(unix_address(self.path))
            os.chmod(self.path, 0o600)
            listener.listen(512)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._loop.add_reader(listener.fileno(), self._accept)

    def _resume(self) -> None:
        if self._listener is not None:
            assert self._loop is not None
            self._loop.add_reader(self._listener.fileno(), self._accept)

    def close(self) -> None:
        """Take no more connections: the ingest processes serve new ones themselves."""
        listener, self._listener = self._listener, None
        if listener is None:
            return
        assert self._loop is not None
        self._loop.remove_reader(listener.fileno())
        listener.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def wait_closed(self) -> None:
        """Until the exchanges under way have ended (each within ``timeout``)."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    def _accept(self) -> None:
        assert self._loop is not None
        while self._listener is not None:
            try:
                channel, _ = self._listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                # Out of descriptors: pause a second, as asyncio's servers do; meanwhile the
                # ingest processes serve their connections themselves.
                logger.warning("api: cannot take a handed-over connection: %s", exc)
                self._loop.remove_reader(self._listener.fileno())
                self._loop.call_later(1.0, self._resume)
                return
            channel.setblocking(False)
            task = self._loop.create_task(self._receive(channel))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _receive(self, channel: socket.socket) -> None:
        fds: list[int] = []
        try:
            async with asyncio.timeout(self.timeout):
                pending = await self._read(channel, fds)
                if len(fds) != 1 or self._listener is None:  # closing: leave it to the sender
                    return
                channel.send(TAKEN)
                if await asyncio.get_running_loop().sock_recv(channel, 1) != TAKEN:
                    return
            sock = socket.socket(fileno=fds[0])
            fds.clear()
        except (OSError, TimeoutError, ValueError) as exc:
            logger.debug("api: a hand-over failed: %s", exc)
            return
        finally:
            channel.close()
            for fd in fds:  # what is not ours; closing our copy leaves the sender's
                os.close(fd)
        sock.setblocking(False)
        try:
            await self.adopt(sock, pending)
        except OSError as exc:  # the client left meanwhile
            logger.debug("api: a handed-over connection is gone: %s", exc)
            sock.close()

    async def _read(self, channel: socket.socket, fds: list[int]) -> bytes:
        """The descriptor (into ``fds``) and the pending bytes of one hand-over."""
        received = bytearray()
        while True:
            await _readable(channel)
            try:
                chunk, descriptors, flags, _ = socket.recv_fds(
                    channel, 1 << 16, 1, socket.MSG_CMSG_CLOEXEC
                )
            except BlockingIOError:
                continue
            fds.extend(descriptors)
            if flags & socket.MSG_CTRUNC:
                raise ValueError("more descriptors than one were sent")
            if not chunk:
                raise ValueError("the sender closed before the hand-over was complete")
            received += chunk
            if len(received) < _HEADER.size:
                continue
            magic, length = _HEADER.unpack_from(received)
            if magic != MAGIC or len(received) > _HEADER.size + length:
                raise ValueError("not a Headwater hand-over")
            if len(received) == _HEADER.size + length:
                return bytes(received[_HEADER.size :])


async def _readable(sock: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(sock.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(sock.fileno())


class ApiServer(uvicorn.Server):
    """uvicorn without a listening socket of its own: its connections are handed over by the
    ingest processes, and joined to uvicorn's connection set, connection cap and graceful
    shutdown as its own would be."""

    def __init__(self, config: uvicorn.Config, path: Path) -> None:
        super().__init__(config)
        self.receiver = Receiver(path, self._adopt)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the lifespan only: no port
        self.receiver.start()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.receiver.close()
        await self.receiver.wait_closed()
        await super().shutdown(sockets=sockets)

    async def _adopt(self, sock: socket.socket, pending: bytes) -> None:
        config = self.config

        def protocol() -> asyncio.Protocol:
            made: Any = config.http_protocol_class
            return made(  # type: ignore[no-any-return]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                pending=pending,
            )

        await asyncio.get_running_loop().connect_accepted_socket(protocol, sock)
