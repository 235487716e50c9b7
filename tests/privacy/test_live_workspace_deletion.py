"""A-DS-11 on a running server: the clock moved five days, the worker purges, sends nothing."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support.live import ADMIN_TOKEN, LiveServer
from tests.support.receiver import Answer, Receiver
from tests.support.waiting import wait_for

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DAY = 86_400


@pytest.mark.live
def test_a_ds_11_a_running_server_purges_after_five_days(
    tmp_path: Path, receiver: Receiver
) -> None:
    config = tmp_path / "headwater.yaml"
    config.write_text(
        f"""workspace: acme
sources:
  - name: web
    write_key: WK_web
destinations:
  - name: hook
    type: webhook
    source: web
    settings: {{url: "{receiver.url}/hook"}}
"""
    )
    offset = tmp_path / "clock-offset"
    offset.write_text("0")
    receiver.default = Answer(status=500)  # every delivery fails: retries wait in the queue
    live = LiveServer(
        data_dir=tmp_path / "data",
        config=config,
        role="single",
        env={"HEADWATER_CLOCK_OFFSET_FILE": str(offset)},
    )
    live.start(timeout=120)
    try:
        with httpx.Client(base_url=live.url, timeout=30) as http:
            sent = http.post(
                "/v1/track",
                json={"userId": "u1", "event": "Signed Up", "messageId": "purge-marker"},
                auth=("WK_web", ""),
            )
            assert sent.status_code == 200
            wait_for(lambda: live.archived(), 60, "the event archived")
            receiver.wait_for(1, timeout=60)  # tried once, failed: a retry is queued

            asked = http.post("/api/v1/workspace/deletion", json={"confirm": "acme"}, headers=ADMIN)
            assert asked.status_code == 202, asked.text
            time.sleep(3)  # a few passes of the worker: nothing happens within the grace
            shown = http.get("/api/v1/workspace/deletion", headers=ADMIN).json()["data"]
            assert shown["deletion"]["status"] == "PENDING"
            assert http.get("/api/v1/sources/web", headers=ADMIN).status_code == 200

            offset.write_text(str(5 * DAY + 60))

            def purged() -> bool:
                answer = http.get("/api/v1/workspace/deletion", headers=ADMIN)
                return bool(answer.json()["data"]["deletion"]["status"] == "PURGED")

            wait_for(purged, 120, "the purge")
            before = len(receiver.requests)
            assert not live.archived()
            assert not list((tmp_path / "data" / "archive").rglob("*.ndjson.gz"))
            assert http.get("/api/v1/sources", headers=ADMIN).json()["data"]["sources"] == []
            refused = http.post(
                "/v1/track", json={"userId": "u1", "event": "x"}, auth=("WK_web", "")
            )
            assert refused.status_code == 401
            offset.write_text(str(6 * DAY))  # every retry long due: none may go out
            time.sleep(5)
            assert len(receiver.requests) == before
            assert http.get("/api/v1/workspace/deletion", headers=ADMIN).status_code == 200
    finally:
        live.stop()
