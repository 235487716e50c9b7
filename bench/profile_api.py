"""The Profile API's ``/traits`` latency at a steady request rate over a large space.

    python bench/profile_api.py [--profiles 1000000] [--traits 10] [--rate 500] [--seconds 30]
                                [--graph memory|sql] [--database postgresql://…/postgres]
                                [--client wrk|aiohttp]

Preloads ``--profiles`` user profiles (``user_id:user-<n>``) with ``--traits`` custom traits each
straight into the profile tables (bulk inserts) and into the identity graph, then serves the
Profile API with uvicorn in a forked process (its rate limit raised above ``--rate``) and sends
``GET …/profiles/user_id:user-<random>/traits`` at ``--rate`` requests/s, each at its slot of a
fixed schedule, over keep-alive connections. The first 2 s are warm-up and not counted.

``--database`` runs it on PostgreSQL, in a scratch database made on that server and dropped
at the end (default: SQLite in a temporary directory). ``--client wrk`` (the default when wrk is
installed) measures each request from its send; ``aiohttp`` from the moment it was due.

``--graph sql`` (the default) reads the identity graph as the server does: ``SqlGraph`` on the
same database, without a cache (the Profile API is not the graph's writer), its tables
bulk-loaded like the profile tables. ``--graph memory`` reads a ``MemoryGraph`` built in the
parent before the fork: the profile data's cost alone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import multiprocessing
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import aiohttp  # noqa: E402
import sqlalchemy as sa  # noqa: E402
import uvicorn  # noqa: E402

from headwater.store.database import database_url, open_engine, write_transaction  # noqa: E402
from headwater.store.migrations import migrate  # noqa: E402
from headwater.store.workspace import WorkspaceStore  # noqa: E402
from headwater.unify.graph import AddIdentifier, CreateProfile, GraphStore  # noqa: E402
from headwater.unify.memory import MemoryGraph  # noqa: E402
from headwater.unify.profile_api import ProfileAPI  # noqa: E402
from headwater.unify.profile_ids import base62  # noqa: E402
from headwater.unify.spaces import SpaceInfo, SpaceStore  # noqa: E402
from headwater.unify.sql_graph import SqlGraph  # noqa: E402

TOKEN = "bench-profile-token-0123456789"
WARMUP = 2.0
CHUNK = 50_000
AT = 1_760_000_000.0


def profile_id(n: int) -> str:
    return "use_" + base62(n + 1)


def preload(url: str, profiles: int, traits: int) -> str:
    """The space's id, once its profiles are in the profile tables."""
    engine = open_engine(url)
    migrate(engine)
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("bench")
    spaces = SpaceStore(workspace)
    space_id = spaces.create("bench").id
    spaces.create_access_token("bench", "bench", TOKEN)
    updated = int(AT * 1_000_000)
    # Straight to the driver's executemany: SQLAlchemy's per-row processing would take most
    # of the time.
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    traits_sql = (
        "INSERT INTO unify_profile_traits (space_id, profile_id, key, value, present, "
        f"trait_class, source_id, updated_at) VALUES ({', '.join([mark] * 8)})"
    )
    metadata_sql = (
        "INSERT INTO unify_profile_metadata (space_id, profile_id, collection, created_at, "
        "updated_at, first_message_id, first_source_id, last_message_id, last_source_id) "
        f"VALUES ({', '.join([mark] * 9)})"
    )
    for start in range(0, profiles, CHUNK):
        ids = [(n, profile_id(n)) for n in range(start, min(start + CHUNK, profiles))]
        with write_transaction(engine) as conn:
            conn.exec_driver_sql(
                traits_sql,
                [
                    (
                        space_id,
                        p,
                        f"trait_{k:02d}",
                        f'"value {n} {k}"',
                        True,
                        "custom",
                        "src",
                        updated,
                    )
                    for n, p in ids
                    for k in range(traits)
                ],
            )
            conn.exec_driver_sql(
                metadata_sql,
                [
                    (space_id, p, "users", updated, updated, f"m-{n}", "src", f"m-{n}", "src")
                    for n, p in ids
                ],
            )
    engine.dispose()
    return space_id


def sql_graph(url: str, space_id: str, profiles: int) -> None:
    """The identity graph's rows for the preloaded profiles, as the Resolver would leave them:
    one profile and its ``user_id`` each."""
    engine = open_engine(url)
    mark = "?" if engine.dialect.paramstyle == "qmark" else "%s"
    profile_sql = (
        "INSERT INTO unify_profiles (seq, space_id, segment_id, collection, created_at, merges, "
        f"mappings, source_id, message_id) VALUES ({', '.join([mark] * 9)})"
    )
    identity_sql = (
        "INSERT INTO unify_identities (seq, space_id, collection, type, value, profile, "
        f"first_seen, source_id, message_id) VALUES ({', '.join([mark] * 9)})"
    )
    for start in range(0, profiles, CHUNK):
        numbers = range(start, min(start + CHUNK, profiles))
        with write_transaction(engine) as conn:
            conn.exec_driver_sql(
                profile_sql,
                [
                    (n + 1, space_id, profile_id(n), "users", AT, 0, 1, "src", f"m-{n}")
                    for n in numbers
                ],
            )
            conn.exec_driver_sql(
                identity_sql,
                [
                    (n + 1, space_id, "users", "user_id", f"user-{n}", n + 1, AT, "src", f"m-{n}")
                    for n in numbers
                ],
            )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        if engine.dialect.name != "sqlite":
            for table in ("unify_profiles", "unify_identities"):
                conn.exec_driver_sql(
                    f"SELECT setval(pg_get_serial_sequence('{table}', 'seq'), {profiles + 1})"
                )
        conn.exec_driver_sql("ANALYZE")
    engine.dispose()


def memory_graph(profiles: int) -> MemoryGraph:
    graph = MemoryGraph()
    for n in range(profiles):
        p = profile_id(n)
        graph.apply(
            "",
            [
                CreateProfile(p, "users", AT, "src", f"m-{n}"),
                AddIdentifier(p, "users", "user_id", f"user-{n}", AT, "src", f"m-{n}"),
            ],
        )
    return graph


def serve(url: str, graph: GraphStore | None, port: int, rate: int) -> None:
    """The forked server: the Profile API alone on uvicorn (``graph`` None: ``SqlGraph``)."""
    engine = open_engine(url, pool_size=8)
    graphs: dict[str, GraphStore] = {}

    def graph_of(space: SpaceInfo) -> GraphStore:
        if graph is not None:
            return graph
        if space.id not in graphs:
            graphs[space.id] = SqlGraph(engine, space.id, cache_size=0)
        return graphs[space.id]

    app = ProfileAPI(SpaceStore(WorkspaceStore(engine)), engine, graph_of, requests_per_second=rate)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def load(
    port: int, space_id: str, profiles: int, rate: int, seconds: float
) -> tuple[list[float], int, int]:
    """(latencies counted in seconds, non-200 answers, requests sent)."""
    auth = "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode()
    base = f"http://127.0.0.1:{port}/v1/spaces/{space_id}/collections/users/profiles"
    rng = random.Random(7)
    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": auth}) as http:

        async def one(due: float, counted: bool) -> None:
            nonlocal failures
            user = rng.randrange(profiles)
            async with http.get(f"{base}/user_id:user-{user}/traits") as response:
                await response.read()
                if response.status != 200:
                    failures += 1
            if counted:
                latencies.append(time.perf_counter() - due)

        total = int((seconds + WARMUP) * rate)
        tasks = []
        start = time.perf_counter() + 0.1
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due, i >= WARMUP * rate)))
        await asyncio.gather(*tasks)
    return latencies, failures, total


WRK_SCRIPT = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } timespec_t;
int clock_gettime(int clock_id, timespec_t *tp);
]]
local ts = ffi.new("timespec_t")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end
local interval = 1000 / %(rate)d
local next_slot = nil
math.randomseed(7)
wrk.headers["Authorization"] = "%(auth)s"
function request()
  local path = "%(base)s/user_id:user-" .. math.random(0, %(last)d) .. "/traits"
  return wrk.format("GET", path)
end
function delay()
  local now = now_ms()
  if next_slot == nil or next_slot < now then next_slot = now end
  local wait = next_slot - now
  next_slot = next_slot + interval
  return wait
end
function done(summary, latency, requests)
  local bad = summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout
  io.write(string.format("RESULT %%d %%d %%.3f %%.3f %%.3f %%.3f\\n", summary.requests, bad,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def load_wrk(
    port: int, space_id: str, profiles: int, rate: int, seconds: float, directory: Path
) -> tuple[list[float], int, int]:
    """wrk (one thread, 16 connections) paced at ``rate``: p50, p95, p99 and max in seconds
    (latency from the request's send, as wrk measures), failures, requests."""
    script = directory / "traits.lua"
    script.write_text(
        WRK_SCRIPT
        % {
            "rate": rate,
            "auth": "Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode(),
            "base": f"/v1/spaces/{space_id}/collections/users/profiles",
            "last": profiles - 1,
        }
    )
    url = f"http://127.0.0.1:{port}"
    command = ["wrk", "-t1", "-c16", "--latency", "-s", str(script)]
    subprocess.run([*command, f"-d{WARMUP:.0f}s", url], check=True, capture_output=True)
    out = subprocess.run(
        [*command, f"-d{seconds:.0f}s", url], check=True, capture_output=True, text=True
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("RESULT "))
    sent, bad, *figures = line.split()[1:]
    return [float(f) / 1000 for f in figures], int(bad), int(sent)


def percentile(sorted_values: list[float], p: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1_000_000)
    parser.add_argument("--traits", type=int, default=10)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--graph", choices=("memory", "sql"), default="sql")
    parser.add_argument(
        "--database",
        help="a PostgreSQL server URL: the bench makes a scratch database there and drops it "
        "(default: SQLite in a temp dir)",
    )
    parser.add_argument("--port", type=int, default=18_431)
    parser.add_argument(
        "--client",
        choices=("wrk", "aiohttp"),
        default="wrk" if shutil.which("wrk") else "aiohttp",
        help="wrk (C, little CPU taken from the server) or an open-loop aiohttp sender",
    )
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="hw-profile-api-"))
    scratch = f"hw_bench_{uuid.uuid4().hex[:12]}"
    try:
        url = database_url(data_dir, args.database and _database(args.database, scratch, True))
        began = time.perf_counter()
        space_id = preload(url, args.profiles, args.traits)
        loaded = time.perf_counter()
        graph: MemoryGraph | None = None
        if args.graph == "memory":
            graph = memory_graph(args.profiles)
        else:
            sql_graph(url, space_id, args.profiles)
        built = time.perf_counter()
        print(
            f"preloaded {args.profiles:,} profiles x {args.traits} traits in "
            f"{loaded - began:.1f} s; graph built in {built - loaded:.1f} s"
        )
        server = multiprocessing.get_context("fork").Process(
            target=serve, args=(url, graph, args.port, args.rate * 4), daemon=True
        )
        server.start()
        del graph
        _wait_for_port(args.port)
        try:
            if args.client == "wrk":
                figures, failures, sent = load_wrk(
                    args.port, space_id, args.profiles, args.rate, args.seconds, data_dir
                )
            else:
                latencies, failures, sent = asyncio.run(
                    load(args.port, space_id, args.profiles, args.rate, args.seconds)
                )
                latencies.sort()
                figures = [percentile(latencies, p) for p in (50, 95, 99)] + [latencies[-1]]
        finally:
            server.terminate()
            server.join(10)
        ms = [1000 * f for f in figures]
        print(
            f"/traits at {args.rate} req/s for {args.seconds:.0f} s with {args.client} ({sent} "
            f"sent, {failures} failed): p50 {ms[0]:.2f} ms, p95 {ms[1]:.2f} ms, "
            f"p99 {ms[2]:.2f} ms, max {ms[3]:.2f} ms"
        )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
        if args.database:
            _database(args.database, scratch, False)


def _database(server: str, name: str, create: bool) -> str:
    """Create (or drop) a scratch database on the PostgreSQL server of ``server``."""
    admin = sa.create_engine(database_url(Path("."), server), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"' if create else f'DROP DATABASE "{name}"')
    admin.dispose()
    return server.rsplit("/", 1)[0] + f"/{name}"


def _wait_for_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("the server did not start")


if __name__ == "__main__":
    main()
