"""A-DS-6 through a running server, with a crash in the middle.

u2 and u9 send events into a workspace with Unify (Profiles Sync into the DuckDB warehouse), a
data lake in a directory, Amplitude (with its Secret Key) and a webhook. Both are synced and
profiled. Then ``SUPPRESS_WITH_DELETE`` for u2. The server is killed (SIGKILL) once the deletion
has started, and started again.

After the restart the deletion resumes and finishes:
- a search of every byte of the data directory (gzip and Parquet decompressed, SQLite and DuckDB
  files raw) finds no trace of u2;
- Amplitude got its User Privacy API deletion for u2;
- the webhook, which takes no deletions, fails its step, and so the regulation is FAILED, as
  Segment reports it;
- nothing of u9's is lost: its events are archived, loaded, laked and profiled as before;
- u2 stays suppressed.
"""

from __future__ import annotations

import base64
import signal
import uuid
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest
import sqlalchemy as sa

from headwater.store.database import database_url, open_engine
from tests.support.live import ADMIN_TOKEN, LiveServer
from tests.support.receiver import Receiver
from tests.support.search import find_marker
from tests.support.waiting import wait_for

pytestmark = pytest.mark.live  # starts a headwater server process

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MARKER = "U2-MARKER-7c41d9"
OTHERS = "U9-MARKER-2b8e05"
LATER = "U2-LATER-0f3a6d"  # sent after the deletion: acknowledged, then dropped
FINAL = ("FINISHED", "FAILED", "PARTIAL_SUCCESS", "NOT_SUPPORTED", "INVALID")


def config(url: str) -> str:
    return f"""workspace: test
sources:
  - name: web
    write_key: WK_web
warehouses:
  - name: default
    type: duckdb
  - name: lake
    type: data-lake
    settings: {{location: lake}}
destinations:
  - name: amp
    type: amplitude
    source: web
    settings: {{api_key: amp-key, secret_key: amp-secret}}
  - name: hook
    type: webhook
    source: web
    settings: {{url: "{url}/hook"}}
spaces:
  - name: main
    sources: [web]
    profiles_sync: {{warehouse: default}}
server:
  request_redirects:
    "https://api2.amplitude.com": "{url}"
    "https://amplitude.com": "{url}"
"""


def send(live: LiveServer, kind: str, **body: Any) -> None:
    body = {"writeKey": "WK_web", "messageId": uuid.uuid4().hex, **body}
    answer = httpx.post(f"{live.url}/v1/{kind}", json=body, timeout=10)
    assert answer.status_code == 200, answer.text


def person(live: LiveServer, user_id: str, anonymous_id: str, marker: str) -> None:
    send(live, "page", anonymousId=anonymous_id, name="Home", properties={"marker": marker})
    send(
        live,
        "identify",
        userId=user_id,
        anonymousId=anonymous_id,
        traits={"email": f"{marker.lower()}@example.com", "note": marker},
    )
    for n in range(3):
        send(
            live,
            "track",
            userId=user_id,
            event="Order Completed",
            properties={"marker": marker, "n": n},
        )


def api(live: LiveServer, method: str, path: str, **kwargs: Any) -> Any:
    answer = httpx.request(method, f"{live.url}/api/v1{path}", headers=ADMIN, timeout=30, **kwargs)
    assert answer.status_code < 300, answer.text
    return answer.json()["data"]


def sync(live: LiveServer, warehouse: str) -> None:
    """A sync now, to its end (a scheduled one may be running: then that one is waited for)."""

    def done() -> bool:
        syncs = api(live, "GET", f"/warehouses/{warehouse}/syncs")["syncs"]
        return bool(syncs) and syncs[0]["status"] in ("success", "partial", "failure")

    wait_for(done, 120, f"{warehouse}'s scheduled sync")
    api(live, "POST", f"/warehouses/{warehouse}/syncs")
    wait_for(done, 120, f"{warehouse}'s sync")


def loaded(data: Path, sql: str) -> list[tuple[Any, ...]]:
    with duckdb.connect(str(data / "warehouse-default.duckdb"), read_only=True) as conn:
        return conn.execute(sql).fetchall()


def rows_holding(database: str, marker: str) -> list[str]:
    """The state database's tables (PostgreSQL) with a row whose text holds ``marker``."""
    engine = open_engine(database_url(Path("."), database))
    try:
        with engine.connect() as conn:
            tables = conn.execute(
                sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            ).scalars()
            return [
                table
                for table in list(tables)
                if conn.execute(
                    sa.text(f'SELECT count(*) FROM "{table}" t WHERE t::text LIKE :m'),
                    {"m": f"%{marker}%"},
                ).scalar_one()
            ]
    finally:
        engine.dispose()


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_a_deletion_killed_midway_resumes_and_leaves_nothing_of_the_subject(
    tmp_path: Path, receiver: Receiver, store: str, request: pytest.FixtureRequest
) -> None:
    path = tmp_path / "headwater.yaml"
    path.write_text(config(receiver.url))
    data = tmp_path / "data"
    database = request.getfixturevalue("pg_database") if store == "postgresql" else None
    live = LiveServer(data_dir=data, config=path, role="single", database=database)
    try:
        live.start(timeout=180)
        person(live, "u2", "anon-u2", MARKER)
        person(live, "u9", "anon-u9", OTHERS)
        wait_for(lambda: str(live.archived()).count(OTHERS) == 5, 60, "the archive")
        wait_for(lambda: str(live.archived()).count(MARKER) == 5, 60, "the archive")
        sync(live, "default")
        sync(live, "lake")
        found = loaded(
            data, "SELECT user_id, count(*) FROM web.order_completed GROUP BY 1 ORDER BY 1"
        )
        assert found == [("u2", 3), ("u9", 3)]
        before = find_marker(data, MARKER)
        assert any("lake/" in f for f in before) and any(".duckdb" in f for f in before)
        assert any("archive/" in f for f in before)
        lake_u9 = [f for f in find_marker(data, OTHERS) if "lake/" in f]

        body = {
            "regulationType": "SUPPRESS_WITH_DELETE",
            "subjectType": "USER_ID",
            "subjectIds": ["u2"],
        }
        regulate_id = api(live, "POST", "/regulations", json=body)["regulateId"]

        def started() -> bool:
            steps = api(live, "GET", f"/regulations/{regulate_id}")["regulation"]["streamStatus"]
            return any(s["status"] != "INITIALIZED" for e in steps for s in e["destinationStatus"])

        wait_for(started, 60, "the deletion to start")
        live.stop(signal.SIGKILL)  # a crash in the middle

        live.start(timeout=180)

        def final() -> dict[str, Any]:
            found: dict[str, Any] = api(live, "GET", f"/regulations/{regulate_id}")["regulation"]
            return found

        wait_for(lambda: final()["overallStatus"] in FINAL, 300, "the deletion to end", interval=1)
        regulation = final()
        steps = {s["name"]: s for e in regulation["streamStatus"] for s in e["destinationStatus"]}
        assert regulation["overallStatus"] == "FAILED"  # the webhook takes no deletions (§10.2)
        assert steps["hook"]["status"] == "FAILED"
        assert "takes no deletion requests" in steps["hook"]["errString"]
        others = {n: s["status"] for n, s in steps.items() if n != "hook"}
        assert set(others.values()) == {"FINISHED"}, others
        assert {"amp", "default", "lake"} <= set(others)

        deletions = [r for r in receiver.requests if r.path == "/api/2/deletions/users"]
        assert [r.json()["user_ids"] for r in deletions][:1] == [["u2"]]
        credentials = base64.b64encode(b"amp-key:amp-secret").decode()
        assert deletions[0].headers["authorization"] == f"Basic {credentials}"

        # u2 stays suppressed: a new event is answered and goes nowhere.
        send(live, "track", userId="u2", event="Order Completed", properties={"marker": LATER})
        send(live, "track", userId="u9", event="After", properties={"marker": OTHERS})
        wait_for(lambda: "After" in str(live.archived()), 60, "u9's new event")
        assert LATER not in str(live.archived())
    finally:
        live.stop()
    assert find_marker(tmp_path, MARKER) == []  # the data directory, and the server's log
    if database is not None:  # the state database: every row of every table, as text
        assert rows_holding(database, MARKER) == []
        assert rows_holding(database, OTHERS)  # the search is honest
    # Nothing of anyone else is lost.
    archived = LiveServer(data_dir=data, config=path, database=database).archived()
    assert sum(OTHERS in str(e) for e in archived) == 6
    found = loaded(data, "SELECT user_id, count(*) FROM web.order_completed GROUP BY 1 ORDER BY 1")
    assert found == [("u9", 3)]
    assert [f for f in find_marker(data, OTHERS) if "lake/" in f] == lake_u9
