"""File paths from user input: names, path settings, lake locations, event names and ids stay
inside the data directory (or refuse with a clear error) — every route, hostile input on each."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, plan
from headwater.config.model import parse_config, read_yaml
from headwater.errors import InvalidError, UnsafePathError, WarehouseError
from headwater.store.archive import Archive, ArchiveWriter
from headwater.store.database import database_url, open_engine
from headwater.store.migrations import migrate
from headwater.store.workspace import WorkspaceStore
from headwater.timestamps import format_timestamp
from headwater.warehouse.connect import duckdb_path, lake_seen_ids, lake_target, loader_for
from headwater.warehouse.lake.seen_ids import MemorySeenIds
from headwater.warehouse.lake.targets import LocalLakeTarget
from headwater.warehouse.lake.writer import write_lake
from headwater.warehouse.paths import (
    MAX_SEGMENT_BYTES,
    bounded,
    check_path,
    key_segment,
    name_segment,
    resolve_path,
)
from headwater.warehouse.settings import WarehouseOptions
from headwater.warehouse.store import WarehouseInfo, WarehouseStore
from headwater.warehouse.sync import SUCCESS, WarehouseSync
from tests.api.client import api_with_destination
from tests.api.test_sources_api import assert_error

NOW = datetime(2024, 3, 10, 12, 30, tzinfo=UTC)

# Names that try to leave the directory, or to be something other than one file name.
HOSTILE_NAMES = [
    "a/../../escape2",
    "..",
    ".",
    "../escape",
    "../../../../../../tmp/escape",
    "/etc/escape",
    "a/b",
    "a\\..\\b",
    ".hidden",
    "x" * 300,
    "é" * 200,
    "a\x00b",
    "~" + "0" * 12,
    "name~0123456789ab",
]
HOSTILE_PATHS = [
    "..",
    "../escape.duckdb",
    "a/../../escape.duckdb",
    "a/..",
    "/tmp/../etc/x",
    "./../x",
    "a\x00b",
]


def inside(path: Path, root: Path) -> bool:
    return os.path.realpath(path).startswith(os.path.realpath(root) + os.sep)


def warehouse(
    name: str = "wh", kind: str = "duckdb", settings: dict[str, Any] | None = None, id: str = "wh_1"
) -> WarehouseInfo:
    """A warehouse as stored, even with settings today's checks would refuse (older rows)."""
    return WarehouseInfo(
        id=id,
        workspace_id="ws",
        name=name,
        type=kind,
        enabled=True,
        settings=settings or {},
        options=WarehouseOptions(),
        created_at=0,
        updated_at=0,
    )


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# --- the rules ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "default",
        "Web Analytics",
        "prod (eu)",
        "50% sample",
        "Données",
        "a\\b",
        "x" * 180,
        "a.b-c_d",
    ],
)
def test_names_that_are_safe_file_names_keep_their_file(name: str) -> None:
    assert name_segment(name, prefix="warehouse-", suffix=".duckdb") == (f"warehouse-{name}.duckdb")


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_every_other_name_is_one_bounded_file_name(name: str) -> None:
    segment = name_segment(name, prefix="warehouse-", suffix=".duckdb")
    assert "/" not in segment and "\x00" not in segment
    assert segment.startswith("warehouse-") and segment.endswith(".duckdb")
    assert len(segment.encode()) <= MAX_SEGMENT_BYTES
    assert segment == name_segment(name, prefix="warehouse-", suffix=".duckdb")  # stable
    bare = name_segment(name)
    assert bare not in ("", ".", "..") and not bare.startswith(".") and "/" not in bare


def test_distinct_names_never_share_a_file() -> None:
    names = [*HOSTILE_NAMES, "a_.._.._escape2", "x" * 301, "x" * 299 + "y", "a/b", "a_b", "a%2Fb"]
    crafted = name_segment("a/b")  # a name spelled like the hashed one of "a/b"
    names.append(crafted)
    segments = [name_segment(n, prefix="warehouse-", suffix=".duckdb") for n in names]
    assert len(set(segments)) == len(set(names))


def test_bounded_keeps_short_names_and_cuts_long_ones_with_a_hash() -> None:
    assert bounded("order_completed", 200, mark="__") == "order_completed"
    long_a, long_b = "a" * 300, "a" * 299 + "b"
    cut_a, cut_b = bounded(long_a, 200, mark="__"), bounded(long_b, 200, mark="__")
    assert len(cut_a) == len(cut_b) == 200
    assert cut_a != cut_b and cut_a.startswith("a" * 186 + "__")
    assert bounded(long_a, 200, mark="__") == cut_a


def test_key_segments_encode_what_is_not_path_safe() -> None:
    assert key_segment("SRC_1-a.b") == "SRC_1-a.b"
    assert key_segment("..") == "%2E%2E"
    assert key_segment("a/../b") == "a%2F%2E%2E%2Fb"
    assert len(key_segment("é" * 500)) <= MAX_SEGMENT_BYTES


@pytest.mark.parametrize("text", HOSTILE_PATHS)
def test_path_settings_with_dot_dot_are_refused(text: str, tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError) as raised:
        check_path(text, "path")
    assert "path" in str(raised.value)
    with pytest.raises(UnsafePathError):
        resolve_path(tmp_path, text, "path")


def test_relative_path_settings_resolve_inside_the_data_directory(tmp_path: Path) -> None:
    assert resolve_path(tmp_path, "wh.duckdb", "path") == tmp_path / "wh.duckdb"
    assert resolve_path(tmp_path, "lakes/eu", "location") == tmp_path / "lakes/eu"
    assert resolve_path(tmp_path, "a..b/c", "path") == tmp_path / "a..b/c"  # not a ".." segment
    # Absolute paths are the operator's choice (another disk) and are kept.
    assert resolve_path(tmp_path, "/mnt/fast/wh.duckdb", "path") == Path("/mnt/fast/wh.duckdb")


# --- every route from user input to a file ------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_route_warehouse_name_to_duckdb_file(name: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert inside(duckdb_path(warehouse(name), data), data)


@pytest.mark.parametrize("text", HOSTILE_PATHS)
def test_route_duckdb_path_setting(text: str, tmp_path: Path) -> None:
    stored = warehouse(settings={"path": text})  # stored before paths were checked
    with pytest.raises(WarehouseError, match=r"settings\.path"):
        loader_for(stored, tmp_path / "data")
    assert not (tmp_path / "escape.duckdb").exists()


@pytest.mark.parametrize("text", HOSTILE_PATHS)
def test_route_lake_location_setting(text: str, tmp_path: Path) -> None:
    with pytest.raises(WarehouseError, match=r"settings\.location"):
        lake_target(warehouse(kind="data-lake", settings={"location": text}), tmp_path / "data")


def test_route_lake_location_inside_the_data_directory(tmp_path: Path) -> None:
    target = lake_target(
        warehouse(kind="data-lake", settings={"location": "lake"}), tmp_path / "data"
    )
    assert isinstance(target, LocalLakeTarget) and target.root == tmp_path / "data" / "lake"


@pytest.mark.parametrize("id", HOSTILE_NAMES[:8])
def test_route_warehouse_id_to_seen_ids_file(id: str, tmp_path: Path) -> None:
    data = tmp_path / "data"
    seen = lake_seen_ids(warehouse(kind="data-lake", id=id), data)
    seen.close()
    assert files_under(tmp_path) and all(inside(p, data) for p in files_under(tmp_path))


@pytest.mark.parametrize("text", HOSTILE_NAMES[:8])
def test_route_event_names_and_source_ids_to_lake_files(text: str, tmp_path: Path) -> None:
    lake = tmp_path / "data" / "lake"
    event = {
        "type": "track",
        "event": text,
        "messageId": "m1",
        "userId": "u1",
        "receivedAt": "2024-03-10T11:00:00.000Z",
        "properties": {text: 1},
    }
    run = write_lake(
        [event, {**event, "type": "identify", "messageId": "m2"}],
        source_id=text,
        target=LocalLakeTarget(lake),
        run_id="1",
        now=NOW,
        seen=MemorySeenIds(),
    )
    assert run.status == "finished", run.error
    assert files_under(tmp_path) and all(inside(p, lake) for p in files_under(tmp_path))


# --- through the REST API, apply and a real sync ------------------------------------------------


@pytest.fixture
def client(engine: Engine) -> Iterator[TestClient]:
    with api_with_destination(
        engine, {"name": "hook", "type": "webhook", "settings": {"url": "http://127.0.0.1:9/"}}
    ) as http:
        yield http


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("duckdb", "path", "../../escape.duckdb"),
        ("duckdb", "path", "a/../../../x.duckdb"),
        ("data-lake", "location", "../lake"),
        ("data-lake", "location", "s3://bucket/a/../../b"),
    ],
)
def test_the_api_refuses_paths_that_leave_the_data_directory(
    client: TestClient, kind: str, field: str, value: str
) -> None:
    response = client.post(
        "/api/v1/warehouses", json={"name": "wh", "type": kind, "settings": {field: value}}
    )
    assert_error(response, 422, "validation", f"settings.{field}")
    assert "'..'" in response.json()["errors"][0]["message"]
    good = {"path": "wh.duckdb", "location": "lake"}[field]
    assert (
        client.post(
            "/api/v1/warehouses", json={"name": "wh", "type": kind, "settings": {field: good}}
        ).status_code
        == 201
    )
    changed = client.patch("/api/v1/warehouses/wh", json={"settings": {field: value}})
    assert_error(changed, 422, "validation", f"settings.{field}")


def test_a_hostile_warehouse_name_syncs_inside_the_data_directory(
    client: TestClient, engine: Engine, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    assert (
        client.post(
            "/api/v1/warehouses", json={"name": "a/../../escape2", "type": "duckdb"}
        ).status_code
        == 201
    )
    workspace = WorkspaceStore(engine)
    source = workspace.get_source("web")
    assert source is not None
    when = format_timestamp(NOW - timedelta(hours=1))
    ArchiveWriter(data / "archive")(
        [
            (
                0,
                1,
                msgspec.json.encode(
                    {
                        "v": 1,
                        "workspace_id": "ws",
                        "source_id": source.id,
                        "received_at": when,
                        "duplicates": 0,
                        "dropped": [],
                        "events": [
                            {
                                "type": "track",
                                "event": "X",
                                "userId": "u1",
                                "messageId": "m1",
                                "timestamp": when,
                                "receivedAt": when,
                            }
                        ],
                    }
                ),
            )
        ]
    )
    warehouses = WarehouseStore(workspace)
    result = WarehouseSync(warehouses, Archive(data / "archive"), data, clock=NOW.timestamp).run(
        warehouses.require("a/../../escape2")
    )
    assert result.status == SUCCESS, result
    # The SQLite state database of the ``engine`` fixture lives beside ``data``; nothing else.
    outside = {
        p
        for p in files_under(tmp_path)
        if not inside(p, data) and not p.name.startswith("state.db")
    }
    assert outside == set()
    assert (data / name_segment("a/../../escape2", prefix="warehouse-", suffix=".duckdb")).is_file()


def test_apply_refuses_paths_that_leave_the_data_directory(tmp_path: Path) -> None:
    engine = open_engine(database_url(tmp_path, None))
    migrate(engine)
    store = WorkspaceStore(engine)
    config = parse_config(
        read_yaml(
            "workspace: acme\nwarehouses:\n"
            "  - {name: wh, type: duckdb, settings: {path: ../../escape.duckdb}}\n"
        )
    )
    with pytest.raises(InvalidError, match=r"'\.\.'") as raised:
        apply(store, plan(store, config))
    assert raised.value.field == "settings.path"
    engine.dispose()


def test_a_name_with_a_slash_keeps_the_file_it_had(tmp_path: Path) -> None:
    """Before names were made file names, "team/eu" loaded into warehouse-team/eu.duckdb."""
    old = tmp_path / "warehouse-team" / "eu.duckdb"
    old.parent.mkdir()
    old.write_bytes(b"")
    assert duckdb_path(warehouse("team/eu"), tmp_path) == old
    fresh = duckdb_path(warehouse("team/us"), tmp_path)
    assert fresh.parent == tmp_path and fresh.name.startswith("warehouse-team_us~")
    # A name whose old path went through ".." never gets it back.
    (tmp_path / "warehouse-x").mkdir()
    (tmp_path / "y.duckdb").write_bytes(b"")
    assert duckdb_path(warehouse("x/../y"), tmp_path).parent == tmp_path
    assert duckdb_path(warehouse("x/../y"), tmp_path).name.startswith("warehouse-x_.._y~")
