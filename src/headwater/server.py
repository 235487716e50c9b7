"""One Headwater process: the roles it runs, wired together, as one ASGI application.

``headwater serve`` runs every role here (Tracking API, REST API, log consumers) on one state
database. Each role is a separate object; this module only builds them and routes requests:
``/v1/*`` to the Tracking API, ``/health``, ``/ready`` and ``/metrics`` here, the rest to the
REST API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from headwater.api.app import create_api
from headwater.api.debugger import router as debugger_router
from headwater.config.settings import ServerSettings
from headwater.delivery.engine import DeliveryEngine
from headwater.destinations.store import DestinationCache, DestinationStore
from headwater.ingest.app import TrackingAPI
from headwater.ingest.committer import GroupCommitter
from headwater.ingest.ratelimit import RateLimiter
from headwater.ingest.sources import SourceCache
from headwater.observe.metrics import Metrics
from headwater.pipeline.consumer import Consumer
from headwater.pipeline.observer import Observer
from headwater.pipeline.router import GROUP as ROUTER_GROUP
from headwater.pipeline.router import Router
from headwater.store import schema
from headwater.store.archive import Archive, ArchiveWriter
from headwater.store.counters import CounterStore, minute_of
from headwater.store.database import (
    WalCheckpointer,
    database_url,
    is_sqlite,
    open_engine,
    write_transaction,
)
from headwater.store.dedup import Deduplicator
from headwater.store.log import EventLog
from headwater.store.migrations import migrate
from headwater.store.workspace import WorkspaceStore
from headwater.warehouse.scheduler import WarehouseScheduler
from headwater.warehouse.store import WarehouseStore

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

MAINTENANCE_INTERVAL = 60.0
WAREHOUSE_TICK = 5.0  # how soon a "sync now" or a due schedule starts
READY_PROBE_INTERVAL = 1.0
COUNTER_RETENTION_DAYS = 14


@dataclass
class Server:
    settings: ServerSettings
    admin_token_hash: str
    metrics: Metrics = field(default_factory=Metrics)

    def __post_init__(self) -> None:
        self.engine = open_engine(
            database_url(self.settings.data_dir, self.settings.database),
            durability=self.settings.durability,
            background_checkpoint=True,
        )
        self.checkpointer = WalCheckpointer(self.engine) if is_sqlite(self.engine) else None
        migrate(self.engine)
        self.store = WorkspaceStore(self.engine)
        self.log = EventLog(self.engine)
        self.committer = GroupCommitter(self.engine, self.log, on_commit=self._observe_commit)
        limit = self.settings.rate_limit_events_per_second
        self.tracking = TrackingAPI(
            sources=SourceCache(self.store),
            committer=self.committer,
            settings=self.settings,
            metrics=self.metrics,
            rate_limiter=RateLimiter(limit) if limit else None,
        )
        self.api = create_api(
            self.engine,
            admin_token_hash=self.admin_token_hash,
            extra_routers=[debugger_router],
            archive_dir=self.settings.archive_dir,
        )
        self.archive = Archive(self.settings.archive_dir)
        owner = f"{os.uname().nodename}:{os.getpid()}"
        self.destinations = DestinationStore(self.store)
        destination_cache = DestinationCache(self.destinations, self.store)
        self.delivery = DeliveryEngine(self.engine, destination_cache, owner=f"{owner}:delivery")
        router_owner = f"{owner}:router"
        self.archive_consumer = Consumer(
            self.log, "archive", ArchiveWriter(self.settings.archive_dir), owner=owner
        )
        self.consumers = [
            self.archive_consumer,
            Consumer(self.log, "observer", Observer(self.engine), owner=owner),
            Consumer(
                self.log,
                ROUTER_GROUP,
                Router(self.log, destination_cache, self.delivery.queue, owner=router_owner),
                owner=router_owner,
            ),
        ]
        for consumer in self.consumers:
            self.log.register(consumer.group)
        self._ready_checked = 0.0
        self._maintenance: asyncio.Task[None] | None = None
        self._warehouse_task: asyncio.Task[None] | None = None
        self.warehouse_scheduler = WarehouseScheduler(
            WarehouseStore(self.store), self.archive, self.settings.data_dir
        )

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.start()
        if self.settings.run_ingest:
            self.committer.start()
        if self.settings.run_consumers:
            for consumer in self.consumers:
                consumer.start()
            self.delivery.start()

    def stop(self) -> None:
        for consumer in self.consumers:
            consumer.stop()
        self.delivery.stop()
        self.committer.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        self.engine.dispose()

    def maintain(self) -> None:
        """Forget old dedup keys, counters and latencies; purge the archive past retention."""
        now = time.time()
        window = self.settings.dedup_window_hours * 3600
        Deduplicator(self.engine).expire(int(now) - window)
        self.archive.purge(self.settings.archive_retention_days)
        # Delivery Overview and Event Delivery look back two weeks at most, as in Segment.
        oldest_minute = minute_of(now) - COUNTER_RETENTION_DAYS * 24 * 60
        CounterStore(self.engine).expire(oldest_minute)
        self.delivery.queue.expire_latencies(oldest_minute)

    async def _maintenance_loop(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.maintain)
            except Exception:
                logger.exception("maintenance failed; will try again")
            await asyncio.sleep(MAINTENANCE_INTERVAL)

    async def _warehouse_loop(self) -> None:
        """Warehouse syncs, in a thread of their own: they are long blocking batch jobs."""
        while True:
            try:
                await asyncio.to_thread(self.warehouse_scheduler.tick)
            except Exception:
                logger.exception("warehouse syncs failed; will try again")
            await asyncio.sleep(WAREHOUSE_TICK)

    # --- ASGI ---------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if path.startswith("/v1/"):
                if self.settings.run_ingest:
                    await self.tracking(scope, receive, send)
                else:
                    await _plain(
                        send,
                        503,
                        b'{"code":"unavailable","message":'
                        b'"This process runs the worker role only; send events to an '
                        b'ingest process."}',
                        [(b"retry-after", b"5")],
                    )
            elif path == "/health":
                await _plain(send, 200, b'{"status":"ok"}')
            elif path == "/ready":
                ready, reason = await asyncio.to_thread(self.ready)
                body = (
                    b'{"status":"ready"}'
                    if ready
                    else (b'{"status":"unavailable","reason":' + _json_str(reason) + b"}")
                )
                await _plain(
                    send, 200 if ready else 503, body, [] if ready else [(b"retry-after", b"5")]
                )
            elif path == "/metrics":
                await asyncio.to_thread(self._update_gauges)
                await _plain(
                    send,
                    200,
                    self.metrics.render(),
                    [(b"content-type", self.metrics.content_type.encode())],
                )
            else:
                await self.api(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        else:  # websockets are not served
            await self.api(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    self.start()
                    self._maintenance = asyncio.create_task(self._maintenance_loop())
                    if self.settings.run_consumers:
                        self._warehouse_task = asyncio.create_task(self._warehouse_loop())
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.warehouse_scheduler.stop()  # a running sync stops after its chunk
                for task in (self._maintenance, self._warehouse_task):
                    if task is not None:
                        task.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await task
                await asyncio.to_thread(self.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- health -------------------------------------------------------------------------------

    def ready(self) -> tuple[bool, str]:
        """Whether the event log takes writes (the last commit worked, or a probe write does)
        and, where this process archives, whether the archive can write its files.

        An archive that cannot write loses nothing (events wait in the log), but the disk
        behind it is full or gone and the log grows meanwhile: traffic belongs elsewhere.
        """
        failing = self.archive_consumer.failing if self.settings.run_consumers else None
        if failing is not None:
            return False, f"the archive cannot write its files: {failing}"
        if self.committer.healthy and time.monotonic() - self._ready_checked < READY_PROBE_INTERVAL:
            return True, ""
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(sa.delete(schema.meta).where(schema.meta.c.key == "ready_probe"))
                conn.execute(schema.meta.insert().values(key="ready_probe", value=str(time.time())))
        except Exception as exc:
            return False, f"the event log cannot take writes: {type(exc).__name__}: {exc}"
        self._ready_checked = time.monotonic()
        self.committer.healthy = True  # writes work again; the next commit will confirm
        return True, ""

    def _observe_commit(self, seconds: float, _records: int) -> None:
        self.metrics.commit_seconds.observe(seconds)

    def _update_gauges(self) -> None:
        """Read the consumer lag; with the database down the gauges keep their last values."""
        try:
            for consumer in self.consumers:
                self.metrics.consumer_lag.labels(consumer.group).set(self.log.lag(consumer.group))
        except OperationalError as exc:
            logger.warning("metrics: cannot read the consumer lag: %s", exc)


async def _plain(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = headers or []
    if not any(h[0] == b"content-type" for h in headers):
        headers = [*headers, (b"content-type", b"application/json")]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _json_str(text: str) -> bytes:
    return msgspec.json.encode(text)
