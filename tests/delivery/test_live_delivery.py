"""Delivery through a live server: config file, Tracking API, router, queues, destinations."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from headwater.pipeline.router import GROUP as ROUTER
from headwater.store import schema
from headwater.store.database import database_url, open_engine
from headwater.store.log import EventLog
from tests.support.live import ADMIN_TOKEN, LiveServer, serving
from tests.support.receiver import Answer, Receiver
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # every test here starts a headwater server process

AUTH = {"Authorization": "Basic V0tfd2ViOg=="}  # WK_web:
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def config(destinations: str) -> str:
    return (
        "workspace: test\nsources:\n  - name: web\n    write_key: WK_web\n"
        "destinations:\n" + destinations
    )


def routed_and_queued(live: LiveServer) -> int:
    """Once the router has passed every record (the stage that would queue a delivery), how
    many deliveries wait in the queues."""
    live.wait_processed()
    engine = open_engine(database_url(live.data_dir, None))
    try:
        log = EventLog(engine)
        wait_for(lambda: log.lag(ROUTER) == 0, 10, "the router to pass every record")
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.count()).select_from(schema.delivery_jobs)
                ).scalar_one()
            )
    finally:
        engine.dispose()


def track(n: int) -> dict[str, Any]:
    return {
        "userId": f"u{n}",
        "event": "Order Completed",
        "properties": {"n": n},
        "messageId": f"live-{n}-{uuid.uuid4().hex[:8]}",
        "writeKey": "WK_web",
    }


def test_events_reach_a_webhook_and_event_delivery_reports_them(
    tmp_path: Path, receiver: Receiver
) -> None:
    text = config(f"""  - name: hook
    type: webhook
    source: web
    settings:
      url: {receiver.url}/hook
      shared_secret: not-to-be-shown
""")
    with serving(tmp_path, text, role="all") as live:
        receiver.answer(Answer(status=400, body=b'{"error":"nope"}'))
        sent = [track(n) for n in range(10)]
        with httpx.Client(base_url=live.url, timeout=10) as http:
            for event in sent:
                assert http.post("/v1/track", json=event).status_code == 200
            got = receiver.wait_for(10, timeout=20)
            assert sorted(r.json()["messageId"] for r in got) == sorted(
                e["messageId"] for e in sent
            )
            assert all("writeKey" not in r.json() for r in got)
            assert {r.json()["type"] for r in got} == {"track"}

            def report() -> dict[str, Any]:
                data: dict[str, Any] = http.get(
                    "/api/v1/destinations/hook/delivery", headers=ADMIN
                ).json()["data"]
                return data

            data = wait_for(lambda: report()["delivered"] == 9 and report(), 10, "the report")
            assert data["notDelivered"] == 1
            assert data["p95LatencyMs"] is not None and data["p95LatencyMs"] < 10_000
            [error] = data["errors"]
            assert error["code"] == "errors.discarded.400"
            sample = error["samples"][0]
            assert sample["responseFromDestination"]["body"] == {"error": "nope"}
            assert sample["requestToDestination"]["headers"]["X-Signature"] == "[redacted]"
            shown = http.get("/api/v1/destinations/hook", headers=ADMIN).json()
            assert shown["data"]["destination"]["settings"]["shared_secret"] == "[redacted]"
            assert "not-to-be-shown" not in str(shown) + str(data)

        env = {**os.environ, "HEADWATER_ADMIN_TOKEN": ADMIN_TOKEN}
        cli = subprocess.run(
            [sys.executable, "-m", "headwater", "delivery", "hook", "--url", live.url],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
        assert cli.returncode == 0, cli.stderr
        assert "delivered      9" in cli.stdout
        assert "1 × errors.discarded.400 (not_delivered)" in cli.stdout
        assert "not-to-be-shown" not in cli.stdout


def test_a_hanging_destination_does_not_slow_a_healthy_one(
    tmp_path: Path, receiver: Receiver
) -> None:
    hanging = Receiver()
    hanging.default = Answer(delay=30)
    text = config(f"""  - name: stuck
    type: webhook
    source: web
    settings: {{url: "{hanging.url}/never"}}
  - name: healthy
    type: webhook
    source: web
    settings: {{url: "{receiver.url}/fine"}}
""")
    with closing(hanging), serving(tmp_path, text, role="all") as live:
        sent_at: dict[str, float] = {}
        with httpx.Client(base_url=live.url, timeout=10) as http:
            for n in range(40):
                event = track(n)
                sent_at[event["messageId"]] = time.time()
                assert http.post("/v1/track", json=event).status_code == 200
                time.sleep(0.05)  # a steady trickle, so latency is measured per event: pacing
        got = receiver.wait_for(40, timeout=30)
        latencies = sorted(r.at - sent_at[r.json()["messageId"]] for r in got)
        p95 = latencies[int(0.95 * len(latencies)) - 1]
        assert p95 < 2.0, latencies
        assert hanging.requests  # the stuck destination was being tried all along


def test_disabled_destination_gets_nothing_until_a_replay(
    tmp_path: Path, receiver: Receiver
) -> None:
    text = config(f"""  - name: later
    type: webhook
    source: web
    enabled: false
    settings: {{url: "{receiver.url}/later"}}
""")
    with serving(tmp_path, text, role="all") as live:
        start = datetime.now(UTC) - timedelta(minutes=1)
        sent = [track(n) for n in range(5)]
        with httpx.Client(base_url=live.url, timeout=10) as http:
            for event in sent:
                assert http.post("/v1/track", json=event).status_code == 200
            # Archived (the replay's source) but never delivered while disabled (AC-094).
            wait_for(
                lambda: list((tmp_path / "data" / "archive").rglob("*.ndjson.gz")),
                10,
                "the archive",
            )
            assert routed_and_queued(live) == 0
            assert receiver.requests == []
            env = {**os.environ, "HEADWATER_ADMIN_TOKEN": ADMIN_TOKEN}
            end = datetime.now(UTC) + timedelta(minutes=1)
            cli = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "headwater",
                    "replay",
                    "later",
                    "--url",
                    live.url,
                    "--start",
                    start.isoformat(),
                    "--end",
                    end.isoformat(),
                ],
                capture_output=True,
                text=True,
                env=env,
                timeout=30,
            )
            assert cli.returncode == 0, cli.stderr
            assert "queued 5 for delivery" in cli.stdout
            got = receiver.wait_for(5, timeout=20)
            assert sorted(r.json()["messageId"] for r in got) == sorted(
                e["messageId"] for e in sent
            )

            def report() -> dict[str, Any]:
                data: dict[str, Any] = http.get(
                    "/api/v1/destinations/later/delivery", headers=ADMIN
                ).json()["data"]
                return data

            data = wait_for(lambda: report()["replayed"] == 5 and report(), 10, "the report")
            assert data["delivered"] == 0  # replays are not in Event Delivery


def test_a_package_destination_through_a_live_server(tmp_path: Path, receiver: Receiver) -> None:
    """`serve` with an ``actions:customerio`` instance and ``server.request_redirects`` in
    headwater.yaml: the worker's actions runtime runs Segment's code, which reaches the
    receiver; Event Delivery and the API show the instance, its secrets redacted."""
    text = (
        config("""  - name: cio
    type: actions:customerio
    source: web
    settings: {siteId: site-secret-1, apiKey: api-secret-2}
    mappings:
      - name: Track Event
        enabled: true
        trigger: type = "track"
        action: trackEvent
        fields:
          id: {"@path": "$.userId"}
          name: {"@path": "$.event"}
          data: {"@path": "$.properties"}
          enable_batching: false
""")
        + f'server:\n  request_redirects: {{"https://track.customer.io": "{receiver.url}"}}\n'
    )
    with serving(tmp_path, text, role="all") as live:
        receiver.answer(Answer(status=400, body=b'{"meta":{"error":"bad"}}'))
        sent = [track(n) for n in range(4)]
        with httpx.Client(base_url=live.url, timeout=10) as http:
            for event in sent:
                assert http.post("/v1/track", json=event).status_code == 200
            got = receiver.wait_for(4, timeout=30)
            assert {(r.method, r.path) for r in got} == {("POST", "/api/v2/entity")}
            assert sorted(r.json()["identifiers"]["id"] for r in got) == [f"u{n}" for n in range(4)]
            assert all(r.headers["authorization"].startswith("Basic ") for r in got)

            def report() -> dict[str, Any]:
                data: dict[str, Any] = http.get(
                    "/api/v1/destinations/cio/delivery", headers=ADMIN
                ).json()["data"]
                return data

            data = wait_for(lambda: report()["delivered"] == 3 and report(), 20, "the report")
            [error] = data["errors"]
            assert error["code"] == "errors.discarded.400"
            sample = error["samples"][0]
            assert (
                sample["requestToDestination"]["url"] == "https://track.customer.io/api/v2/entity"
            )
            assert sample["requestToDestination"]["headers"]["authorization"] == "[redacted]"
            shown = http.get("/api/v1/destinations/cio", headers=ADMIN).json()
            assert shown["data"]["destination"]["settings"]["apiKey"] == "[redacted]"
            assert "api-secret-2" not in str(shown) + str(data)
