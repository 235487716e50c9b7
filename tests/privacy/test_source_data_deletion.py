"""§11: deleting a source's data for whole days removes exactly those days of its archive."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.store.admin_token import hash_token
from headwater.store.archive import ArchiveWriter
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock
from tests.support.records import log_record
from tests.support.records import stored_event as event

TOKEN = "test-admin-token"
DAYS = ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    return tmp_path / "archive"


@pytest.fixture
def http(engine: Engine, clock: Clock, archive_dir: Path) -> Iterator[TestClient]:
    WorkspaceStore(engine, clock=clock).ensure_workspace("acme")
    app = create_api(
        engine, admin_token_hash=hash_token(TOKEN), clock=clock, archive_dir=archive_dir
    )
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for name in ("web", "app"):
            assert client.post("/api/v1/sources", json={"name": name}).status_code == 201
        yield client


def source_id(http: TestClient, name: str) -> str:
    found: str = http.get(f"/api/v1/sources/{name}").json()["data"]["source"]["id"]
    return found


def archive(archive_dir: Path, source: str, days: list[str]) -> None:
    records = []
    for offset, day in enumerate(days, start=1):
        for hour in ("00", "23"):
            at = f"{day}T{hour}:30:00.000Z"
            records.append((0, offset, log_record(source, at, [event(f"{day}-{hour}", at)])))
    ArchiveWriter(archive_dir)(records)


def days_of(archive_dir: Path, source: str) -> list[str]:
    return sorted({p.parent.name for p in (archive_dir / source).glob("*/*.ndjson.gz")})


def test_removes_exactly_the_days_asked(http: TestClient, archive_dir: Path) -> None:
    web, app = source_id(http, "web"), source_id(http, "app")
    archive(archive_dir, web, DAYS)
    archive(archive_dir, app, DAYS)
    done = http.post(
        "/api/v1/sources/web/data-deletion", json={"from": "2026-01-02", "to": "2026-01-03"}
    )
    assert done.status_code == 200, done.text
    run = done.json()["data"]["deletion"]
    assert run["from"] == "2026-01-02" and run["to"] == "2026-01-03"
    assert run["filesRemoved"] == 4 and run["sourceId"] == web
    assert days_of(archive_dir, web) == ["2026-01-01", "2026-01-04"]
    assert days_of(archive_dir, app) == DAYS  # another source's same days stay
    listed = http.get(f"/api/v1/sources/{web}/data-deletion").json()["data"]["deletions"]
    assert [r["id"] for r in listed] == [run["id"]]
    assert http.get("/api/v1/sources/app/data-deletion").json()["data"]["deletions"] == []

    again = http.post(
        "/api/v1/sources/web/data-deletion", json={"from": "2026-01-01", "to": "2026-01-01"}
    )
    assert again.json()["data"]["deletion"]["filesRemoved"] == 2
    assert days_of(archive_dir, web) == ["2026-01-04"]


@pytest.mark.parametrize(
    "body",
    [
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-03"},  # a time: whole days only
        {"from": "2026-01-02", "to": "2026-01-03T12:00"},
        {"from": "2026-01-03", "to": "2026-01-02"},  # backwards
        {"from": "2026-02-30", "to": "2026-03-01"},  # no such day
        {"from": 20260101, "to": "2026-01-02"},
        {"to": "2026-01-02"},
        {"from": "2026-01-01", "to": "2026-01-02", "source": "web"},
        ["2026-01-01", "2026-01-02"],
    ],
)
def test_refuses_anything_but_whole_days(http: TestClient, archive_dir: Path, body: object) -> None:
    web = source_id(http, "web")
    archive(archive_dir, web, DAYS)
    refused = http.post("/api/v1/sources/web/data-deletion", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["message"]
    assert days_of(archive_dir, web) == DAYS


def test_unknown_source_is_404(http: TestClient) -> None:
    missing = http.post(
        "/api/v1/sources/nope/data-deletion", json={"from": "2026-01-01", "to": "2026-01-01"}
    )
    assert missing.status_code == 404
    assert http.get("/api/v1/sources/nope/data-deletion").status_code == 404
