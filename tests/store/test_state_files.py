"""The state database holds destination secrets: only its owner may read it (issue 10)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from headwater.config.bootstrap import bootstrap
from headwater.config.settings import ServerSettings
from headwater.store import schema
from headwater.store.database import database_url, open_engine, write_transaction
from headwater.store.migrations import migrate
from tests.support.live import ADMIN_TOKEN, BASE_CONFIG, LiveServer


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask, so that only Headwater's own modes protect the files."""
    old = os.umask(0)
    yield
    os.umask(old)


def test_new_data_dir_and_database_files_are_private(tmp_path: Path, open_umask: None) -> None:
    data = tmp_path / "new" / "data"
    engine = open_engine(database_url(data, None))
    try:
        migrate(engine)
        with write_transaction(engine) as conn:
            conn.execute(schema.meta.insert().values(key="probe", value="1"))
        with engine.connect() as conn:  # a reader keeps the -wal and -shm files in place
            conn.execute(sa.select(schema.meta)).all()
            files = {p.name: mode(p) for p in data.iterdir()}
    finally:
        engine.dispose()
    assert mode(data) == 0o700
    assert {"state.db", "state.db-wal", "state.db-shm"} <= set(files)
    assert {name: m for name, m in files.items() if name.startswith("state.db")} == {
        "state.db": 0o600,
        "state.db-wal": 0o600,
        "state.db-shm": 0o600,
    }


def test_existing_files_are_left_alone_but_an_open_one_is_reported(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    os.chmod(data, 0o755)
    database_url(data, None)
    state = data / "state.db"
    os.chmod(state, 0o644)  # as every earlier version created it
    notes = bootstrap(ServerSettings(data_dir=data), None).notes
    assert mode(data) == 0o755 and mode(state) == 0o644  # the operator's choice stands
    [warning] = [n for n in notes if "readable by other users" in n]
    assert "chmod 600" in warning and str(state) in warning
    os.chmod(state, 0o600)
    assert not [n for n in bootstrap(ServerSettings(data_dir=data), None).notes if "readable" in n]


@pytest.mark.live
def test_a_served_data_dir_is_private(tmp_path: Path, open_umask: None) -> None:
    config = tmp_path / "headwater.yaml"
    config.write_text(BASE_CONFIG)
    (tmp_path / "fresh").mkdir()  # for the server's log; the data directory is Headwater's
    live = LiveServer(data_dir=tmp_path / "fresh" / "data", config=config, role="all")
    live.start()
    try:
        response = httpx.post(
            f"{live.url}/api/v1/destinations",
            json={
                "name": "hook",
                "type": "webhook",
                "source": "web",
                "settings": {"url": "http://127.0.0.1:9/", "shared_secret": "s3cret"},
            },
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
        )
        assert response.status_code == 201, response.text
        data = live.data_dir
        assert mode(data) == 0o700
        for name in ("state.db", "state.db-wal", "state.db-shm"):
            assert mode(data / name) == 0o600, name
    finally:
        live.stop()
