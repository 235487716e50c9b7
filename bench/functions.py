"""Insert-function throughput, cold start and warm memory of one function's sandbox process.

    python bench/functions.py [--language javascript|python] [--events 50000] [--batch 200]
        [--in-flight 2] [--cold 5] [--no-bwrap]

Throughput: a small enrichment (``event.properties.message = 'Enriched'; return event``)
through ``SandboxRuntime.invoke_many`` in batches of ``--batch`` events, ``--in-flight``
batches at once, on ONE worker process (max_processes=1): events/s, and the CPU seconds the
worker and this host process spent, so events/s per core can be read off. Cold start: the
first ``invoke`` of a new version (process start, load, answer), ``--cold`` times. Memory: the
warm worker's RSS (``/proc/PID/status`` VmRSS) after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from headwater.functions.contract import Code, Language
from headwater.functions.sandbox.runtime import SandboxRuntime

SOURCES: dict[str, str] = {
    "javascript": """
async function onTrack(event, settings) {
  event.properties.message = 'Enriched'
  return event
}
""",
    "python": """
def on_track(event, settings):
    event["properties"]["message"] = "Enriched"
    return event
""",
}


def event(n: int) -> dict[str, Any]:
    return {
        "type": "track",
        "event": "Order Completed",
        "userId": f"user-{n % 1000}",
        "anonymousId": f"anon-{n}",
        "messageId": f"message-{n}",
        "timestamp": "2026-12-06T10:00:00.000Z",
        "properties": {"total": n, "currency": "USD", "products": [{"sku": "a", "price": 9.5}]},
        "context": {"library": {"name": "analytics.js", "version": "4.0.0"}, "ip": "10.0.0.1"},
    }


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _worker_pid(runtime: SandboxRuntime, code: Code) -> int:
    """The worker's pid (under bubblewrap the pool knows bwrap's pid: take its descendant that
    is the language's interpreter, the one doing the work)."""
    [pid] = runtime.processes(code)
    children = Path(f"/proc/{pid}/task/{pid}/children")
    while children.exists() and (found := children.read_text().split()):
        pid = int(found[0])
        children = Path(f"/proc/{pid}/task/{pid}/children")
    return pid


async def throughput(
    runtime: SandboxRuntime, code: Code, events: int, batch: int, in_flight: int
) -> None:
    calls = [("onTrack", event(n)) for n in range(batch)]
    warm = await runtime.invoke_many(code, calls, {})
    assert all(result.ok for result in warm), warm[0]
    assert warm[0].value["properties"]["message"] == "Enriched"
    pid = _worker_pid(runtime, code)
    print(f"warm worker RSS after its first batch: {_rss_mib(pid):.1f} MiB")
    worker_cpu = _cpu_seconds(pid)
    host_cpu = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    done = 0

    async def lane(count: int) -> None:
        nonlocal done
        while count > 0:
            results = await runtime.invoke_many(code, calls[: min(batch, count)], {})
            assert results[-1].ok, results[-1]
            done += len(results)
            count -= len(results)

    share = events // in_flight
    await asyncio.gather(*(lane(share) for _ in range(in_flight)))
    took = time.perf_counter() - started
    worker = _cpu_seconds(pid) - worker_cpu
    after = resource.getrusage(resource.RUSAGE_SELF)
    host = after.ru_utime + after.ru_stime - host_cpu.ru_utime - host_cpu.ru_stime
    print(
        f"throughput: {done} events in {took:.2f} s = {done / took:,.0f} events/s "
        f"(batches of {batch}, {in_flight} in flight, one worker)"
    )
    print(
        f"  CPU: worker {worker:.2f} s ({done / max(worker, 1e-9):,.0f} events per worker CPU-s), "
        f"host {host:.2f} s; both: {done / max(worker + host, 1e-9):,.0f} events per CPU-s"
    )
    print(f"warm worker RSS after the run: {_rss_mib(pid):.1f} MiB (pid {pid})")


async def cold_start(runtime: SandboxRuntime, language: Language, times: int) -> None:
    took: list[float] = []
    for version in range(times):
        code = Code("bench_cold", 1000 + version, language, SOURCES[language])
        started = time.perf_counter()
        result = await runtime.invoke(code, "onTrack", event(version), {})
        took.append((time.perf_counter() - started) * 1000)
        assert result.ok, result
        await runtime.forget("bench_cold")
    print(
        f"cold start (first invoke of a new version): median {statistics.median(took):.0f} ms, "
        f"min {min(took):.0f} ms, max {max(took):.0f} ms over {times}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--language", choices=sorted(SOURCES), default="javascript")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--in-flight", type=int, default=2)
    parser.add_argument("--cold", type=int, default=5)
    parser.add_argument("--no-bwrap", action="store_true", help="seccomp and rlimits only")
    args = parser.parse_args()
    language: Language = args.language
    runtime = SandboxRuntime(max_processes=1, bwrap=False if args.no_bwrap else None)
    try:
        await cold_start(runtime, language, args.cold)
        code = Code("bench_enrich", 1, language, SOURCES[language])
        await throughput(runtime, code, args.events, args.batch, args.in_flight)
    finally:
        await runtime.close()


if __name__ == "__main__":
    asyncio.run(main())
