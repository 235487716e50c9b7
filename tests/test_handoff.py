"""``headwater.handoff``: a TCP connection passed over a Unix socket, on real sockets and
uvloop, as the ingest and api processes pass them (in one process here, to see both ends).

The live counterpart, with serve's processes, is tests/test_api_process.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
import uvloop

from headwater.handoff import Receiver, Sender

Passed = tuple[socket.socket, bytes]


class Front(asyncio.Protocol):
    """The ingest side: echoes with ``here:`` until it reads ``pass N\n`` and N bytes, then
    passes the connection with those bytes to ``relay``; if the relay fails, echoes them."""

    def __init__(self, relay: Callable[[asyncio.Transport, bytes], Awaitable[bool]]) -> None:
        self.relay = relay
        self.passed: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.buffer: bytes | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.buffer is None and not data.startswith(b"pass "):
            self.transport.write(b"here:" + data)
            return
        self.buffer = (self.buffer or b"") + data
        head, _, rest = self.buffer.partition(b"\n")
        if len(rest) >= int(head[5:]):
            self.buffer = None
            self.transport.pause_reading()
            asyncio.get_running_loop().create_task(self._pass(rest))

    async def _pass(self, rest: bytes) -> None:
        assert self.transport is not None
        taken = await self.relay(self.transport, rest)
        if taken:
            self.transport.close()  # our descriptor only
        else:
            self.transport.resume_reading()
            if rest:
                self.transport.write(b"here:" + rest)
        self.passed.set_result(taken)


class Back(asyncio.Protocol):
    """The api side: says ``api:``, then echoes the pending bytes and what follows them;
    ``quit`` closes the connection."""

    def __init__(self, pending: bytes) -> None:
        self.pending = pending
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.transport = transport
        transport.write(b"api:")
        self.data_received(self.pending)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if data == b"quit":
            self.transport.close()
        else:
            self.transport.write(data)


class Setup:
    def __init__(self, path: Path, timeout: float = 2.0) -> None:
        self.path = path
        self.sender = Sender(path, timeout=timeout)
        self.fronts: list[Front] = []
        self.adopted: list[bytes] = []

    async def adopt(self, sock: socket.socket, pending: bytes) -> None:
        self.adopted.append(pending)
        await asyncio.get_running_loop().connect_accepted_socket(lambda: Back(pending), sock)

    def front(self) -> Front:
        front = Front(self.sender)
        self.fronts.append(front)
        return front


@contextlib.asynccontextmanager
async def front_server(setup: Setup) -> AsyncIterator[int]:
    server = await asyncio.get_running_loop().create_server(setup.front, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def read(reader: asyncio.StreamReader, size: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(size), 10)


def run(test: Callable[[], Coroutine[Any, Any, None]]) -> None:
    uvloop.run(test())


def test_a_passed_connection_carries_its_pending_bytes_and_stays_open(tmp_path: Path) -> None:
    # A directory too deep for a Unix socket's 108-byte address, and more pending bytes than
    # a Unix socket's buffer: both have to work.
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    setup = Setup(deep / "api.sock")
    pending = bytes(range(256)) * 4096  # 1 MiB

    async def test() -> None:
        receiver = Receiver(setup.path, setup.adopt)
        receiver.start()
        async with front_server(setup) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"one")
            assert await read(reader, 8) == b"here:one"
            writer.write(b"pass %d\n" % len(pending) + pending)
            assert await read(reader, 4 + len(pending)) == b"api:" + pending
            assert await setup.fronts[0].passed
            # The front closed its descriptor: no FIN reached the client, and the api side
            # answers on the same connection.
            writer.write(b"two")
            assert await read(reader, 3) == b"two"
            writer.write(b"quit")
            assert await asyncio.wait_for(reader.read(), 10) == b""  # the api side's close
            writer.close()
        receiver.close()
        assert setup.adopted == [pending]
        assert not setup.path.exists()

    run(test)


@pytest.mark.parametrize("api", ["absent", "gone", "silent"])
def test_without_an_api_process_the_connection_stays_where_it_was(tmp_path: Path, api: str) -> None:
    """Nobody ever listening, a receiver closed (as at shutdown), or a listener that never
    answers (a stuck process): the sender keeps the connection, untouched."""
    setup = Setup(tmp_path / "api.sock", timeout=0.3)

    async def test() -> None:
        silent = None
        if api == "gone":
            receiver = Receiver(setup.path, setup.adopt)
            receiver.start()
            receiver.close()
        elif api == "silent":
            silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            silent.bind(str(setup.path))
            silent.listen()
        async with front_server(setup) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"pass 5\nafter")
            assert await read(reader, 10) == b"here:after"
            assert not await setup.fronts[0].passed
            writer.write(b"more")
            assert await read(reader, 9) == b"here:more"
            writer.close()
        if silent is not None:
            silent.close()
        assert setup.adopted == []

    run(test)
