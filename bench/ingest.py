"""Load test of the Tracking API as a user runs it: ``headwater serve`` on its defaults, with
every process it starts, against a no-op ceiling measured in the same run.

    python bench/ingest.py [--rounds 3] [--duration 10] [--connections 32] [--rate 5000]
                           [--postgres | --database URL [--postmaster PID]]
                           [--ingest-processes N]

Nothing is pinned: wrk (``-t1``), the server's processes and the ceiling share the machine's
cores as they would for a user. Per round: the ceiling (``noop_app.py`` on uvicorn) with single
events, then a fresh server with single events (``track.lua``), batches of 100 (``batch.lua``)
and single events paced at ``--rate`` (``paced.lua``), alone and beside 50 REST API requests a
second (on the same port; the ingest process passes their connections to the api process). A
figure counts only if the pipeline kept up: the stage chain's lag (the oldest ingest log record
it has not processed) is printed when wrk stops and must be under 5 s. Each run also shows
every process's CPU time per request (user + system from ``/proc``), the figure to project onto
more cores. The table at the end holds the medians. Needs wrk (``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from processes import (
    cpu_seconds,
    free_port,
    fresh_database,
    postgres_cpu_seconds,
    postgres_server,
    server_processes,
    start_noop,
    wait_ready,
)

HERE = Path(__file__).resolve().parent
CONFIG = """\
workspace: bench
sources:
  - name: bench
    write_key: BENCH_WRITE_KEY
"""
KEEPS_UP_SECONDS = 5.0
ADMIN_TOKEN = "bench-admin-token"
REST_PER_SECOND = 50  # REST API requests a second beside the paced run that shows their cost

Result = dict[str, float]


def wrk(url: str, script: str, duration: int, connections: int, rate: int | None = None) -> Result:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    env = {**os.environ, "RATE": str(rate)} if rate else None
    output = subprocess.run(
        [*command, "-s", str(HERE / script), url],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE,
        env=env,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT"))
    return {k: float(v) for k, v in (part.split("=") for part in line.split()[1:])}


def stage_lag(url: str) -> float:
    """Seconds the stage chain is behind the ingest log (``/metrics``)."""
    text = httpx.get(url + "/metrics", timeout=30).text
    found = re.search(r"^headwater_stage_lag_seconds(?:\{[^}]*\})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else float("nan")


@contextmanager
def headwater(options: list[str]) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "headwater.yaml").write_text(CONFIG)
        data = Path(tmp) / "data"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "headwater", "serve", "--config", f"{tmp}/headwater.yaml"]
        command += ["--data-dir", str(data), "--port", str(port), *options]
        env = {**os.environ, "HEADWATER_ADMIN_TOKEN": ADMIN_TOKEN}
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL, env=env)
        try:
            wait_ready(url + "/ready", "the server", timeout=60)
            wait_for_processes(data, options)
            yield url, server, data
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)


def wait_for_processes(data: Path, options: list[str]) -> None:
    if "--ingest-processes" in options:
        ingest = int(options[options.index("--ingest-processes") + 1])
    elif "--database" in options:
        ingest = 1
    else:  # serve's default on SQLite
        ingest = min(2, os.cpu_count() or 1)
    expected = ingest + 2  # and an api and a worker
    deadline = time.monotonic() + 60
    # Less serve.pid; the api process takes connections once its socket is there.
    while (
        len(list((data / "run").glob("*.pid"))) - 1 < expected
        or not (data / "run" / "api.sock").exists()
    ):
        if time.monotonic() > deadline:
            raise SystemExit("the server's processes did not all start")
        time.sleep(0.1)


def measured(
    url: str,
    server: subprocess.Popen[bytes],
    data: Path,
    script: str,
    args: argparse.Namespace,
    rate: int | None = None,
) -> Result:
    """One wrk run, with the stage lag when it stops and CPU-µs per request per process."""
    pids = server_processes(server, data)
    postmaster = args.postmaster if args.database else None
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    before["postgres"] = postgres_cpu_seconds(postmaster)
    result = wrk(
        url + ("/v1/batch" if script == "batch.lua" else "/v1/track"),
        script,
        args.duration,
        args.connections,
        rate,
    )
    after = {name: cpu_seconds(pid) for name, pid in pids.items()}
    after["postgres"] = postgres_cpu_seconds(postmaster)
    result["lag_s"] = stage_lag(url)
    for name in after:
        if name != "serve" and (name != "postgres" or postmaster is not None):
            result[f"cpu_{name}"] = (after[name] - before[name]) * 1e6 / result["requests"]
    return result


def show(label: str, r: Result) -> None:
    events = r.get("events_per_s", r["rps"])
    cpu = " ".join(f"{k[4:]}={v:.0f}" for k, v in sorted(r.items()) if k.startswith("cpu_"))
    keeps_up = "" if r.get("lag_s", 0.0) < KEEPS_UP_SECONDS else "  (PIPELINE BEHIND)"
    print(
        f"{label:22} {r['rps']:8.0f} req/s {events:9.0f} events/s  p50 {r['p50_ms']:6.2f} ms  "
        f"p99 {r['p99_ms']:7.2f} ms  lag {r.get('lag_s', 0.0):5.1f} s  "
        f"non-2xx {r['non2xx']:.0f}  CPU-µs/req: {cpu}{keeps_up}",
        flush=True,
    )


def round_of(args: argparse.Namespace, options: list[str]) -> dict[str, Result]:
    results: dict[str, Result] = {}
    noop, url = start_noop(None)
    try:
        wrk(url + "/v1/track", "track.lua", 2, args.connections)  # warm-up
        results["ceiling single"] = wrk(
            url + "/v1/track", "track.lua", args.duration, args.connections
        )
        show("ceiling single", results["ceiling single"])
    finally:
        noop.send_signal(signal.SIGTERM)
        noop.wait()
    with headwater(options) as (url, server, data):
        wrk(url + "/v1/track", "track.lua", 2, args.connections)  # warm-up
        runs = [
            ("single", "track.lua", None),
            ("batch", "batch.lua", None),
            (f"paced {args.rate}/s", "paced.lua", args.rate),
        ]
        for name, script, rate in runs:
            wait_for_catch_up(url)
            results[name] = measured(url, server, data, script, args, rate)
            show(name, results[name])
        # The REST API shares the port (served by the api process): its cost to the hot routes.
        name = f"paced + REST {REST_PER_SECOND}/s"
        wait_for_catch_up(url)
        with rest_load(url):
            results[name] = measured(url, server, data, "paced.lua", args, args.rate)
        show(name, results[name])
    return results


@contextmanager
def rest_load(url: str) -> Iterator[None]:
    """GET /api/v1/sources, REST_PER_SECOND times a second, on fresh connections."""
    stop = threading.Event()

    def load() -> None:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        # One client, no keep-alive: a fresh connection a request without a fresh client
        # (``httpx.get`` builds an SSL context each call: ~20 ms of this process's CPU, which
        # on 2 cores showed up as the server's latency).
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=0), timeout=10) as http:
            while not stop.wait(1 / REST_PER_SECOND):
                http.get(url + "/api/v1/sources", headers=headers).raise_for_status()

    thread = threading.Thread(target=load)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def wait_for_catch_up(url: str, timeout: float = 120.0) -> None:
    """Start each run with the pipeline idle, so one run's backlog is not the next one's."""
    deadline = time.monotonic() + timeout
    while stage_lag(url) > 0 and time.monotonic() < deadline:
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rate", type=int, default=5000, help="requests/s of the paced run")
    parser.add_argument("--postgres", action="store_true", help="on a throwaway PostgreSQL")
    parser.add_argument("--database", help="or on this PostgreSQL (a fresh database a round)")
    parser.add_argument(
        "--ingest-processes", type=int, help="default: serve's own (2 on SQLite given 2 CPUs)"
    )
    parser.add_argument("--postmaster", type=int, help="that server's postmaster pid, for its CPU")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    if args.postgres:
        with postgres_server() as (args.database, args.postmaster):
            run_rounds(args)
    else:
        run_rounds(args)


def run_rounds(args: argparse.Namespace) -> None:
    rounds = []
    for n in range(args.rounds):
        print(f"round {n + 1} of {args.rounds}", flush=True)
        options = []
        if args.database:
            options = ["--database", fresh_database(args.database)]
        if args.ingest_processes is not None:
            options += ["--ingest-processes", str(args.ingest_processes)]
        rounds.append(round_of(args, options))
    print("\nmedians:")
    medians: dict[str, Result] = {}
    for name in rounds[0]:
        keys = set.intersection(*(set(r[name]) for r in rounds))
        medians[name] = {k: statistics.median(r[name][k] for r in rounds) for k in keys}
        show(name, medians[name])
    ratio = medians["single"]["rps"] / medians["ceiling single"]["rps"]
    print(f"single events: {ratio:.2f} of the no-op ceiling measured in the same run")


if __name__ == "__main__":
    main()
