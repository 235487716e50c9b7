"""Events a second through ONE actions runtime process, and its RSS with every destination loaded.

    HEADWATER_ACTIONS_DIR=… python bench/actions_runtime.py [--events 20000] [--call-events 100]
        [--in-flight 2] [--batch-size 100] [--all-destinations] [--cpu-prof DIR]
        [--node-option=--max-semi-space-size=32 …]

Customer.io's trackEvent preset, redirected to a loopback receiver that runs in its own Node.js
process (so it does not share the runtime's CPU): unbatched (``executeAction`` per event, calls
of ``--call-events`` events, ``--in-flight`` calls at once) then batched (one ``executeBatch``
per ``--batch-size`` events). ``--all-destinations`` then loads every destination of the
manifest in the same process (``validateSettings`` on each) and reports its RSS.
``--cpu-prof DIR`` starts the runtime with ``node --cpu-prof`` writing there.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import resource
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from headwater.destinations.runtime import pool
from headwater.destinations.runtime.install import actions_dir
from headwater.destinations.runtime.node import find_node
from headwater.destinations.runtime.pool import ActionsRuntime, Call, HookError

RECEIVER_JS = """
const http = require('http')
const server = http.createServer((req, res) => {
  req.resume()
  req.on('end', () => { res.writeHead(200, {'content-type': 'application/json'}); res.end('{}') })
})
server.keepAliveTimeout = 60000
server.listen(0, '127.0.0.1', () => process.stdout.write(server.address().port + '\\n'))
"""

SETTINGS = {"siteId": "site-1", "apiKey": "key-1", "accountRegion": "US 🇺🇸"}
MAPPING = {
    "id": {"@path": "$.userId"},
    "anonymous_id": {"@path": "$.anonymousId"},
    "name": {"@path": "$.event"},
    "event_id": {"@path": "$.messageId"},
    "timestamp": {"@path": "$.timestamp"},
    "data": {"@path": "$.properties"},
    "convert_timestamp": True,
}


def event(n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"user-{n % 1000}",
        "anonymousId": f"anon-{n}",
        "messageId": f"bench-{n}",
        "timestamp": "2026-12-06T10:00:00.000Z",
        "properties": {"order_id": f"o-{n}", "total": 27.5, "currency": "USD"},
    }


async def drive(
    runtime: ActionsRuntime, events: int, call_events: int, in_flight: int, batch: bool
) -> tuple[float, int]:
    """Seconds for ``events`` events, and how many were not 2xx."""
    calls = [
        Call(
            "customerio",
            "trackEvent",
            SETTINGS,
            MAPPING,
            [event(n) for n in range(start, min(events, start + call_events))],
            batch=batch,
        )
        for start in range(0, events, call_events)
    ]
    queue = iter(calls)
    failed = 0

    async def lane() -> None:
        nonlocal failed
        for call in queue:
            for outcome in await runtime.execute(call):
                if not outcome.ok and not failed:
                    print(f"first failure: {outcome.error_type} {outcome.status} {outcome.message}")
                failed += not outcome.ok

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(in_flight)))
    return time.perf_counter() - started, failed


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a process so far (Linux), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def manifest_directories(directory: Path) -> list[str]:
    index = directory / "node_modules/@segment/action-destinations/dist/destinations/index.js"
    return re.findall(r"register\('[^']+', '\./([^']+)'\)", index.read_text())


async def main(args: argparse.Namespace) -> None:
    node = find_node()
    directory = actions_dir(Path(tempfile.gettempdir()) / "headwater-bench")
    receiver = subprocess.Popen(
        [str(node.executable), "-e", RECEIVER_JS], stdout=subprocess.PIPE, text=True
    )
    assert receiver.stdout is not None
    port = int(receiver.stdout.readline())
    pool.NODE_OPTIONS = list(args.node_option)
    if args.cpu_prof:
        Path(args.cpu_prof).mkdir(parents=True, exist_ok=True)
        pool.NODE_OPTIONS += ["--cpu-prof", f"--cpu-prof-dir={args.cpu_prof}"]
    runtime = ActionsRuntime(
        directory,
        processes=1,
        max_memory_mb=args.max_memory_mb,
        redirects={"https://track.customer.io": f"http://127.0.0.1:{port}"},
        node=node,
    )
    try:
        await runtime.start()
        await drive(runtime, 200, 10, 2, False)  # load the destination, warm the JIT
        await drive(runtime, 2000, 100, 2, True)
        for batch, call_events in ((False, args.call_events), (True, args.batch_size)):
            [info] = runtime.processes_info()
            node_cpu = cpu_seconds(info.pid)
            receiver_cpu = cpu_seconds(receiver.pid)
            own = resource.getrusage(resource.RUSAGE_SELF)
            seconds, failed = await drive(runtime, args.events, call_events, args.in_flight, batch)
            node_cpu = cpu_seconds(info.pid) - node_cpu
            receiver_cpu = cpu_seconds(receiver.pid) - receiver_cpu
            after = resource.getrusage(resource.RUSAGE_SELF)
            python_cpu = after.ru_utime + after.ru_stime - own.ru_utime - own.ru_stime
            await asyncio.sleep(args.ping_wait)
            [info] = runtime.processes_info()
            print(
                f"{'batched' if batch else 'unbatched'}: {args.events} events in "
                f"{seconds:.2f}s = {args.events / seconds:,.0f} events/s "
                f"({call_events} events a call, {args.in_flight} calls in flight, "
                f"{failed} failed); RSS {info.rss / 2**20:.0f} MB; CPU µs an event: "
                f"runtime {node_cpu / args.events * 1e6:.0f}, pool (Python) "
                f"{python_cpu / args.events * 1e6:.0f}, receiver "
                f"{receiver_cpu / args.events * 1e6:.0f}"
            )
        if args.all_destinations:
            names = manifest_directories(directory)
            started = time.perf_counter()
            errors = 0
            for name in names:
                try:
                    await runtime.hook(name, "validateSettings", {})
                except HookError as error:
                    errors += error.outcome.error_type != "PayloadValidationError"
            seconds = time.perf_counter() - started
            await asyncio.sleep(args.ping_wait)
            [info] = runtime.processes_info()
            print(
                f"all {len(names)} destinations loaded in {seconds:.2f}s "
                f"({errors} failed to load); RSS {info.rss / 2**20:.0f} MB, "
                f"heap {info.heap_used / 2**20:.0f} MB"
            )
    finally:
        await runtime.close()
        receiver.terminate()
        receiver.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--call-events", type=int, default=100)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--max-memory-mb", type=int, default=512)
    parser.add_argument("--all-destinations", action="store_true")
    parser.add_argument("--cpu-prof", default=None)
    parser.add_argument(
        "--node-option",
        action="append",
        default=[],
        help="e.g. --node-option=--max-semi-space-size=32",
    )
    parser.add_argument("--ping-wait", type=float, default=1.5, help="seconds for a fresh RSS")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(args))
