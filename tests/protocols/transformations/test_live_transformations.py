"""Transformations through a live server (A-TR-1, A-TR-7): headwater.yaml, Tracking API,
router, a webhook on loopback, the archive and the default DuckDB warehouse."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.live import run_headwater, serving
from tests.support.receiver import Receiver
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # starts a headwater server process


def config(url: str) -> str:
    return f"""workspace: test
sources:
  - name: web
    write_key: WK_web
destinations:
  - name: hook
    type: webhook
    source: web
    settings: {{url: "{url}/hook"}}
    filters:
      # Sees the source-scoped result: the renamed event loses its secret.
      - if: "event = 'Order Completed'"
        actions: [{{type: DROP_PROPERTIES, fields: {{properties: [secret]}}}}]
      # Sees the event before the destination-scoped rename, so "checkout" passes.
      - if: "event = 'Checkout Renamed'"
        actions: [{{type: DROP}}]
transformations:
  - name: Fix order_completed
    source: web
    if: "event = 'order_completed'"
    newEventName: Order Completed
  - name: Checkout for the hook
    source: web
    destination: hook
    if: "event = 'checkout'"
    newEventName: Checkout Renamed
"""


def test_a_tr_1_and_a_tr_7(tmp_path: Path, receiver: Receiver) -> None:
    run = uuid.uuid4().hex[:8]
    sent = [
        {"userId": "u1", "event": "order_completed", "properties": {"secret": "s", "n": 1}},
        {"userId": "u2", "event": "checkout", "properties": {"n": 2}},
        {"userId": "u3", "event": "Checkout Renamed", "properties": {"n": 3}},
    ]
    with serving(tmp_path, config(receiver.url), role="all") as live:
        with httpx.Client(base_url=live.url, timeout=10) as http:
            for n, event in enumerate(sent):
                body = {**event, "messageId": f"{run}-{n}", "writeKey": "WK_web"}
                assert http.post("/v1/track", json=body).status_code == 200
        wait_for(lambda: len(receiver.requests) >= 2, 20, "two deliveries to the webhook")
        live.wait_processed()
        # The archive is a consumer group of its own: the deliveries say nothing of it.
        wait_for(lambda: len(live.archived()) >= 3, 20, "three events in the archive")
        archived = {e["userId"]: e["event"] for e in live.archived()}
        synced = run_headwater(
            "warehouse", "sync", "default", "--url", live.url, data_dir=tmp_path / "data"
        )
        assert synced.returncode == 0, synced.stdout + synced.stderr
        delivered: dict[str, dict[str, Any]] = {}
        for request in receiver.requests:
            message = request.json()
            delivered[message["userId"]] = message
    # A-TR-1: the cloud destination gets the source-scoped rename, and (A-TR-7) its filter
    # saw the renamed event.
    assert delivered["u1"]["event"] == "Order Completed"
    assert delivered["u1"]["properties"] == {"n": 1}
    # A-TR-7: the destination filter saw "checkout", then the destination-scoped rename ran.
    assert delivered["u2"]["event"] == "Checkout Renamed"
    assert "u3" not in delivered  # the same filter drops an event sent with that name
    assert set(delivered) == {"u1", "u2"}
    # The archive keeps what was accepted (replay of raw stays raw).
    assert archived == {"u1": "order_completed", "u2": "checkout", "u3": "Checkout Renamed"}
    # A-TR-1: the warehouse gets the source-scoped result, not the destination-scoped one.
    queried = run_headwater(
        "warehouse",
        "query",
        "default",
        "SELECT user_id, event_text FROM web.tracks ORDER BY user_id",
        data_dir=tmp_path / "data",
    )
    assert queried.returncode == 0, queried.stderr
    assert queried.stdout.splitlines() == [
        "user_id\tevent_text",
        "u1\tOrder Completed",
        "u2\tcheckout",
        "u3\tCheckout Renamed",
    ]
