"""Single-event requests through a live server: the stage chain writes them on as fewer
processed records, and every event is still delivered, archived and counted once, with its own
arrival in the debugger."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from headwater.store import schema
from headwater.store.counters import ACCEPTED, RECEIVED
from headwater.store.database import database_url, open_engine
from tests.support.live import LiveServer, webhook_workspace
from tests.support.receiver import Receiver
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live

AUTH = {"Authorization": "Basic V0tfd2ViOg=="}  # WK_web:
REQUESTS = 300


async def send_all(url: str) -> list[int]:
    limits = httpx.Limits(max_connections=16)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, limits=limits, timeout=30) as http:
        answers = await asyncio.gather(
            *(
                http.post("/v1/track", json={"userId": "u", "event": "E", "messageId": f"m{n}"})
                for n in range(REQUESTS)
            )
        )
    return [a.status_code for a in answers]


def test_single_event_requests_are_coalesced_and_each_event_goes_through_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    config = webhook_workspace(tmp_path, f"{receiver.url}/hook")
    live = LiveServer(data_dir=tmp_path / "data", config=config, role="all")
    live.start()
    sent = {f"m{n}" for n in range(REQUESTS)}
    try:
        assert asyncio.run(send_all(live.url)) == [200] * REQUESTS
        live.wait_processed()
        got = receiver.wait_for(REQUESTS, timeout=60)
        wait_for(lambda: len(live.archived()) >= REQUESTS, 30, "the archive")
        archived = live.archived()
        engine = open_engine(database_url(live.data_dir, None))
        try:
            wait_for(lambda: counted(engine).get(RECEIVED) == REQUESTS, 30, "the counters")
            with engine.connect() as conn:
                # Offsets are dense from 1: what the chain appended to the processed stream.
                appended = sum(
                    n - 1
                    for n in conn.execute(sa.select(schema.log_partitions.c.next_offset)).scalars()
                )
                t = schema.debugger_entries.c
                entries = list(conn.execute(sa.select(t.received_at, t.entry)))
            assert counted(engine) == {RECEIVED: REQUESTS, ACCEPTED: REQUESTS}
        finally:
            engine.dispose()
    finally:
        live.stop()
    assert sorted(r.json()["messageId"] for r in got) == sorted(sent)
    assert sorted(e["messageId"] for e in archived) == sorted(sent)
    assert appended < REQUESTS / 2
    assert len(entries) == REQUESTS
    assert all(at == entry["message"]["receivedAt"] for at, entry in entries)


def counted(engine: sa.engine.Engine) -> dict[str, int]:
    c = schema.counters.c
    query = (
        sa.select(c.step, sa.func.sum(c["count"]))
        .where(c.destination_id == "", c["count"] > 0)
        .group_by(c.step)
    )
    with engine.connect() as conn:
        return {step: int(n) for step, n in conn.execute(query)}
