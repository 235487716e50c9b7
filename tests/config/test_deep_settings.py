"""Settings nest at most 32 levels, by every door; and export says clearly what it cannot write.

Issue 10: the API took source settings nested 500 deep, and ``headwater export`` then died with
a RecursionError. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, export_config, plan
from headwater.config.model import load_config, parse_config, read_yaml
from headwater.destinations.store import DestinationStore
from headwater.errors import ConfigError, ExportError, InvalidError
from headwater.store import schema
from headwater.store.workspace import MAX_SETTINGS_DEPTH, WorkspaceStore
from headwater.warehouse.store import WarehouseStore


def nested(depth: int) -> dict[str, object]:
    """A settings object ``depth`` levels deep, itself the first level."""
    value: dict[str, object] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


@pytest.fixture
def store(engine: Engine) -> WorkspaceStore:
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    workspace.create_source("web", write_key="WK_web")
    return workspace


def test_every_door_takes_32_levels_and_refuses_33(store: WorkspaceStore) -> None:
    assert MAX_SETTINGS_DEPTH == 32
    store.update_source("web", settings=nested(32))
    for depth in (33, 500, 5000):
        with pytest.raises(InvalidError) as refused:
            store.update_source("web", settings=nested(depth))
        assert refused.value.field == "settings" and "32 levels" in refused.value.message
    destinations = DestinationStore(store)
    with pytest.raises(InvalidError):
        destinations.create(
            "hook", "webhook", "web", settings={"url": "http://127.0.0.1:9/", "headers": nested(40)}
        )
    with pytest.raises(InvalidError):
        WarehouseStore(store).create("wh", "duckdb", options=nested(40))
    # The config file goes through the same check, and names where the problem is.
    text = yaml.safe_dump(
        {
            "workspace": "acme",
            "sources": [{"name": "web", "write_key": "WK_web", "settings": nested(33)}],
        }
    )
    with pytest.raises(ConfigError) as bad_file:
        parse_config(read_yaml(text))
    assert any("sources[0].settings" in p and "32 levels" in p for p in bad_file.value.problems)


def test_a_yaml_file_nested_past_the_parser_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("workspace: acme\nsources: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nests too deeply"):
        load_config(path)


def _store_directly(engine: Engine, table: sa.Table, name: str, column: str, value: object) -> None:
    """What a server from before the depth limit may have stored."""
    with engine.begin() as conn:
        conn.execute(table.update().where(table.c.name == name).values({column: value}))


def test_export_names_each_value_it_cannot_write(
    store: WorkspaceStore, engine: Engine, tmp_path: Path
) -> None:
    DestinationStore(store).create(
        "hook", "webhook", "web", settings={"url": "http://127.0.0.1:9/"}
    )
    WarehouseStore(store).create("wh", "duckdb")
    _store_directly(engine, schema.sources, "web", "settings", nested(500))
    _store_directly(
        engine,
        schema.destinations,
        "hook",
        "settings",
        {"url": "http://127.0.0.1:9/", "extra": nested(100)},
    )
    with pytest.raises(ExportError) as failed:
        export_config(store)
    message = str(failed.value)
    assert "source 'web': settings nest more than 32 levels" in message
    assert "PATCH /api/v1/sources/web" in message
    assert "destination 'hook': settings" in message
    assert "warehouse" not in message

    # Fixed through the store (as PATCH does), the workspace exports and round-trips again.
    store.update_source("web", settings={"region": "eu"})
    DestinationStore(store).update("hook", settings={"url": "http://127.0.0.1:9/"})
    exported = export_config(store)
    path = tmp_path / "headwater.yaml"
    path.write_text(exported)
    assert plan(store, load_config(path)).render() == "No changes."
    apply(store, plan(store, load_config(path)))


def test_the_export_command_fails_with_the_reason_not_a_traceback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    from headwater.store.database import database_url, open_engine
    from headwater.store.migrations import migrate

    engine = open_engine(database_url(data, None))
    migrate(engine)
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    workspace.create_source("web", write_key="WK_web")
    _store_directly(engine, schema.sources, "web", "settings", nested(500))
    engine.dispose()
    result = subprocess.run(
        [sys.executable, "-m", "headwater", "export", "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HEADWATER_DATABASE": ""},
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "source 'web': settings nest more than 32 levels" in result.stderr
    assert result.stdout == ""
    json.dumps(nested(500))  # the value itself is fine JSON: only its depth is refused
