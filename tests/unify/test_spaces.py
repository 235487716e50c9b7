"""The space store: config version bumps, what deleting a source or a warehouse does to a
space, and ``authenticate``, the Profile API's token check (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.engine import Engine

from headwater.errors import InvalidError
from headwater.store.workspace import WorkspaceStore
from headwater.unify.spaces import SpaceStore, check_access_token
from headwater.warehouse.store import WarehouseStore
from tests.support.clock import Clock

GIVEN = "given-token-0123456789"


@pytest.fixture
def spaces(engine: Engine, clock: Clock) -> SpaceStore:
    workspace = WorkspaceStore(engine, clock=clock)
    workspace.ensure_workspace("acme")
    workspace.create_source("web")
    workspace.create_source("ios")
    WarehouseStore(workspace).create("default", "duckdb")
    return SpaceStore(workspace)


def test_every_change_bumps_the_config_version(spaces: SpaceStore) -> None:
    ws = spaces.workspace
    steps: list[Callable[[], object]] = [
        lambda: spaces.create("main"),
        lambda: spaces.connect_source("main", "web"),
        lambda: spaces.update("main", profiles_sync=("default", None)),
        lambda: spaces.create_access_token("main", "site", GIVEN),
        lambda: spaces.revoke_access_token("main", "site"),
        lambda: spaces.disconnect_source("main", "web"),
        lambda: spaces.update("main", name="Main"),
        lambda: spaces.delete("Main"),
    ]
    for step in steps:
        before = ws.config_version()
        step()
        assert ws.config_version() > before  # creating a space also makes its Engage source
    spaces.create("main", sources=["web"])
    before = ws.config_version()
    spaces.update("main", sources=["web"], profiles_sync=None)  # nothing to change
    spaces.connect_source("main", "web")
    assert ws.config_version() == before


def test_deleting_a_source_or_warehouse_updates_the_spaces(spaces: SpaceStore) -> None:
    spaces.create("main", sources=["web", "ios"], profiles_sync=("default", "profiles"))
    spaces.create("dev", sources=["web"], profiles_sync=("default", None))
    spaces.workspace.delete_source("web")
    ios = spaces.workspace.get_source("ios")
    assert ios is not None
    assert spaces.require("main").source_ids == (ios.id,)
    assert spaces.require("dev").source_ids == ()
    sync = spaces.require("dev").profiles_sync
    assert sync is not None and sync.schema == "dev"
    WarehouseStore(spaces.workspace).delete("default")
    assert spaces.require("main").profiles_sync is None
    assert spaces.require("dev").profiles_sync is None


def test_authenticate(spaces: SpaceStore) -> None:
    main = spaces.create("main")
    other = spaces.create("other")
    spaces.create_access_token("main", "site", GIVEN)
    generated, _ = spaces.create_access_token("other", "site")
    assert spaces.authenticate("main", GIVEN) == main
    assert spaces.authenticate(main.id, GIVEN) == main
    assert spaces.authenticate(other.id, generated) == other
    # a token opens its own space only
    assert spaces.authenticate("other", GIVEN) is None
    assert spaces.authenticate("main", generated) is None
    for space, token in [
        ("main", ""),
        ("main", GIVEN[:-1]),
        ("main", GIVEN.upper()),
        ("main", "\ud800"),
        ("main\x00", GIVEN),
        ("\ud800", GIVEN),
        ("nope", GIVEN),
        ("", GIVEN),
    ]:
        assert spaces.authenticate(space, token) is None, (space, token)


@pytest.mark.parametrize(
    "token", ["short", "with space 0123456789", "colon:0123456789abc", "é" * 20]
)
def test_a_given_token_must_fit_basic_auth(token: str) -> None:
    with pytest.raises(InvalidError):
        check_access_token(token)
