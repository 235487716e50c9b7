"""Server time of the web app's pages on a large workspace (SQLite state).

    python bench/web.py [--sources 100] [--destinations 200] [--hours 24] [--repeat 20]

The workspace has ``--sources`` sources and ``--destinations`` webhook destinations spread
over them, and per-minute counters for every source and destination over the last ``--hours``
(each minute: events received on each source, delivered and a few failed on each destination),
as a busy day leaves them, rolled up into hourly totals as the worker's maintenance does. Each
page is requested through the web app's ASGI application as a signed-in browser would (the
pages call the REST API in process); the median and the slowest time from request to the last
byte are reported. The issue's target: ≤ 200 ms a page.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from headwater.api.app import create_api
from headwater.api.debugger import router as debugger_router
from headwater.api.source_schema import router as source_schema_router
from headwater.api.tester import router as tester_router
from headwater.api.violations import router as violations_router
from headwater.destinations.store import DestinationStore
from headwater.store.admin_token import hash_token
from headwater.store.counters import RECEIVED, CounterKey, CounterStore, minute_of
from headwater.store.database import database_url, open_engine
from headwater.store.migrations import migrate
from headwater.store.workspace import WorkspaceStore
from headwater.web.app import COOKIE, WebApp
from headwater.web.sessions import Sessions

TOKEN = "bench-admin-token"
# Every section's main pages; {source} and {destination} are the first of each.
PAGES = [
    "/",
    "/sources",
    "/sources/{source}",
    "/sources/{source}/debugger",
    "/destinations",
    "/destinations/catalog",
    "/destinations/catalog/webhook",
    "/destinations/{destination}",
    "/destinations/{destination}/delivery",
    "/destinations/{destination}/filters",
    "/warehouses",
    "/protocols",
    "/protocols/violations",
    "/protocols/transformations",
    "/functions",
    "/settings/users",
    "/settings/tokens",
    "/settings/audit",
]


def build(
    data: Path, sources: int, destinations: int, hours: int
) -> tuple[WebApp, str, dict[str, str]]:
    engine = open_engine(database_url(data, None))
    migrate(engine)
    store = WorkspaceStore(engine)
    store.ensure_workspace("bench")
    created = [store.create_source(f"source-{i:03d}") for i in range(sources)]
    hooks = DestinationStore(store)
    made = []
    for i in range(destinations):
        source = created[i % sources]
        made.append(
            hooks.create(
                f"hook-{i:03d}",
                "webhook",
                source.id,
                settings={"url": f"http://127.0.0.1:9/{i}"},
            )
        )
    counters = CounterStore(engine)
    now = minute_of(time.time())
    started = time.perf_counter()
    for minute in range(now - hours * 60, now + 1):
        increments = {CounterKey(s.id, "", RECEIVED, ""): 40 for s in created}
        for d in made:
            increments[CounterKey(d.source_id, d.id, "delivered", "")] = 20
            if minute % 30 == 0:
                increments[CounterKey(d.source_id, d.id, "failed_delivery", "errors.x")] = 1
        counters.add(increments, minute=minute)
    print(
        f"counters: {hours * 60 + 1} minutes × {sources + destinations} keys "
        f"in {time.perf_counter() - started:.1f} s"
    )
    started = time.perf_counter()
    counters.roll_up(time.time())  # what the worker's maintenance does every minute
    print(f"hourly roll-up of all of it: {time.perf_counter() - started:.1f} s")
    api = create_api(  # with the routers the server adds, as server.py does
        engine,
        admin_token_hash=hash_token(TOKEN),
        extra_routers=[debugger_router, violations_router, source_schema_router, tester_router],
    )
    web = WebApp(api, store, admin_token_hash=hash_token(TOKEN), clock=time.time)
    cookie, _session = Sessions(engine).start("admin", "admin")
    return web, cookie, {"source": created[0].id, "destination": made[0].id}


async def measure(web: WebApp, cookie: str, ids: dict[str, str], repeat: int) -> None:
    transport = httpx.ASGITransport(app=web)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://bench", cookies={COOKIE: cookie}
    ) as client:
        for page in PAGES:
            path = page.format(**ids)
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                answer = await client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                assert answer.status_code == 200, answer.text[:300]
            print(
                f"{page:<38} median {statistics.median(times):7.1f} ms   "
                f"slowest {max(times):7.1f} ms   ({len(answer.content):,} bytes)"
            )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", type=int, default=100)
    parser.add_argument("--destinations", type=int, default=200)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        web, cookie, ids = build(Path(tmp), args.sources, args.destinations, args.hours)
        asyncio.run(measure(web, cookie, ids, args.repeat))


if __name__ == "__main__":
    main()
