"""Load test of the Tracking API with wrk, against a no-op ceiling and a real Headwater.

    python bench/ingest.py [--duration 10] [--connections 64]

The server runs on core 0 and wrk on core 1 (taskset), like the survey in the spec. Three
runs per server: single events as fast as they go, batches of 100, and single events at a fixed
rate (``--rate``, paced by ``paced.lua``) for the latency at a given load. Needs wrk
(`apt-get install -y wrk`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from processes import free_port, pin, start_noop, wait_ready

HERE = Path(__file__).resolve().parent
CONFIG = """\
workspace: bench
sources:
  - name: bench
    write_key: BENCH_WRITE_KEY
"""


def wrk(
    url: str, script: str, duration: int, connections: int, rate: int | None = None
) -> dict[str, float]:
    command = [
        *pin(1),
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(HERE / script),
        url,
    ]
    env = {**os.environ, "RATE": str(rate)} if rate else None
    output = subprocess.run(
        command, capture_output=True, text=True, check=True, cwd=HERE, env=env
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT"))
    return {k: float(v) for k, v in (part.split("=") for part in line.split()[1:])}


def run(url: str, args: argparse.Namespace) -> dict[str, dict[str, float]]:
    wrk(url + "/v1/track", "track.lua", 3, args.connections)  # warm-up
    return {
        "single": wrk(url + "/v1/track", "track.lua", args.duration, args.connections),
        "batch": wrk(url + "/v1/batch", "batch.lua", args.duration, args.connections),
        f"@{args.rate}/s": wrk(
            url + "/v1/track", "paced.lua", args.duration, args.connections, rate=args.rate
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--rate", type=int, default=5000, help="requests a second of the fixed-rate latency run"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    results = {}

    noop, url = start_noop(0)
    try:
        results["ceiling"] = run(url, args)
    finally:
        noop.send_signal(signal.SIGTERM)
        noop.wait()

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "headwater.yaml").write_text(CONFIG)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        server = subprocess.Popen(
            [
                *pin(0),
                sys.executable,
                "-m",
                "headwater",
                "serve",
                "--config",
                f"{tmp}/headwater.yaml",
                "--data-dir",
                f"{tmp}/data",
                "--port",
                str(port),
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            wait_ready(url + "/ready", "the server")
            results["headwater"] = run(url, args)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait()

    print(f"{'':10} {'kind':7} {'req/s':>9} {'events/s':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for name, runs in results.items():
        for kind, r in runs.items():
            events = r.get("events_per_s", r["rps"])
            print(
                f"{name:10} {kind:7} {r['rps']:9.0f} {events:10.0f} "
                f"{r['p50_ms']:8.2f} {r['p99_ms']:8.2f}  non-2xx={r['non2xx']:.0f}"
            )
    ratio = results["headwater"]["single"]["rps"] / results["ceiling"]["single"]["rps"]
    print(f"single events: {ratio:.2f} of the no-op ceiling")


if __name__ == "__main__":
    main()
