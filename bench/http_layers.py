"""Issue 11: the HTTP layer for the Tracking API's two hot routes, re-measured.

    python bench/http_layers.py [--duration 10] [--runs 3] [--only uvicorn,hand] [--json out.json]
                                [--paced 5000]

Each candidate is a server process (``http_servers.py``) doing the same work per request, with
no database; each no-op serves the same routes with the work left out. Per round, every
candidate in turn is started, checked (it must answer as the Tracking API does), warmed up for
2 s, then measured with ``wrk -t1 -c32 --latency`` on /v1/track (``track.lua``) and /v1/batch
(``batch.lua``, 100 events a request), unpinned, as a user would run it; with ``--paced RATE``
also single events at that rate (``paced.lua``), whose p99 is the latency at equal load rather
than at saturation. Reported: req/s, p50 and p99, the server's CPU-µs per request (utime+stime
of its process tree from /proc, before and after), and the CPU the rest of the machine used
meanwhile (other sessions share it).
Figures are the median of the rounds, each figure on its own. Needs wrk, and granian in the
venv for its candidates (``pip install granian==2.8.7``, the version of the dependency survey).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from processes import free_port, noop_command, wait_ready

HERE = Path(__file__).resolve().parent
TICK = os.sysconf("SC_CLK_TCK")
WARM_UP = 2


@dataclass(frozen=True)
class Candidate:
    name: str
    label: str
    real: bool  # does the Tracking API's work (else a no-op ceiling)


CANDIDATES = [
    Candidate("uvicorn-noop", "uvicorn + httptools, noop_app.py (the issue's ceiling)", False),
    Candidate("uvicorn-guarded-noop", "uvicorn + GuardedProtocol, noop_app.py", False),
    Candidate("granian-noop", "granian RSGI, no-op handler", False),
    Candidate("hand-noop", "hand-rolled protocol, no-op handler", False),
    Candidate("uvicorn", "uvicorn + GuardedProtocol + TrackingAPI (today)", True),
    Candidate("granian", "granian RSGI + the Tracking API's work", True),
    Candidate("hand", "hand-rolled protocol + the Tracking API's work", True),
]


def command(candidate: str, port: int, data_dir: Path) -> list[str]:
    if candidate == "uvicorn-noop":
        return noop_command(port)
    if candidate.startswith("granian"):
        target = (
            "http_servers:rsgi_noop" if candidate == "granian-noop" else "http_servers:rsgi_ingest"
        )
        return [
            str(Path(sys.executable).parent / "granian"),
            "--interface",
            "rsgi",
            "--http",
            "1",
            "--no-ws",
            "--loop",
            "uvloop",
            "--workers",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
            target,
        ]
    return [sys.executable, str(HERE / "http_servers.py"), candidate, str(port), str(data_dir)]


# --- CPU accounting -------------------------------------------------------------------------------


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants (granian serves from a worker process it spawns)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])
            parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of these processes (all their threads)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICK


def machine_busy_seconds() -> float:
    """CPU time spent on the whole machine (all cores) since boot, idle and iowait excluded."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / TICK


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- one run --------------------------------------------------------------------------------------


def wrk(
    url: str, script: str, duration: int, pids: list[int], rate: int | None = None
) -> dict[str, float]:
    server_before = cpu_seconds(pids)
    busy_before = machine_busy_seconds()
    wrk_before = children_cpu()
    started = time.monotonic()
    output = subprocess.run(
        ["wrk", "-t1", "-c32", f"-d{duration}s", "--latency", "-s", script, url],
        capture_output=True,
        text=True,
        check=True,
        cwd=HERE,
        env={**os.environ, "RATE": str(rate)} if rate else None,
    ).stdout
    elapsed = time.monotonic() - started
    server = cpu_seconds(pids) - server_before
    load = children_cpu() - wrk_before
    others = machine_busy_seconds() - busy_before - server - load
    line = next(line for line in output.splitlines() if line.startswith("RESULT"))
    result = {k: float(v) for k, v in (part.split("=") for part in line.split()[1:])}
    result["cpu_us"] = server / result["requests"] * 1e6
    result["server_cores"] = server / elapsed
    result["wrk_cores"] = load / elapsed
    result["other_cores"] = max(others, 0.0) / elapsed
    return result


def check(url: str, real: bool) -> None:
    """The candidate answers like the Tracking API (the real ones) or at all (the no-ops)."""
    auth = {"authorization": "Basic " + base64.b64encode(b"BENCH_WRITE_KEY:").decode()}
    event = {"userId": "u", "event": "Checked", "messageId": f"check-{time.time()}"}
    with httpx.Client(base_url=url, timeout=5) as client:
        answer = client.post("/v1/track", json=event, headers=auth)
        assert answer.status_code == 200 and answer.json() == {"success": True}, answer.text
        batch = client.post("/v1/batch", json={"batch": [{"type": "track", **event}]}, headers=auth)
        assert batch.status_code == 200, batch.text
        if real:
            bad = client.post("/v1/track", content=b"{", headers=auth)
            assert bad.status_code == 400 and bad.json()["code"] == "invalid_json", bad.text
            other = {"authorization": "Basic " + base64.b64encode(b"nope:").decode()}
            unknown = client.post("/v1/track", json=event, headers=other)
            assert unknown.status_code == 401, unknown.text


def measure(
    candidate: Candidate, duration: int, data_dir: Path, paced: int | None
) -> dict[str, dict[str, float]]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "HW_BENCH_DIR": str(data_dir)}
    server = subprocess.Popen(command(candidate.name, port, data_dir), cwd=HERE, env=env)
    try:
        wait_ready(url + "/", candidate.name)
        check(url, candidate.real)
        pids = process_tree(server.pid)
        wrk(url + "/v1/track", "track.lua", WARM_UP, pids)
        figures = {
            "single": wrk(url + "/v1/track", "track.lua", duration, pids),
            "batch": wrk(url + "/v1/batch", "batch.lua", duration, pids),
        }
        if paced:
            figures["paced"] = wrk(url + "/v1/track", "paced.lua", duration, pids, paced)
        return figures
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


# --- report ---------------------------------------------------------------------------------------

FIELDS = ["rps", "p50_ms", "p99_ms", "cpu_us", "server_cores", "wrk_cores", "other_cores"]


def medians(runs: list[dict[str, float]]) -> dict[str, float]:
    return {f: statistics.median(r[f] for r in runs) for f in [*FIELDS, "non2xx"]}


def table(results: dict[str, dict[str, list[dict[str, float]]]]) -> str:
    lines = [
        "| candidate | kind | req/s | events/s | p50 ms | p99 ms | CPU-µs/req | server cores "
        "| wrk cores | others' cores | req/s of the runs |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for candidate in CANDIDATES:
        for kind in ("single", "batch", "paced"):
            runs = results.get(candidate.name, {}).get(kind)
            if not runs:
                continue
            m = medians(runs)
            events = m["rps"] * (100 if kind == "batch" else 1)
            each = ", ".join(f"{r['rps']:,.0f}" for r in runs)
            errors = f" ({m['non2xx']:.0f} non-2xx)" if m["non2xx"] else ""
            lines.append(
                f"| {candidate.name} | {kind} | {m['rps']:,.0f}{errors} | {events:,.0f} "
                f"| {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['cpu_us']:.1f} "
                f"| {m['server_cores']:.2f} | {m['wrk_cores']:.2f} | {m['other_cores']:.2f} "
                f"| {each} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--runs", type=int, default=3, help="rounds over every candidate")
    parser.add_argument("--only", help="comma-separated candidate names")
    parser.add_argument("--json", type=Path, help="write every run's figures here")
    parser.add_argument(
        "--paced", type=int, help="also post single events at this rate (paced.lua) for p99"
    )
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install -y wrk")
    chosen = CANDIDATES
    if args.only:
        names = set(args.only.split(","))
        chosen = [c for c in CANDIDATES if c.name in names]
        if unknown := names - {c.name for c in chosen}:
            raise SystemExit(f"unknown candidates: {', '.join(sorted(unknown))}")
    if not (Path(sys.executable).parent / "granian").exists():
        print("granian is not installed (pip install granian==2.8.7): leaving its candidates out")
        chosen = [c for c in chosen if not c.name.startswith("granian")]
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(1, args.runs + 1):
            for candidate in chosen:
                print(f"[round {round_}/{args.runs}] {candidate.label} …", end=" ", flush=True)
                figures = measure(candidate, args.duration, Path(tmp) / candidate.name, args.paced)
                for kind, r in figures.items():
                    results.setdefault(candidate.name, {}).setdefault(kind, []).append(r)
                print(
                    f"single {figures['single']['rps']:,.0f} req/s "
                    f"({figures['single']['cpu_us']:.0f} CPU-µs), "
                    f"batch {figures['batch']['rps']:,.0f} req/s "
                    f"({figures['batch']['cpu_us']:.0f} CPU-µs)"
                    + (f", paced p99 {figures['paced']['p99_ms']:.2f} ms" if args.paced else ""),
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    print()
    print(table(results))


if __name__ == "__main__":
    main()
