"""When the ingest log cannot be written the Tracking API answers 503 and /ready says why;
when its files come back it takes events again, and a replaced log is read from its start."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.support.live import BASE_CONFIG, LiveServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live

AUTH = {"Authorization": "Basic V0tfd2ViOg=="}  # WK_web:


def start(tmp_path: Path, role: str) -> LiveServer:
    config = tmp_path / "headwater.yaml"
    config.write_text(BASE_CONFIG)
    live = LiveServer(data_dir=tmp_path / "data", config=config, role=role)
    live.start()
    return live


def track(live: LiveServer, user: str) -> httpx.Response:
    body = {"userId": user, "event": "E"}
    return httpx.post(f"{live.url}/v1/track", json=body, headers=AUTH, timeout=10)


def test_503_while_the_log_directory_is_gone_then_recovery(tmp_path: Path) -> None:
    live = start(tmp_path, "ingest")
    log = live.data_dir / "log"
    try:
        assert track(live, "before").status_code == 200
        shutil.rmtree(log)
        log.write_text("not a directory")  # nothing can be created or appended there
        refused = track(live, "during")
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        ready = httpx.get(f"{live.url}/ready", timeout=10)
        assert ready.status_code == 503
        assert "event log cannot take writes" in ready.json()["reason"]

        log.unlink()
        log.mkdir()
        assert wait_for(lambda: track(live, "after").status_code == 200, 10, "writes again")
        assert httpx.get(f"{live.url}/ready", timeout=10).status_code == 200
    finally:
        live.stop()
    users = [e["userId"] for e in live.events()]
    assert "during" not in users and "after" in users


def test_a_replaced_log_is_read_from_its_start(tmp_path: Path) -> None:
    live = start(tmp_path, "all")
    try:
        assert track(live, "first").status_code == 200
        wait_for(lambda: live.archived(), 30, "the first event in the archive")
        shutil.rmtree(live.data_dir / "log")  # a restore without the log, say
        (live.data_dir / "log").mkdir()
        assert track(live, "second").status_code == 200
        wait_for(
            lambda: {e["userId"] for e in live.archived()} == {"first", "second"},
            30,
            "the event appended to the new log in the archive",
        )
    finally:
        live.stop()
