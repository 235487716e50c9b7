"""A space's identity settings in the state database: Segment's defaults until set, stored
exactly, config version bumps (none for a no-op), import from another space, the migration
that adds them, and a ``Resolver`` working by what is stored (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater import reasons
from headwater.errors import NotFoundError
from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.store.migrations import migrate
from headwater.store.workspace import WorkspaceStore
from headwater.unify.settings import (
    SUGGESTED_BLOCKED,
    BlockedValue,
    IdentifierSetting,
    IdentitySettings,
)
from headwater.unify.spaces import SpaceStore
from tests.support.clock import Clock
from tests.support.unify import Space

CUSTOM = IdentitySettings(
    identifiers=(
        IdentifierSetting(
            type="user_id",
            limit=1,
            priority=1,
            blocked=(BlockedValue(value="-1"), BlockedValue(value="^[0-]*$", regex=True)),
        ),
        IdentifierSetting(type="email", limit=1, priority=2),
        IdentifierSetting(type="anonymous_id", limit=5, period="weekly"),
        IdentifierSetting(type="group_id", collection="accounts"),
        IdentifierSetting(type="shopify_id", key="shopifyId", limit=1, priority=3),
        IdentifierSetting(type="store_id", collection="accounts", blocked=SUGGESTED_BLOCKED),
    )
)


@pytest.fixture
def spaces(engine: Engine, clock: Clock) -> SpaceStore:
    workspace = WorkspaceStore(engine, clock=clock)
    workspace.ensure_workspace("acme")
    return SpaceStore(workspace)


def _stored(spaces: SpaceStore, name: str) -> object:
    sp = schema.spaces
    with spaces.workspace.reading() as conn:
        return conn.execute(sa.select(sp.c.identity).where(sp.c.name == name)).scalar_one()


def test_a_new_space_has_segments_defaults(spaces: SpaceStore) -> None:
    made = spaces.create("main")
    assert made.identity == IdentitySettings()
    assert spaces.require("main").identity == IdentitySettings()
    assert _stored(spaces, "main") is None
    given = spaces.create("dev", identity=CUSTOM)
    assert given.identity == CUSTOM
    assert spaces.require("dev").identity == CUSTOM


def test_settings_are_stored_exactly_and_bump_once(spaces: SpaceStore) -> None:
    ws = spaces.workspace
    spaces.create("main")
    before = ws.config_version()
    changed = spaces.set_identity("main", CUSTOM)
    assert changed.identity == CUSTOM
    assert spaces.require("main").identity == CUSTOM
    assert [s.identity for s in spaces.list()] == [CUSTOM]
    assert ws.config_version() == before + 1
    spaces.set_identity("main", CUSTOM)  # the same again: nothing to do
    spaces.update("main", identity=CUSTOM)
    assert ws.config_version() == before + 1
    tighter = CUSTOM.with_identifier(IdentifierSetting(type="anonymous_id", limit=2))
    spaces.set_identity("main", tighter)
    assert spaces.require("main").identity == tighter
    assert ws.config_version() == before + 2
    spaces.set_identity("main", IdentitySettings())  # back to the defaults: NULL again
    assert _stored(spaces, "main") is None
    assert ws.config_version() == before + 3
    spaces.set_identity("main", IdentitySettings())
    assert ws.config_version() == before + 3


def test_import_copies_another_spaces_settings(spaces: SpaceStore) -> None:
    prod = spaces.create("prod", identity=CUSTOM)
    spaces.create("dev")
    version = spaces.workspace.config_version()
    assert spaces.import_identity("dev", prod.id).identity == CUSTOM
    assert spaces.workspace.config_version() == version + 1
    spaces.import_identity("dev", "prod")  # already the same
    assert spaces.workspace.config_version() == version + 1
    # a copy, not a link: changing prod later leaves dev as it is
    spaces.set_identity("prod", IdentitySettings())
    assert spaces.require("dev").identity == CUSTOM
    with pytest.raises(NotFoundError) as refused:
        spaces.import_identity("dev", "nope")
    assert refused.value.field == "fromSpace"
    with pytest.raises(NotFoundError):
        spaces.import_identity("nope", "prod")


def test_a_resolver_resolves_by_the_stored_settings(spaces: SpaceStore) -> None:
    """A-UE-9 through the store: a blocked user_id is not promoted; a custom identifier is read by
    its key; a change applies to new events only (A-UE-19)."""
    spaces.create("main", identity=CUSTOM)
    space = Space(spaces.require("main").identity)
    blocked = space.send("identify", userId="-1", anonymousId="a1")
    assert blocked.status == "resolved"
    assert [v.reason for v in blocked.violations] == [reasons.ID_VALUE_BLOCKED]
    assert space.ids(blocked.user) == {"anonymous_id": ["a1"]}
    zeros = space.send("identify", userId="000", anonymousId="a1")
    assert space.ids(zeros.user) == {"anonymous_id": ["a1"]}
    shop = space.send("identify", anonymousId="a1", traits={"shopifyId": "s-1"})
    assert space.ids(shop.user) == {"anonymous_id": ["a1"], "shopify_id": ["s-1"]}
    # With the defaults, -1 would have been promoted.
    default = Space(spaces.create("other").identity)
    promoted = default.send("identify", userId="-1", anonymousId="a1")
    assert default.ids(promoted.user)["user_id"] == ["-1"]
    # The stored settings change: the resolver takes them for the next event on.
    spaces.set_identity("main", IdentitySettings())
    space.resolver.settings = spaces.require("main").identity
    later = space.send("identify", userId="-1", anonymousId="a1", traits={"shopifyId": "s-2"})
    assert space.ids(later.user) == {
        "anonymous_id": ["a1"],
        "shopify_id": ["s-1"],  # kept: nothing stored is revisited
        "user_id": ["-1"],
    }


def test_migration_14_gives_existing_spaces_the_defaults(engine: Engine) -> None:
    spaces = SpaceStore(WorkspaceStore(engine))
    spaces.workspace.ensure_workspace("acme")
    spaces.create("main")
    with write_transaction(engine) as conn:
        conn.execute(sa.text("ALTER TABLE spaces DROP COLUMN identity"))
        conn.execute(
            sa.delete(schema.schema_migrations).where(schema.schema_migrations.c.version == 14)
        )
    assert migrate(engine) == [14]
    assert spaces.require("main").identity == IdentitySettings()
    spaces.set_identity("main", CUSTOM)
    assert spaces.require("main").identity == CUSTOM
    assert migrate(engine) == []
