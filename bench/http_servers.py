"""The servers ``http_layers.py`` compares: the same Tracking API work behind each HTTP layer.

Every real candidate runs the Tracking API's own code on POST /v1/track and /v1/batch: the
write key from HTTP Basic (looked up in a ``SourceCache`` over a real SQLite state database),
``decode_json``, ``normalize`` per message, and the request's record msgspec-encoded as the
group committer encodes it. Only the event log is left out: records go to a list cleared every
10,000 entries. So the candidates differ in the HTTP layer alone.

    python bench/http_servers.py CANDIDATE PORT DATA_DIR [--header-timeout S] …

granian imports ``rsgi_noop`` and ``rsgi_ingest`` from here (``HW_BENCH_DIR`` names DATA_DIR).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any, Protocol, cast

import msgspec
import uvicorn

from headwater.config.settings import ServerSettings
from headwater.connections import guarded_protocol
from headwater.ingest.app import TrackingAPI
from headwater.ingest.body import BATCH_LIMIT, SINGLE_LIMIT
from headwater.ingest.committer import GroupCommitter, Submission
from headwater.ingest.sources import SourceCache
from headwater.observe.metrics import Metrics
from headwater.store.database import database_url, open_engine
from headwater.store.migrations import migrate
from headwater.store.record import encode_record
from headwater.store.workspace import WorkspaceStore

sys.path.insert(0, str(Path(__file__).resolve().parent))
import noop_app

from headwater.hot_routes import hot_protocol

WRITE_KEY = "BENCH_WRITE_KEY"  # what track.lua and batch.lua send
KEEP = 10_000  # records kept before the list is cleared
ROUTES = {b"/v1/track": SINGLE_LIMIT, b"/v1/batch": BATCH_LIMIT}
TRUSTED_PROXIES = {"127.0.0.1"}  # uvicorn's default for proxy_headers, as `serve` runs it
SUCCESS = b'{"success":true}'

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Answer = tuple[int, bytes, list[tuple[bytes, bytes]]]

_encode = msgspec.json.Encoder().encode


class ListCommitter:
    """Stands in for the group committer: encodes the record it would append, keeps it in a
    list. The append itself is out of this benchmark's scope."""

    def __init__(self) -> None:
        self.records: list[bytes] = []

    async def submit(self, sub: Submission) -> None:
        records = self.records
        records.append(
            encode_record(
                sub.workspace_id, sub.source_id, sub.received_at, sub.events, sub.dropped, sub.flags
            )
        )
        if len(records) >= KEEP:
            records.clear()


def tracking_api(data_dir: Path) -> TrackingAPI:
    """The real Tracking API over a state database with one source, keyed ``WRITE_KEY``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_engine(database_url(data_dir, None))
    migrate(engine)
    store = WorkspaceStore(engine)
    if store.workspace() is None:
        store.ensure_workspace("bench")
    if WRITE_KEY not in store.write_key_index():
        store.create_source(f"bench-{os.getpid()}", write_key=WRITE_KEY)
    return TrackingAPI(
        sources=SourceCache(store),
        committer=cast(GroupCommitter, ListCommitter()),  # TrackingAPI only calls submit()
        settings=ServerSettings(data_dir=data_dir),
        metrics=Metrics(),
    )


def client_ip(headers: dict[bytes, bytes], peer: str | None) -> str | None:
    """The client's address, from X-Forwarded-For when a trusted proxy sent the request (what
    uvicorn's proxy_headers does for the ASGI candidate)."""
    if peer in TRUSTED_PROXIES:
        forwarded = headers.get(b"x-forwarded-for")
        if forwarded:
            for host in reversed(forwarded.decode("latin-1").split(",")):
                host = host.strip()
                if host and host not in TRUSTED_PROXIES:
                    return host
    return peer


class HotRoutes:
    """The Tracking API's entry for a request whose body has been read (``TrackingAPI.post``),
    with the bench's trusted proxy for granian, which has no proxy headers of its own."""

    def __init__(self, api: TrackingAPI) -> None:
        self._api = api

    async def __call__(
        self, path: str, headers: dict[bytes, bytes], body: bytes, peer: str | None
    ) -> Answer:
        return await self._api.post(path, headers, body, client_ip(headers, peer))


async def hot_noop(path: str, headers: dict[bytes, bytes], body: bytes, peer: str | None) -> Answer:
    return 200, SUCCESS, []


# --- ASGI (uvicorn) -----------------------------------------------------------------------------


def asgi_app(tracking: TrackingAPI) -> Callable[[Message, Receive, Send], Awaitable[None]]:
    """``/v1/*`` to the Tracking API and a 404 for the rest, as ``Server.__call__`` routes."""

    async def app(scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"].startswith("/v1/"):
            await tracking(scope, receive, send)
            return
        await send(
            {"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]}
        )
        await send({"type": "http.response.body", "body": b""})

    return app


def run_uvicorn(candidate: str, port: int, data_dir: Path, limits: argparse.Namespace) -> None:
    """The uvicorn-run candidates, configured as ``headwater serve`` runs uvicorn. The
    hand-rolled ones hand every request that is not a hot route to uvicorn's protocol."""
    guarded = guarded_protocol(
        header_timeout=limits.header_timeout,
        body_timeout=limits.body_timeout,
        max_connections=limits.max_connections,
    )
    guards = {
        "header_timeout": limits.header_timeout,
        "body_timeout": limits.body_timeout,
        "keep_alive_timeout": limits.keep_alive_timeout,
        "max_connections": limits.max_connections,
    }
    app: Any
    http: Any
    if candidate == "uvicorn-guarded-noop":
        app, http = noop_app.app, guarded
    elif candidate == "uvicorn":
        app, http = asgi_app(tracking_api(data_dir)), guarded
    elif candidate == "hand-noop":
        app, http = noop_app.app, hot_protocol(hot_noop, ROUTES, fallback=guarded, **guards)
    elif candidate == "hand":
        tracking = tracking_api(data_dir)
        http = hot_protocol(HotRoutes(tracking), ROUTES, fallback=guarded, **guards)
        app = asgi_app(tracking)
    else:
        raise SystemExit(f"unknown candidate {candidate!r}")
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http=http,
        lifespan="off",
        access_log=False,
        log_level="warning",
        proxy_headers=True,
    )


# --- RSGI (granian) -----------------------------------------------------------------------------


class Headers(Protocol):  # the part of granian's RSGI interface used here (no import needed)
    def get(self, key: str, default: Any = None) -> Any: ...


class Scope(Protocol):
    proto: str
    method: str
    path: str
    client: str

    @property
    def headers(self) -> Headers: ...


class HTTPProtocol(Protocol):
    async def __call__(self) -> bytes: ...
    def __aiter__(self) -> AsyncIterator[bytes]: ...
    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None: ...


# The request headers the Tracking API reads, as granian names them and as our code does.
_TRACKING_HEADERS = [
    (name, name.encode())
    for name in (
        "authorization",
        "content-encoding",
        "content-length",
        "origin",
        "x-forwarded-for",
    )
]


class RSGIIngest:
    """The same work as an RSGI application: granian reads and writes, our code in between."""

    def __init__(self, noop: bool) -> None:
        self._noop = noop
        self._hot: HotRoutes | None = None

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._noop:
            self._hot = HotRoutes(tracking_api(Path(os.environ["HW_BENCH_DIR"])))

    async def __rsgi__(self, scope: Scope, protocol: HTTPProtocol) -> None:
        if scope.proto != "http":
            return
        if self._noop:
            await protocol()
            protocol.response_bytes(200, [("content-type", "application/json")], SUCCESS)
            return
        limit = ROUTES.get(scope.path.encode(), 0) if scope.method == "POST" else 0
        if not limit or self._hot is None:
            protocol.response_bytes(404, [("content-type", "application/json")], b"{}")
            return
        found = scope.headers
        headers = {
            key: value.encode("latin-1")
            for name, key in _TRACKING_HEADERS
            if (value := found.get(name)) is not None
        }
        body = await _read(protocol, headers.get(b"content-length"), limit)
        peer = scope.client.rpartition(":")[0] or None
        status, content, extra = await self._hot(scope.path, headers, body, peer)
        out = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in extra]
        if not any(name == "content-type" for name, _ in out):
            out.append(("content-type", "application/json"))
        protocol.response_bytes(status, out, content)


async def _read(protocol: HTTPProtocol, declared: bytes | None, limit: int) -> bytes:
    """The body, no more than ``limit`` and a chunk of it (the handler answers 400 beyond)."""
    if declared is not None and declared.isdigit():
        return b"" if int(declared) > limit else await protocol()
    chunks: list[bytes] = []
    size = 0
    async for chunk in protocol:
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            break
    return b"".join(chunks)


rsgi_noop = RSGIIngest(noop=True)
rsgi_ingest = RSGIIngest(noop=False)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("candidate")
    parser.add_argument("port", type=int)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--header-timeout", type=float, default=10.0)
    parser.add_argument("--body-timeout", type=float, default=60.0)
    parser.add_argument("--keep-alive-timeout", type=float, default=5.0)
    parser.add_argument("--max-connections", type=int, default=1 << 20)
    args = parser.parse_args()
    run_uvicorn(args.candidate, args.port, args.data_dir, args)


if __name__ == "__main__":
    main()
