"""Seeing what arrives, end to end: a live server with every role, its debugger, counters,
metrics and ``headwater tail``; and the ``durability: full`` setting."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import sqlalchemy as sa

from headwater.config.settings import ServerSettings
from headwater.server import Server
from headwater.store import schema
from headwater.store.counters import ACCEPTED, FAILED_ON_INGEST, RECEIVED, CounterStore
from headwater.store.database import database_url, open_engine
from tests.support.live import ADMIN_TOKEN, BASE_CONFIG, LiveServer, serving
from tests.support.waiting import wait_for

AUTH = {"Authorization": "Basic V0tfd2ViOg=="}  # WK_web:
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with serving(tmp_path_factory.mktemp("seeing"), role="all") as server:
        yield server


def debugger(live: LiveServer, limit: int = 100) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{live.url}/api/v1/sources/web/debugger", params={"limit": limit}, headers=ADMIN
    )
    assert response.status_code == 200
    events: list[dict[str, Any]] = response.json()["data"]["events"]
    return events


@pytest.mark.live
def test_debugger_counters_and_metrics_through_a_live_server(live: LiveServer) -> None:
    batch = {
        "writeKey": "WK_web",
        "batch": [
            {"type": "track", "userId": "u1", "event": "Seen One", "messageId": "seen-1"},
            {"type": "track", "event": "No User", "messageId": "seen-bad"},
            {"type": "identify", "userId": "u1", "traits": {"plan": "pro"}, "messageId": "seen-2"},
        ],
    }
    assert httpx.post(f"{live.url}/v1/batch", json=batch).status_code == 200
    assert (
        httpx.post(
            f"{live.url}/v1/track",
            headers=AUTH,
            json={"userId": "u1", "event": "Seen One", "messageId": "seen-1"},
        ).status_code
        == 200
    )  # dup

    events = wait_for(lambda: len(debugger(live)) >= 3 and debugger(live), 15, "the debugger")
    by_id = {e["message"]["messageId"]: e for e in events}
    assert len(events) == 3  # the duplicate is acknowledged, not shown again
    assert {k: e["status"] for k, e in by_id.items()} == {
        "seen-1": "accepted",
        "seen-2": "accepted",
        "seen-bad": "dropped",
    }
    assert events[0]["id"] > events[1]["id"] > events[2]["id"]  # newest first
    dropped = by_id["seen-bad"]
    assert dropped["reason"] == "no_user_anon_id"
    assert "writeKey" not in dropped["message"]  # write keys never land in stored messages
    accepted = by_id["seen-1"]["message"]
    assert accepted["receivedAt"] and accepted["timestamp"] and accepted["type"] == "track"
    assert "writeKey" not in accepted

    # The per-minute counters behind Delivery Overview, written by the observer stage.
    engine = open_engine(database_url(live.data_dir, None))
    try:
        with engine.connect() as conn:
            source_id = conn.execute(
                sa.select(schema.sources.c.id).where(schema.sources.c.name == "web")
            ).scalar_one()
        totals = wait_for(
            lambda: (
                {(t.step, t.reason): t.events for t in CounterStore(engine).totals(source_id)}.get(
                    (RECEIVED, "")
                )
                == 4
                and {(t.step, t.reason): t.events for t in CounterStore(engine).totals(source_id)}
            ),
            15,
            "the counters",
        )
        samples = CounterStore(engine).samples(source_id)
    finally:
        engine.dispose()
    assert totals[(ACCEPTED, "")] == 2
    assert totals[(FAILED_ON_INGEST, "no_user_anon_id")] == 1
    assert [s.message["messageId"] for s in samples if s.key.reason == "no_user_anon_id"] == [
        "seen-bad"
    ]

    metrics = httpx.get(f"{live.url}/metrics").text
    assert "headwater_events_received_total 4.0" in metrics
    assert "headwater_events_accepted_total 2.0" in metrics
    assert "headwater_events_duplicate_total 1.0" in metrics
    assert 'headwater_events_rejected_total{code="no_user_anon_id"} 1.0' in metrics
    assert "headwater_log_commit_seconds_count" in metrics


@pytest.mark.live
def test_live_stream_and_headwater_tail(live: LiveServer) -> None:
    received: list[dict[str, Any]] = []
    connected = threading.Event()

    def listen() -> None:
        with httpx.stream(
            "GET", f"{live.url}/api/v1/sources/web/debugger/stream", headers=ADMIN, timeout=20
        ) as response:
            for line in response.iter_lines():
                if line.startswith(": connected"):
                    connected.set()
                if line.startswith("data: "):
                    received.append(msgspec.json.decode(line[6:]))
                    return

    listener = threading.Thread(target=listen)
    listener.start()
    assert connected.wait(10)
    assert (
        httpx.post(
            f"{live.url}/v1/page",
            headers=AUTH,
            json={"userId": "u2", "name": "Pricing", "messageId": "streamed-1"},
        ).status_code
        == 200
    )
    listener.join(timeout=20)
    assert [e["message"]["messageId"] for e in received] == ["streamed-1"]

    env = {**os.environ, "HEADWATER_ADMIN_TOKEN": ADMIN_TOKEN}
    tail = subprocess.run(
        [sys.executable, "-m", "headwater", "tail", "web", "--url", live.url, "--no-follow"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert tail.returncode == 0, tail.stderr
    last = tail.stdout.splitlines()[-1].split()  # oldest first, so the newest is last
    assert last[1:] == ["accepted", "page", "Pricing", "userId=u2", "streamed-1"]


@pytest.mark.parametrize(("durability", "synchronous"), [("normal", 1), ("full", 2)])
def test_durability_setting_reaches_every_sqlite_connection(
    tmp_path: Path, durability: str, synchronous: int
) -> None:
    settings = ServerSettings(data_dir=tmp_path / "data", durability=durability)  # type: ignore[arg-type]
    server = Server(settings=settings, admin_token_hash="x")
    server.start()
    try:
        with server.engine.connect() as first, server.engine.connect() as second:
            for conn in (first, second):
                assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == synchronous
                assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        server.stop()


@pytest.mark.live
def test_durability_full_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "headwater.yaml"
    config.write_text(BASE_CONFIG + "server:\n  durability: full\n")
    live = LiveServer(data_dir=tmp_path / "data", config=config)
    live.start()
    try:
        assert (
            httpx.post(
                f"{live.url}/v1/track",
                headers=AUTH,
                json={"userId": "u", "event": "Durable", "messageId": "full-1"},
            ).status_code
            == 200
        )
        assert [e["messageId"] for e in live.events()] == ["full-1"]
        assert live.output is not None
        assert "durability: full" in live.output.read_text()
    finally:
        live.stop()
