"""``headwater serve`` starts, watches and stops its own role processes (issue 11).

Real supervisors over HTTP: the ingest and worker children, a worker SIGKILLed and restarted,
SIGTERM and SIGKILL of the supervisor, and two ingest processes on one port on PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector

from headwater.cli import _default_ingest_processes
from headwater.store.archive import Archive
from headwater.supervisor import RunDirectory, next_delay
from tests.support.live import BASE_CONFIG, LiveServer, default_processes
from tests.support.sockets import listens
from tests.support.waiting import wait_for

AUTH = {"Authorization": "Basic V0tfd2ViOg=="}  # WK_web:


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "headwater.yaml"
    path.write_text(BASE_CONFIG)
    return path


def alive(pid: int) -> bool:
    """Running, not a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def post_events(live: LiveServer, count: int, tag: str) -> set[str]:
    """``count`` single events, each on a fresh connection; their messageIds."""
    ids = {f"{tag}-{n}-{uuid.uuid4().hex[:8]}" for n in range(count)}
    for message_id in ids:
        body = {"userId": "u", "event": "E", "messageId": message_id}
        answer = httpx.post(f"{live.url}/v1/track", json=body, headers=AUTH, timeout=10)
        assert answer.status_code == 200, answer.text
    return ids


def archived(live: LiveServer) -> set[str]:
    archive = Archive(live.data_dir / "archive")
    now = datetime.now(UTC)
    return {
        event["messageId"]
        for source in archive.sources()
        for event in archive.read(source, now - timedelta(hours=2), now + timedelta(hours=1))
    }


def output(live: LiveServer) -> str:
    assert live.output is not None
    return live.output.read_text()


def requests_answered(metrics: list[Metric]) -> int:
    """``headwater_requests_total{status="200"}`` in merged multiprocess metrics."""
    total = 0
    for metric in metrics:
        for sample in metric.samples:
            if sample.name == "headwater_requests_total" and sample.labels == {"status": "200"}:
                total += int(sample.value)
    return total


def scraped_requests(live: LiveServer) -> int:
    text = httpx.get(f"{live.url}/metrics").text
    match = re.search(r'^headwater_requests_total\{status="200"\} (\S+)$', text, re.M)
    assert match, text
    return int(float(match.group(1)))


def test_the_back_off_doubles_to_30_s_and_starts_again_after_a_steady_run() -> None:
    delays = [next_delay(None, 0.5)]
    for _ in range(7):
        delays.append(next_delay(delays[-1], 0.5))
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]
    assert next_delay(30, 59.9) == 30
    assert next_delay(30, 60) == 1


def test_one_ingest_process_is_the_default_on_postgres_and_beside_a_role() -> None:
    def default(role: str, database: str | None) -> int:
        args = argparse.Namespace(role=role, supervised=False)
        return _default_ingest_processes(args, argparse.Namespace(database=database))

    assert default("all", "postgresql://h/db") == 1
    assert default("ingest", None) == 1
    assert default("all", None) == min(2, os.cpu_count() or 1)


def test_the_api_role_is_started_by_serve_only(tmp_path: Path) -> None:
    """It listens on no port: alone, nothing would reach it."""
    data = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "headwater", "serve", "--data-dir", str(data), "--role", "api"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert "--role api is started by `serve` itself" in result.stderr
    assert not data.exists()


# A child that ignores SIGTERM and leaves its last line unfinished, and one that always fails.
STUBBORN = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("out line", flush=True)
sys.stderr.write("err line" + chr(10) + "partial")
sys.stderr.flush()
time.sleep(600)
"""
FLAKY = "import sys; print('flaky ran'); sys.exit(3)"
SUPERVISE = """
import sys
from pathlib import Path
from headwater.supervisor import Child, RunDirectory, Supervisor
data, stubborn, flaky = sys.argv[1:]
children = [
    Child("stubborn", [sys.executable, "-c", stubborn]),
    Child("flaky", [sys.executable, "-c", flaky]),
]
sys.exit(Supervisor(RunDirectory.claim(Path(data)), children, grace=1.0).run_until_stopped())
"""


@pytest.mark.live
def test_the_supervisor_prefixes_restarts_and_kills_what_ignores_the_stop(tmp_path: Path) -> None:
    data = tmp_path / "data"
    log = tmp_path / "supervisor.log"
    with log.open("wb") as out:
        supervisor = subprocess.Popen(
            [sys.executable, "-c", SUPERVISE, str(data), STUBBORN, FLAKY],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(
            lambda: "[serve] flaky exited with code 3; restarting in 2 s" in log.read_text(),
            30,
            "the flaky child to fail twice",
        )
        stubborn = int((data / "run" / "stubborn.pid").read_text())
        # One supervisor per data directory.
        with pytest.raises(
            SystemExit, match=f"another `headwater serve` \\(pid {supervisor.pid}\\)"
        ):
            RunDirectory.claim(data)
        supervisor.send_signal(signal.SIGTERM)
        assert supervisor.wait(timeout=30) == 1  # a child had to be killed
    finally:
        supervisor.kill()
    lines = log.read_text().splitlines()
    assert "[stubborn] out line" in lines
    assert "[stubborn] err line" in lines
    assert "[stubborn] partial" in lines  # the unfinished last line, when it died
    assert "[flaky] flaky ran" in lines
    assert "[serve] flaky exited with code 3; restarting in 1 s" in lines
    assert "[serve] stubborn did not stop within 1 s; killing it" in lines
    assert not alive(stubborn)
    assert not (data / "run" / "stubborn.pid").exists()


@pytest.mark.live
def test_serve_runs_ingest_an_api_and_a_worker_process(tmp_path: Path, config: Path) -> None:
    live = LiveServer(data_dir=tmp_path / "data", config=config, role="all")
    live.start()
    try:
        assert live.process is not None
        pids = live.pids()
        assert set(pids) == default_processes()
        for pid in pids.values():
            assert pid != live.process.pid
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            assert ppid == live.process.pid
        # The ingest processes serve the port; the api process takes connections from them
        # (tests/test_api_process.py); the worker serves nothing.
        ingest = [pids[name] for name in pids if name.startswith("ingest")]
        wait_for(
            lambda: all(listens(pid, live.port) for pid in ingest),
            30,
            "every ingest process to listen",
        )
        assert not listens(pids["api"], live.port)
        assert not listens(pids["worker"], live.port)
        assert not listens(live.process.pid, live.port)

        sent = post_events(live, 20, "both")
        wait_for(lambda: sent <= archived(live), 30, "the worker to archive the events")
        # Counted by the ingest process, rendered from the shared metrics directory.
        assert scraped_requests(live) == 20
        # The lag gauge is one series per group (no pid label), read when scraped.
        wait_for(
            lambda: (
                re.findall(
                    r"^headwater_log_consumer_lag\{(.*)\} (\S+)$",
                    httpx.get(f"{live.url}/metrics").text,
                    re.M,
                ).count(('group="archive"', "0.0"))
                == 1
            ),
            30,
            "the archive's lag to read 0 once",
        )

        text = output(live)
        assert text.count("Headwater listening on") == 1
        count = len(default_processes()) - 2
        assert f"processes: {count} ingest + 1 api + 1 worker" in text
        # The config is applied and its changes printed once, by the supervisor.
        applied = [line for line in text.splitlines() if "source web" in line]
        assert len(applied) == 1 and not applied[0].startswith("[")
        assert f"[serve] started ingest (pid {pids['ingest']})" in text
        assert f"[serve] started api (pid {pids['api']})" in text
        assert f"[serve] started worker (pid {pids['worker']})" in text
    finally:
        live.stop()


@pytest.mark.live
def test_a_killed_worker_is_restarted_and_catches_up(tmp_path: Path, config: Path) -> None:
    live = LiveServer(data_dir=tmp_path / "data", config=config, role="all")
    live.start()
    try:
        first = live.pids()["worker"]
        before = post_events(live, 5, "before")
        wait_for(lambda: before <= archived(live), 30, "the first worker to archive")

        os.kill(first, signal.SIGKILL)
        # The ingest process keeps acknowledging while no worker runs.
        during = post_events(live, 5, "during")
        wait_for(
            lambda: "[serve] worker exited with code -9; restarting in 1 s" in output(live),
            10,
            "the supervisor to report the dead worker",
        )
        second = wait_for(
            lambda: (pid := live.pids().get("worker")) != first and pid,
            30,
            "a new worker process",
        )
        assert alive(second) and not alive(first)
        after = post_events(live, 5, "after")
        wait_for(lambda: during | after <= archived(live), 30, "the new worker to archive the rest")
        assert f"[serve] started worker (pid {second})" in output(live)
        # A restart starts the role again, not the server: no second bootstrap.
        assert output(live).count("source web") == 1
    finally:
        live.stop()


@pytest.mark.live
def test_sigterm_stops_every_process_and_exits_0(tmp_path: Path, config: Path) -> None:
    live = LiveServer(data_dir=tmp_path / "data", config=config, role="all")
    live.start()
    assert live.process is not None
    children = live.pids()
    live.process.send_signal(signal.SIGTERM)
    assert live.process.wait(timeout=30) == 0
    assert not any(alive(pid) for pid in children.values())
    assert "[serve] stopping on SIGTERM" in output(live)
    assert "did not stop" not in output(live)
    assert live.pids() == {}
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{live.url}/health")


@pytest.mark.live
def test_children_die_with_a_killed_supervisor(tmp_path: Path, config: Path) -> None:
    live = LiveServer(data_dir=tmp_path / "data", config=config, role="all")
    live.start()
    children = live.pids()
    live.stop(signal.SIGKILL)
    wait_for(
        lambda: not any(alive(pid) for pid in children.values()),
        10,
        "the children to die with their supervisor",
    )
    # Nothing holds the port, the data directory's lock or the log: the same command starts.
    live.start()
    try:
        restarted = live.pids()
        assert set(restarted) == default_processes()
        assert not set(restarted.values()) & set(children.values())
        sent = post_events(live, 3, "again")
        wait_for(lambda: sent <= archived(live), 30, "the new worker to archive")
    finally:
        live.stop()


@pytest.mark.live
@pytest.mark.parametrize("on", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_two_ingest_processes_share_the_port(
    tmp_path: Path, config: Path, on: str, request: pytest.FixtureRequest
) -> None:
    live = LiveServer(
        data_dir=tmp_path / "data",
        config=config,
        role="all",
        database=request.getfixturevalue("pg_database") if on == "postgresql" else None,
        ingest_processes=2,
    )
    live.start()
    try:
        assert set(live.pids()) == {"ingest", "ingest-2", "api", "worker"}

        # The processes as they are once both listen: one that died starting up has been
        # restarted (on PostgreSQL, EventLog.register in two processes starting at once can
        # collide on log_groups' key; the supervisor's restart is what recovers from it).
        def both_listen() -> dict[str, int] | None:
            now = live.pids()
            ingest = [now.get(name) for name in ("ingest", "ingest-2")]
            return now if all(pid and listens(pid, live.port) for pid in ingest) else None

        pids = wait_for(both_listen, 30, "both ingest processes to listen on the port")
        # Fresh connections: the kernel spreads them over both processes' sockets.
        sent = post_events(live, 60, "shared")
        metrics = live.run_dir / "metrics"
        answered = {
            name: requests_answered(
                MultiProcessCollector.merge([str(metrics / f"counter_{pids[name]}.db")])  # type: ignore[no-untyped-call]
            )
            for name in ("ingest", "ingest-2")
        }
        assert answered["ingest"] > 0 and answered["ingest-2"] > 0, answered
        assert sum(answered.values()) == 60
        # Either process renders the sum over every process.
        assert scraped_requests(live) == 60
        assert scraped_requests(live) == 60
        wait_for(lambda: sent <= archived(live), 30, "the worker to archive both halves")
    finally:
        live.stop()
