"""Acknowledged means committed: SIGKILL under load, restarts, and deduplication across them."""

from __future__ import annotations

import signal
import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.live import BASE_CONFIG, LiveServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # every test here starts a headwater server process

AUTH = {"Authorization": "Basic V0tfd2ViOg=="}  # WK_web:


def make_server(tmp_path: Path, extra: str = "", role: str = "ingest") -> LiveServer:
    config = tmp_path / "headwater.yaml"
    config.write_text(BASE_CONFIG + extra)
    return LiveServer(data_dir=tmp_path / "data", config=config, role=role)


def test_sigkill_under_load_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """Every acknowledged messageId reaches the archive after the restart: the ingest log kept
    it, and the stage chain and the archive picked up where the killed server stopped."""
    live = make_server(tmp_path, role="all")
    live.start()
    acknowledged: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def send_batches() -> None:
        with httpx.Client(base_url=live.url, timeout=5) as http:
            while not stop.is_set():
                ids = [uuid.uuid4().hex for _ in range(20)]
                batch = [
                    {"type": "track", "userId": "load", "event": "Load", "messageId": i}
                    for i in ids
                ]
                try:
                    response = http.post("/v1/batch", json={"batch": batch}, headers=AUTH)
                except httpx.HTTPError:
                    return  # the server died under us: this batch was never acknowledged
                if response.status_code == 200:
                    with lock:
                        acknowledged.update(ids)

    workers = [threading.Thread(target=send_batches) for _ in range(6)]
    for worker in workers:
        worker.start()

    def load() -> int:
        with lock:
            return len(acknowledged)

    wait_for(lambda: load() > 1000, 30, "the load to get going")
    live.stop(signal.SIGKILL)
    stop.set()
    for worker in workers:
        worker.join(timeout=10)
    assert len(acknowledged) > 1000, "the load did not get going"

    live.start()  # recovery after the crash
    archived: list[str] = []

    def all_archived() -> bool:
        archived[:] = [event["messageId"] for event in live.archived()]
        return acknowledged <= set(archived)

    try:
        wait_for(all_archived, 120, "every acknowledged event in the archive")
    finally:
        live.stop()
    assert len(archived) == len(set(archived)), "an event was archived twice"


def test_deduplication_survives_restart(tmp_path: Path) -> None:
    live = make_server(tmp_path, role="all")
    live.start()
    body = {"userId": "u-restart", "event": "Once", "messageId": "restart-1"}
    assert httpx.post(f"{live.url}/v1/track", json=body, headers=AUTH).status_code == 200
    wait_for(lambda: live.archived(), 30, "the event in the archive")
    live.stop()
    live.start()
    assert httpx.post(f"{live.url}/v1/track", json=body, headers=AUTH).status_code == 200
    try:
        wait_for(
            lambda: "headwater_events_duplicate_total 1.0" in httpx.get(f"{live.url}/metrics").text,
            30,
            "the second copy counted as a duplicate",
        )
        events = [e for e in live.archived() if e["messageId"] == "restart-1"]
    finally:
        live.stop()
    assert len(events) == 1


def test_ac021_rate_limit_answers_429_and_loses_nothing(tmp_path: Path) -> None:
    live = make_server(tmp_path, "server:\n  rate_limit_events_per_second: 50\n")
    live.start()
    limited = 0
    with httpx.Client(base_url=live.url, timeout=5) as http:
        for i in range(150):
            body = {"userId": "rl", "event": "E", "messageId": f"rl-{i}"}
            while True:
                response = http.post("/v1/track", json=body, headers=AUTH)
                if response.status_code != 429:
                    break
                limited += 1
                assert int(response.headers["retry-after"]) >= 1
                assert int(response.headers["x-ratelimit-reset"]) >= 1
                time.sleep(0.2)  # backing off before a retry, as a client does: pacing
            assert response.status_code == 200
    ids = [e["messageId"] for e in live.events()]
    live.stop()
    assert limited > 0
    assert sorted(ids) == sorted(f"rl-{i}" for i in range(150))


def test_rate_limit_is_off_by_default(tmp_path: Path) -> None:
    live = make_server(tmp_path)
    live.start()
    with httpx.Client(base_url=live.url, timeout=5) as http:
        batch = [{"type": "track", "userId": "x", "event": "E"} for _ in range(2000)]
        statuses = {
            http.post("/v1/batch", json={"batch": batch}, headers=AUTH).status_code
            for _ in range(3)
        }
    live.stop()
    assert statuses == {200}
