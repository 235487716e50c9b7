"""Headwater on PostgreSQL: roles in separate processes, and the database going away."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from headwater.store import schema
from headwater.store.archive import Archive
from headwater.store.counters import ACCEPTED, CounterStore
from headwater.store.database import database_url, open_engine
from headwater.store.log import EventLog
from tests.support.live import ADMIN_TOKEN, BASE_CONFIG, LiveServer
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # every test here starts a headwater server process

AUTH = {"Authorization": "Basic V0tfd2ViOg=="}  # WK_web:


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "headwater.yaml"
    path.write_text(BASE_CONFIG)
    return path


def test_ingest_and_two_workers_share_the_log(
    tmp_path: Path, config: Path, pg_database: str
) -> None:
    data = tmp_path / "data"  # one archive directory, as on a shared volume
    ingest = LiveServer(data_dir=data, config=config, role="ingest", database=pg_database)
    workers = [
        LiveServer(data_dir=data, config=config, role="worker", database=pg_database)
        for _ in range(2)
    ]
    engine = open_engine(database_url(data, pg_database))
    try:
        ingest.start()
        for worker in workers:
            worker.start()
        # The ingest process does not consume; the workers do not ingest.
        refused = httpx.post(
            f"{workers[0].url}/v1/track", headers=AUTH, json={"userId": "u", "event": "E"}
        )
        assert refused.status_code == 503

        sent: list[str] = []
        with httpx.Client(base_url=ingest.url, timeout=10) as http:
            for n in range(40):
                ids = [f"pg-{n}-{i}-{uuid.uuid4().hex[:6]}" for i in range(25)]
                batch = [
                    {"type": "track", "userId": f"u{n}", "event": "Played", "messageId": message_id}
                    for message_id in ids
                ]
                assert (
                    http.post("/v1/batch", json={"batch": batch}, headers=AUTH).status_code == 200
                )
                sent += ids

        log = EventLog(engine)

        def owners() -> set[str]:
            with engine.connect() as conn:
                return set(
                    conn.execute(
                        sa.select(schema.log_groups.c.owner).where(
                            schema.log_groups.c.group_name == "archive",
                            schema.log_groups.c.owner.is_not(None),
                        )
                    ).scalars()
                )

        # Both workers hold a fair share of the partitions, and together drain the log.
        wait_for(lambda: len(owners()) == 2, 30, "both workers to lease partitions")
        wait_for(
            lambda: log.lag("archive") == 0 and log.lag("observer") == 0,
            30,
            "the workers to consume every record",
        )

        now = datetime.now(UTC)
        source_id = _source_id(engine, "web")
        archived = [
            e["messageId"]
            for e in Archive(data / "archive").read(
                source_id, now - timedelta(hours=2), now + timedelta(hours=1)
            )
        ]
        assert sorted(archived) == sorted(sent)  # every event once
        totals = {t.step: t.events for t in CounterStore(engine).totals(source_id)}
        assert totals[ACCEPTED] == len(sent)  # counted once, whichever worker saw it
    finally:
        for live in [ingest, *workers]:
            live.stop()
        engine.dispose()


def test_503_while_postgres_is_down_then_recovery(
    tmp_path: Path, config: Path, private_postgres: PostgresServer
) -> None:
    live = LiveServer(
        data_dir=tmp_path / "data", config=config, role="ingest", database=private_postgres.url
    )
    live.start()
    try:
        with httpx.Client(base_url=live.url, timeout=15) as http:
            body = {"userId": "u1", "event": "Before", "messageId": "before-outage"}
            assert http.post("/v1/track", json=body, headers=AUTH).status_code == 200

            private_postgres.stop("immediate")
            during = http.post(
                "/v1/track",
                headers=AUTH,
                json={"userId": "u1", "event": "During", "messageId": "during-outage"},
            )
            assert during.status_code == 503
            assert during.headers["retry-after"]
            assert during.json()["code"] == "unavailable"
            assert http.get("/ready").status_code == 503
            assert http.get("/health").status_code == 200  # alive, just not ready
            api = http.get("/api/v1/sources", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
            assert api.status_code == 503
            assert api.json()["errors"][0]["type"] == "unavailable"
            assert http.get("/metrics").status_code == 200

            private_postgres.start()
            wait_for(lambda: http.get("/ready").status_code == 200, 30, "/ready after restart")
            retried = http.post(
                "/v1/track",
                headers=AUTH,
                json={"userId": "u1", "event": "During", "messageId": "during-outage"},
            )
            assert retried.status_code == 200
        # The event acknowledged before the outage and the retried one are both stored, once.
        assert sorted(e["messageId"] for e in live.events()) == ["before-outage", "during-outage"]
    finally:
        live.stop()


def _source_id(engine: sa.engine.Engine, name: str) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                sa.select(schema.sources.c.id).where(schema.sources.c.name == name)
            ).scalar_one()
        )
