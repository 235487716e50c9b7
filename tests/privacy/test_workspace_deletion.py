"""A-DS-11: deleting the workspace through the REST API, with the clock moved past the grace."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.privacy.workspace_deletion import (
    GRACE_SECONDS,
    KEPT,
    PURGE_WITHIN_SECONDS,
    STEPS,
    WorkspacePurge,
)
from headwater.store import schema
from headwater.store.admin_token import META_KEY, hash_token
from headwater.store.archive import ArchiveWriter
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock
from tests.support.records import log_record
from tests.support.records import stored_event as event

TOKEN = "test-admin-token"
DAY = 86_400


@pytest.fixture
def archive_dir(tmp_path: Path) -> Path:
    return tmp_path / "archive"


@pytest.fixture
def http(engine: Engine, clock: Clock, archive_dir: Path) -> Iterator[TestClient]:
    WorkspaceStore(engine, clock=clock).ensure_workspace("acme")
    WorkspaceStore(engine).set_meta(META_KEY, hash_token(TOKEN))
    app = create_api(
        engine, admin_token_hash=hash_token(TOKEN), clock=clock, archive_dir=archive_dir
    )
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        assert client.post("/api/v1/sources", json={"name": "web"}).status_code == 201
        created = client.post(
            "/api/v1/destinations",
            json={
                "source": "web",
                "name": "hook",
                "type": "webhook",
                "settings": {"url": "http://127.0.0.1:9/in"},
            },
        )
        assert created.status_code == 201, created.text
        space = client.post("/api/v1/spaces", json={"name": "main"})
        assert space.status_code in (200, 201), space.text
        yield client


def archive_some(archive_dir: Path, source_id: str) -> None:
    ArchiveWriter(archive_dir)(
        [
            (
                0,
                1,
                log_record(
                    source_id, "2023-11-14T10:00:00.000Z", [event("m1", "2023-11-14T10:00:00.000Z")]
                ),
            )
        ]
    )


def source_id(http: TestClient) -> str:
    found: str = http.get("/api/v1/sources/web").json()["data"]["source"]["id"]
    return found


def deletion(http: TestClient) -> dict[str, Any]:
    shown = http.get("/api/v1/workspace/deletion")
    assert shown.status_code == 200, shown.text
    found: dict[str, Any] = shown.json()["data"]["deletion"]
    return found


def request_deletion(http: TestClient) -> dict[str, Any]:
    made = http.post("/api/v1/workspace/deletion", json={"confirm": "acme"})
    assert made.status_code == 202, made.text
    found: dict[str, Any] = made.json()["data"]["deletion"]
    return found


def rows(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).select_from(schema.metadata.tables[table])
            ).scalar_one()
        )


def test_deletion_needs_the_workspace_name(http: TestClient) -> None:
    refused = http.post("/api/v1/workspace/deletion", json={"confirm": "acm"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "confirm"
    assert http.post("/api/v1/workspace/deletion", json={}).status_code == 422
    assert http.post("/api/v1/workspace/deletion", json=["acme"]).status_code == 422
    assert (
        http.post("/api/v1/workspace/deletion", json={"confirm": "acme", "x": 1}).status_code == 422
    )
    assert deletion(http)["status"] is None


def test_a_ds_11_revocable_within_five_days(
    http: TestClient, engine: Engine, clock: Clock, archive_dir: Path
) -> None:
    """A-DS-11: revoked before T+5d, nothing is purged and the workspace works as before."""
    archive_some(archive_dir, source_id(http))
    made = request_deletion(http)
    assert made["status"] == "PENDING" and made["revocable"] is True
    assert made["irrevocableAt"] == "2023-11-19T22:13:20.000Z"  # T+5 days
    assert made["purgeBy"] == "2023-12-19T22:13:20.000Z"  # T+5d+30d
    again = http.post("/api/v1/workspace/deletion", json={"confirm": "acme"})
    assert again.status_code == 409
    purge = WorkspacePurge(engine, archive_dir, clock=clock)

    clock.advance(GRACE_SECONDS - 1)
    assert purge.run_due() is None  # still within the grace: the worker leaves it alone
    assert http.get("/api/v1/sources/web").status_code == 200
    revoked = http.delete("/api/v1/workspace/deletion")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["data"]["deletion"]["status"] == "REVOKED"

    clock.advance(DAY * 40)
    assert purge.run_due() is None
    assert http.get("/api/v1/sources/web").status_code == 200
    assert list(archive_dir.rglob("*.ndjson.gz"))
    assert http.delete("/api/v1/workspace/deletion").status_code == 404


def test_a_ds_11_irreversible_after_five_days_and_purged(
    http: TestClient, engine: Engine, clock: Clock, archive_dir: Path
) -> None:
    """A-DS-11: after T+5d the deletion cannot be revoked; the purge empties every store of the
    workspace, leaves an empty default workspace and keeps the admin token."""
    archive_some(archive_dir, source_id(http))
    token_digest = WorkspaceStore(engine).get_meta(META_KEY)
    assert token_digest == hash_token(TOKEN)
    suppressed = http.post(
        "/api/v1/regulations",
        json={"regulationType": "SUPPRESS_ONLY", "subjectType": "USER_ID", "subjectIds": ["u1"]},
    )
    assert suppressed.status_code == 200, suppressed.text
    plan = http.post("/api/v1/tracking-plans", json={"type": "LIVE", "name": "plan"})
    assert plan.status_code == 201, plan.text
    filled = ("sources", "write_keys", "destinations", "spaces", "regulations", "tracking_plans")
    assert all(rows(engine, table) for table in filled)
    request_deletion(http)
    clock.advance(GRACE_SECONDS)
    refused = http.delete("/api/v1/workspace/deletion")
    assert refused.status_code == 409 and "irreversible" in refused.json()["errors"][0]["message"]
    assert deletion(http)["revocable"] is False

    done = WorkspacePurge(engine, archive_dir, clock=clock).run_due()
    assert done is not None and done.status == "PURGED"
    assert done.finished_at is not None and done.finished_at <= done.purge_by
    assert done.finished_at - done.requested_at <= GRACE_SECONDS + PURGE_WITHIN_SECONDS
    shown = deletion(http)
    assert shown["status"] == "PURGED" and shown["stepsDone"] == list(STEPS)
    for table in schema.metadata.sorted_tables:
        if table.name in KEPT or table.name == "workspaces":
            continue
        assert rows(engine, table.name) == 0, table.name
    assert not list(archive_dir.rglob("*.ndjson.gz"))
    workspace = WorkspaceStore(engine).workspace()
    assert workspace is not None and workspace.name == "default"
    assert rows(engine, "workspaces") == 1
    assert WorkspaceStore(engine).get_meta(META_KEY) == token_digest
    # The API still answers with the same token, on an empty workspace.
    assert http.get("/api/v1/sources").json()["data"]["sources"] == []
    assert http.get("/api/v1/sources/web").status_code == 404


def test_a_ds_11_a_crash_mid_purge_resumes(
    http: TestClient,
    engine: Engine,
    clock: Clock,
    archive_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A crash after the state was emptied and before the archive went: the next pass goes on
    from the archive, and does not repeat the steps recorded as done."""
    archive_some(archive_dir, source_id(http))
    request_deletion(http)
    clock.advance(GRACE_SECONDS)

    waiting = WorkspacePurge(engine, archive_dir, clock=clock, settled=lambda: False)
    first = waiting.run_due()
    assert first is not None and first.status == "PURGING"
    assert first.steps_done == ("intake",)  # the log's consumers have not caught up yet
    assert rows(engine, "write_keys") == 0 and rows(engine, "destinations") == 0
    assert rows(engine, "sources") == 2  # web and the space's Engage source: not yet

    def crash() -> None:
        raise KeyboardInterrupt("the worker dies")

    crashing = WorkspacePurge(engine, archive_dir, clock=clock)
    monkeypatch.setattr(crashing._archive, "remove_all", crash)
    with pytest.raises(KeyboardInterrupt):
        crashing.run_due()
    assert deletion(http)["stepsDone"] == ["intake", "settle", "state"]
    assert rows(engine, "sources") == 0
    assert list(archive_dir.rglob("*.ndjson.gz"))  # the crash left the archive

    resumed = WorkspacePurge(engine, archive_dir, clock=clock).run_due()
    assert resumed is not None and resumed.status == "PURGED"
    assert not list(archive_dir.rglob("*.ndjson.gz"))
    assert WorkspacePurge(engine, archive_dir, clock=clock).run_due() is None


def test_settling_gives_up_after_its_limit(
    http: TestClient, engine: Engine, clock: Clock, archive_dir: Path
) -> None:
    """A consumer that never catches up cannot hold the purge past its deadline."""
    request_deletion(http)
    clock.advance(GRACE_SECONDS)
    purge = WorkspacePurge(engine, archive_dir, clock=clock, settled=lambda: False, settle_limit=60)
    first = purge.run_due()
    assert first is not None and first.status == "PURGING"
    clock.advance(61)
    done = purge.run_due()
    assert done is not None and done.status == "PURGED"
