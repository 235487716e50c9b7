"""``headwater serve`` in one process or as its supervised role processes, under wrk.

    python bench/serve_processes.py [--duration 10] [--connections 32] [--database URL]

Unpinned, as a user runs it: single ~1 KB track events (``track.lua``) against
``serve --role single`` and the supervised default on SQLite; with ``--database`` (a
PostgreSQL URL; each run gets a fresh database on that server) also the supervised default
with 1 and 2 ingest processes, and with ``--postmaster`` the CPU time of that server's
backends. Each run prints req/s, p50/p99, the consumers' lag when wrk
stops, and every process's CPU time per request (user + system, from ``/proc``, over the
measured run), which is the figure to project onto more cores.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from processes import free_port, wait_ready

HERE = Path(__file__).resolve().parent
CONFIG = """\
workspace: bench
sources:
  - name: bench
    write_key: BENCH_WRITE_KEY
"""
TICKS = os.sysconf("SC_CLK_TCK")


def wrk(url: str, duration: int, connections: int) -> dict[str, float]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency"]
    output = subprocess.run(
        [*command, "-s", str(HERE / "track.lua"), url],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE,
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("RESULT"))
    return {k: float(v) for k, v in (part.split("=") for part in line.split()[1:])}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def postgres_cpu_seconds(postmaster: int | None) -> float:
    """CPU time of a PostgreSQL server's backends (the postmaster's children) now."""
    if postmaster is None:
        return 0.0
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == postmaster:
            total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


def listeners(port: int) -> int:
    """Listening sockets on ``port``: one per ingest process once each has started."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            count += int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A"
    return count


def server_processes(server: subprocess.Popen[bytes], data: Path) -> dict[str, int]:
    """Every process of the server: the supervisor's children, else the server itself."""
    found = {p.stem: int(p.read_text()) for p in (data / "run").glob("*.pid")}
    found["serve"] = server.pid
    return found


def answered(data: Path, pid: int) -> int:
    """Tracking API requests one supervised process answered (its multiprocess counter file)."""
    from prometheus_client.multiprocess import MultiProcessCollector

    path = data / "run" / "metrics" / f"counter_{pid}.db"
    if not path.exists():
        return 0
    merged = MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
    return sum(
        int(sample.value)
        for metric in merged
        for sample in metric.samples
        if sample.name == "headwater_requests_total"
    )


def lag(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    found = re.findall(r"^headwater_log_consumer_lag\{.*\} (\S+)$", text, re.M)
    return max(float(v) for v in found)


def fresh_database(url: str) -> str:
    import sqlalchemy as sa

    name = f"bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(
        "postgresql+psycopg://" + url.split("://", 1)[1], isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    admin.dispose()
    return url.rsplit("/", 1)[0] + f"/{name}"


def measure(options: list[str], args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "headwater.yaml").write_text(CONFIG)
        data = Path(tmp) / "data"
        url = f"http://127.0.0.1:{free_port()}"
        command = [sys.executable, "-m", "headwater", "serve", "--config", f"{tmp}/headwater.yaml"]
        command += ["--data-dir", str(data), "--port", url.rsplit(":", 1)[1], *options]
        server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        try:
            wait_ready(url + "/ready", "the server")
            expected = 1
            if "--ingest-processes" in options:
                expected = int(options[options.index("--ingest-processes") + 1])
            deadline = time.monotonic() + 60
            while listeners(int(url.rsplit(":", 1)[1])) < expected:
                if time.monotonic() > deadline:
                    raise SystemExit("the ingest processes did not all start")
                time.sleep(0.1)
            wrk(url + "/v1/track", 3, args.connections)  # warm-up
            pids = server_processes(server, data)
            postmaster = args.postmaster if "--database" in options else None
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            before["postgres"] = postgres_cpu_seconds(postmaster)
            result = wrk(url + "/v1/track", args.duration, args.connections)
            after = {name: cpu_seconds(pid) for name, pid in pids.items()}
            after["postgres"] = postgres_cpu_seconds(postmaster)
            if postmaster is not None:
                pids["postgres"] = postmaster
            backlog = lag(url)
            served = {name: answered(data, pid) for name, pid in pids.items()}
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait()
    shown = " ".join(o for o in options if not o.startswith("postgresql")) or "(defaults)"
    cpu = ", ".join(
        f"{name} {(after[name] - before[name]) * 1e6 / result['requests']:.0f}"
        for name in sorted(pids)
        if name != "serve" or len(pids) == 1
    )
    ingest = [name for name in sorted(pids) if name.startswith("ingest")]
    total = sum(served[name] for name in ingest)
    if len(ingest) > 1 and total:  # each process's share, warm-up included, of wrk's requests
        cpu += " | per request it answered: " + ", ".join(
            f"{name} {(after[name] - before[name]) * 1e6 / (result['requests'] * share):.0f}"
            f" ({share:.0%})"
            for name in ingest
            for share in [served[name] / total]
        )
    print(
        f"{shown:42} {result['rps']:7.0f} req/s  p50 {result['p50_ms']:6.2f} ms  "
        f"p99 {result['p99_ms']:7.2f} ms  lag {backlog:7.0f}  non-2xx {result['non2xx']:.0f}  "
        f"CPU-µs/request: {cpu}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--database", help="a PostgreSQL server's URL, for the PostgreSQL runs")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every configuration")
    parser.add_argument(
        "--postmaster", type=int, help="that server's postmaster pid, to count its backends' CPU"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    for _ in range(args.rounds):
        measure(["--role", "single"], args)
        measure([], args)
        if args.database:
            for count in (1, 2):
                database = fresh_database(args.database)
                measure(["--ingest-processes", str(count), "--database", database], args)


if __name__ == "__main__":
    main()
