"""A-DS-10: the workspace's data retention, in headwater.yaml and the REST API, purges the
archive and bounds replay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.api.app import create_api
from headwater.config.apply import apply, export_config, plan
from headwater.config.model import parse_config, read_yaml
from headwater.config.settings import ServerSettings
from headwater.errors import ConfigError
from headwater.server import Server
from headwater.store.admin_token import hash_token
from headwater.store.archive import Archive, ArchiveWriter
from headwater.store.retention import DataRetention
from headwater.store.workspace import WorkspaceStore
from tests.support.records import log_record, stored_event

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)


def stamp(days_ago: int) -> str:
    return (NOW - timedelta(days=days_ago)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def archive_events(archive_dir: Path, source_id: str, *days_ago: int) -> None:
    writer = ArchiveWriter(archive_dir)
    for n, days in enumerate(days_ago):
        at = stamp(days)
        writer([(0, n, log_record(source_id, at, [stored_event(f"m{days}", at)]))])


def archived(archive_dir: Path, source_id: str) -> list[str]:
    window = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))
    return [e["messageId"] for e in Archive(archive_dir).read(source_id, *window)]


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    WorkspaceStore(engine).ensure_workspace("acme")
    app = create_api(
        engine,
        admin_token_hash=hash_token(TOKEN),
        archive_dir=tmp_path / "archive",
        archive_retention_days=90,
        clock=lambda: NOW.timestamp(),
    )
    with TestClient(app, headers=AUTH) as http:
        yield http


def retention(http: TestClient) -> dict[str, Any]:
    response = http.get("/api/v1/workspace/data-retention")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()["data"]["dataRetention"]
    return found


def test_the_api_sets_one_of_segments_options(client: TestClient) -> None:
    assert retention(client) == {
        "retention": 90,
        "source": "server",
        "options": [14, 30, 90, 180, 365, "unlimited"],
    }
    for value in (14, 30, 90, 180, 365, "unlimited", 30):
        response = client.put("/api/v1/workspace/data-retention", json={"retention": value})
        assert response.status_code == 200, response.text
        assert response.json()["data"]["dataRetention"]["retention"] == value
    assert retention(client)["source"] == "workspace"
    for bad in (7, 0, -1, 31, "30", "forever", None, True, 30.0):
        response = client.put("/api/v1/workspace/data-retention", json={"retention": bad})
        assert response.status_code == 422, (bad, response.text)
    assert client.put("/api/v1/workspace/data-retention", json={}).status_code == 422
    assert retention(client)["retention"] == 30


def test_ads10_replay_window_limited_to_the_retention(client: TestClient, tmp_path: Path) -> None:
    """A-DS-10: retention 30 days → a replay from further back is refused, saying why."""
    assert client.post("/api/v1/sources", json={"name": "web"}).status_code == 201
    created = client.post(
        "/api/v1/destinations",
        json={
            "source": "web",
            "type": "webhook",
            "name": "hook",
            "enabled": False,
            "settings": {"url": "http://127.0.0.1:9/hook"},
        },
    )
    assert created.status_code == 201, created.text
    source_id = created.json()["data"]["destination"]["sourceId"]
    archive_events(tmp_path / "archive", source_id, 10)
    client.put("/api/v1/workspace/data-retention", json={"retention": 30})

    def replay(days_ago: int) -> Any:
        body = {"start": stamp(days_ago), "end": NOW.isoformat()}
        return client.post("/api/v1/destinations/hook/replay", json=body)

    refused = replay(31)
    assert refused.status_code == 422, refused.text
    assert "data retention" in refused.text and stamp(30)[:10] in refused.text
    accepted = replay(29)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["data"]["read"] == 1

    client.put("/api/v1/workspace/data-retention", json={"retention": "unlimited"})
    assert replay(400).status_code == 200


def test_ads10_maintenance_purges_past_the_workspaces_retention(tmp_path: Path) -> None:
    """A-DS-10: retention 30 days → archived events older than 30 days are purged."""
    settings = ServerSettings(data_dir=tmp_path / "data", archive_retention_days=365)
    server = Server(settings=settings, admin_token_hash="x")
    try:
        archive_events(settings.archive_dir, "src_a", 40, 20, 1)
        server.maintain()  # the server's 365 days
        assert archived(settings.archive_dir, "src_a") == ["m40", "m20", "m1"]

        retention = DataRetention(WorkspaceStore(server.engine), 365)
        retention.set(30)
        server.maintain()
        assert archived(settings.archive_dir, "src_a") == ["m20", "m1"]

        retention.set(None)  # unlimited: nothing goes, whatever the server's default
        archive_events(settings.archive_dir, "src_a", 400)
        server.maintain()
        assert archived(settings.archive_dir, "src_a") == ["m400", "m20", "m1"]
    finally:
        server.engine.dispose()


def test_headwater_yaml_sets_and_exports_it(engine: Engine) -> None:
    store = WorkspaceStore(engine)
    config = parse_config(read_yaml("workspace: acme\ndata_retention: 180\n"))
    changes = plan(store, config)
    assert "data retention: server default → 180" in changes.render()
    apply(store, changes)
    assert DataRetention(store, 90).days() == 180
    assert "data_retention: 180" in export_config(store)
    assert not plan(store, config).changes  # applied: nothing left to change

    apply(
        store, plan(store, parse_config(read_yaml("workspace: acme\ndata_retention: unlimited\n")))
    )
    assert DataRetention(store, 90).days() is None
    assert "data_retention: unlimited" in export_config(store)
    apply(store, plan(store, parse_config(read_yaml("workspace: acme\n"))))  # absent: kept
    assert DataRetention(store, 90).days() is None

    with pytest.raises(ConfigError) as refused:
        parse_config(read_yaml("workspace: acme\ndata_retention: 7\n"))
    assert "data_retention" in str(refused.value.problems)
