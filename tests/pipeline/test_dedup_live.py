"""Deduplication end to end through a live server: the same ``messageId`` twice inside the
window is delivered, archived and loaded once; after the server's clock moves past the window
it goes through again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from headwater.clock import OFFSET_FILE_VARIABLE, OffsetClock
from tests.support.live import ADMIN_TOKEN, LiveServer, webhook_workspace
from tests.support.receiver import Receiver
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live

AUTH = {"Authorization": "Basic V0tfd2ViOg=="}  # WK_web:


def test_ac019_a_repeated_message_id_is_delivered_archived_and_loaded_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    config = webhook_workspace(tmp_path, f"{receiver.url}/hook")
    offset = tmp_path / "clock-offset"
    live = LiveServer(
        data_dir=tmp_path / "data",
        config=config,
        role="all",
        env={OFFSET_FILE_VARIABLE: str(offset)},
    )
    live.start()
    body = {"userId": "u-dup", "event": "Order Completed", "messageId": "dup-1"}

    def headwater(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "headwater", *args, "--data-dir", str(live.data_dir)],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "HEADWATER_ADMIN_TOKEN": ADMIN_TOKEN},
        )

    try:
        with httpx.Client(base_url=live.url, timeout=10, headers=AUTH) as http:
            assert http.post("/v1/track", json=body).status_code == 200
            OffsetClock(offset).move(47 * 3600)  # inside the 48-hour window
            assert http.post("/v1/track", json=body).status_code == 200
            live.wait_processed()
            wait_for(live.archived, 30, "the archive")
            receiver.wait_for(1, timeout=20)
            wait_for(
                lambda: "headwater_events_duplicate_total 1.0" in http.get("/metrics").text,
                30,
                "the duplicate counted",
            )
            assert [e["messageId"] for e in live.archived()] == ["dup-1"]

            assert headwater("warehouse", "sync", "default", "--url", live.url).returncode == 0
            # A scheduled sync may have loaded it first: ask the warehouse, not the sync.
            count = headwater(
                "warehouse", "query", "default", "SELECT count(*) FROM web.order_completed"
            )
            assert count.stdout.split()[-1] == "1", count.stdout + count.stderr

            OffsetClock(offset).move(3 * 3600)  # 50 hours after the first: outside it
            assert http.post("/v1/track", json=body).status_code == 200
            wait_for(lambda: len(live.archived()) == 2, 30, "the late copy in the archive")
            got = receiver.wait_for(2, timeout=20)
    finally:
        live.stop()
    assert [r.json()["messageId"] for r in got] == ["dup-1", "dup-1"]
