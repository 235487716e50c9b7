"""The workspace model: sources, slugs, write keys and their rotation, the config version."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.errors import ConflictError, InvalidError, NotFoundError
from headwater.store import schema
from headwater.store.workspace import FIRST_PAGE, WorkspaceStore, slugify
from tests.support.clock import Clock


@pytest.fixture
def store(engine: Engine, clock: Clock) -> WorkspaceStore:
    store = WorkspaceStore(engine, clock=clock)
    store.ensure_workspace("acme")
    return store


# --- workspace -------------------------------------------------------------------------------


def test_ensure_workspace_creates_then_renames(engine: Engine) -> None:
    store = WorkspaceStore(engine)
    assert store.workspace() is None
    created = store.ensure_workspace("Acme Inc")
    assert created.name == "Acme Inc"
    assert created.slug == "acme_inc"
    renamed = store.ensure_workspace("Acme")
    assert (renamed.id, renamed.slug, renamed.name) == (created.id, "acme_inc", "Acme")
    assert store.workspace() == renamed
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.workspaces)).scalar() == 1


def test_first_source_without_a_workspace_makes_a_default_one(engine: Engine) -> None:
    store = WorkspaceStore(engine)
    source = store.create_source("web")
    workspace = store.workspace()
    assert workspace is not None
    assert workspace.name == "default"
    assert source.workspace_id == workspace.id


# --- sources ---------------------------------------------------------------------------------


def test_create_source_defaults(store: WorkspaceStore, clock: Clock) -> None:
    source = store.create_source("Marketing Site")
    assert re.fullmatch(r"[A-Za-z0-9]{10}", source.id)
    assert source.slug == "marketing_site"
    assert source.enabled is True
    assert source.settings == {}
    assert len(source.write_keys) == 1
    assert re.fullmatch(r"[A-Za-z0-9]{32}", source.write_keys[0])
    assert source.created_at == source.updated_at == int(clock.now)
    workspace = store.workspace()
    assert workspace is not None and source.workspace_id == workspace.id


def test_create_source_with_everything_given(store: WorkspaceStore) -> None:
    source = store.create_source(
        "web", slug="site", write_key="WK_web", enabled=False, settings={"a": [1, 2]}
    )
    assert (source.slug, source.write_keys, source.enabled) == ("site", ("WK_web",), False)
    assert source.settings == {"a": [1, 2]}


def test_ids_and_keys_are_random(store: WorkspaceStore) -> None:
    sources = [store.create_source(f"s{i}") for i in range(20)]
    assert len({s.id for s in sources}) == 20
    assert len({s.write_keys[0] for s in sources}) == 20


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Web", "web"),
        ("iOS App (prod)", "ios_app_prod"),
        ("a--b", "a_b"),
        ("!!!", "source"),
        ("Café 2", "caf_2"),
    ],
)
def test_slugify(name: str, slug: str) -> None:
    assert slugify(name) == slug


def test_derived_slugs_are_made_unique(store: WorkspaceStore) -> None:
    assert store.create_source("Web").slug == "web"
    assert store.create_source("web").slug == "web_2"
    assert store.create_source("WEB").slug == "web_3"


def test_get_source_by_id_or_name(store: WorkspaceStore) -> None:
    source = store.create_source("web")
    assert store.get_source(source.id) == source
    assert store.get_source("web") == source
    assert store.get_source("nope") is None


def test_conflicts(store: WorkspaceStore) -> None:
    store.create_source("web", slug="site", write_key="WK_1")
    with pytest.raises(ConflictError) as name:
        store.create_source("web")
    assert name.value.field == "name"
    with pytest.raises(ConflictError) as slug:
        store.create_source("other", slug="site")
    assert slug.value.field == "slug"
    with pytest.raises(ConflictError) as key:
        store.create_source("other", write_key="WK_1")
    assert key.value.field == "write_key"
    # Nothing of the refused sources was written.
    assert [s.name for s in store.list_sources().sources] == ["web"]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": " web"}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": "ok", "slug": "Bad Slug"}, "slug"),
        ({"name": "ok", "write_key": "has:colon"}, "write_key"),
        ({"name": "ok", "write_key": ""}, "write_key"),
        ({"name": "ok", "settings": {"x": float("nan")}}, "settings"),
    ],
)
def test_invalid_values(store: WorkspaceStore, kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidError) as exc:
        store.create_source(**kwargs)  # type: ignore[arg-type]
    assert exc.value.field == field


def test_update_source(store: WorkspaceStore, clock: Clock) -> None:
    source = store.create_source("web")
    clock.now += 10
    updated = store.update_source("web", name="website", enabled=False, settings={"x": 1})
    assert (updated.id, updated.name, updated.enabled, updated.settings) == (
        source.id,
        "website",
        False,
        {"x": 1},
    )
    assert updated.slug == "web"  # a rename keeps the slug
    assert updated.updated_at == source.created_at + 10
    assert store.update_source(source.id, slug="site").slug == "site"


def test_update_conflicts_and_missing(store: WorkspaceStore) -> None:
    store.create_source("a")
    store.create_source("b")
    with pytest.raises(ConflictError):
        store.update_source("b", name="a")
    with pytest.raises(ConflictError):
        store.update_source("b", slug="a")
    with pytest.raises(NotFoundError):
        store.update_source("c", enabled=False)
    # Renaming to its own name is no change, not a conflict.
    assert store.update_source("a", name="a").name == "a"


def test_delete_source_drops_its_keys(store: WorkspaceStore) -> None:
    source = store.create_source("web", write_key="WK_web")
    store.delete_source("web")
    assert store.get_source(source.id) is None
    assert "WK_web" not in store.write_key_index()
    with pytest.raises(NotFoundError):
        store.delete_source("web")
    # The key is free again.
    assert store.create_source("again", write_key="WK_web").write_keys == ("WK_web",)


# --- pagination ------------------------------------------------------------------------------


def test_list_sources_pages(store: WorkspaceStore) -> None:
    names = [f"source-{i:02d}" for i in range(7)]
    for name in reversed(names):
        store.create_source(name)
    seen: list[str] = []
    cursor: str | None = None
    cursors: list[str | None] = []
    while True:
        cursors.append(cursor)
        page = store.list_sources(cursor=cursor, count=3)
        assert page.total == 7
        seen += [s.name for s in page.sources]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == names
    assert len(cursors) == 3
    # Going back from the third page gives the second page's cursor, then the first page.
    assert store.previous_cursor(cursors[2], 3) == cursors[1]
    assert store.previous_cursor(cursors[1], 3) == FIRST_PAGE
    assert store.previous_cursor(None, 3) is None
    assert [s.name for s in store.list_sources(cursor=FIRST_PAGE, count=3).sources] == names[:3]


def test_list_sources_rejects_bad_cursor_and_count(store: WorkspaceStore) -> None:
    with pytest.raises(InvalidError) as cursor:
        store.list_sources(cursor="not a cursor")
    assert cursor.value.field == "cursor"
    with pytest.raises(InvalidError):
        store.list_sources(count=0)
    with pytest.raises(InvalidError):
        store.list_sources(count=1001)


# --- write keys ------------------------------------------------------------------------------


def test_rotation_keeps_old_key_for_the_grace_period(store: WorkspaceStore, clock: Clock) -> None:
    store.create_source("web", write_key="WK_old")
    new_key, source = store.rotate_write_key("web", grace_seconds=60)
    assert re.fullmatch(r"[A-Za-z0-9]{32}", new_key)
    assert source.write_keys == (new_key, "WK_old")  # the current key first
    index = store.write_key_index()
    assert index["WK_old"].id == index[new_key].id == source.id
    [_, old] = store.write_keys("web")
    assert old.expires_at == int(clock.now) + 60

    clock.now += 59
    assert set(store.write_key_index()) == {new_key, "WK_old"}
    clock.now += 1
    assert set(store.write_key_index()) == {new_key}
    refreshed = store.get_source("web")
    assert refreshed is not None and refreshed.write_keys == (new_key,)


def test_rotation_with_zero_grace_revokes_at_once(store: WorkspaceStore) -> None:
    store.create_source("web", write_key="WK_old")
    new_key, source = store.rotate_write_key("web", 0, new_key="WK_new")
    assert new_key == "WK_new"
    assert source.write_keys == ("WK_new",)
    assert set(store.write_key_index()) == {"WK_new"}


def test_rotating_twice_never_extends_an_old_key(store: WorkspaceStore, clock: Clock) -> None:
    store.create_source("web", write_key="WK_1")
    store.rotate_write_key("web", 60, new_key="WK_2")
    store.rotate_write_key("web", 3600, new_key="WK_3")
    expiry = {k.key: k.expires_at for k in store.write_keys("web")}
    now = int(clock.now)
    assert expiry == {"WK_3": None, "WK_2": now + 3600, "WK_1": now + 60}


def test_revoke_write_key(store: WorkspaceStore) -> None:
    store.create_source("web", write_key="WK_1")
    store.add_write_key("web", "WK_2")
    source = store.revoke_write_key("web", "WK_1")
    assert source.write_keys == ("WK_2",)
    with pytest.raises(NotFoundError):
        store.revoke_write_key("web", "WK_1")
    with pytest.raises(ConflictError):  # the last key stays
        store.revoke_write_key("web", "WK_2")


def test_write_keys_are_unique_across_sources(store: WorkspaceStore) -> None:
    store.create_source("a", write_key="WK_a")
    store.create_source("b")
    with pytest.raises(ConflictError):
        store.add_write_key("b", "WK_a")
    with pytest.raises(ConflictError):
        store.rotate_write_key("b", new_key="WK_a")


def test_expired_key_can_be_given_out_again(store: WorkspaceStore, clock: Clock) -> None:
    store.create_source("a", write_key="WK_x")
    store.rotate_write_key("a", 10)
    store.create_source("b")
    with pytest.raises(ConflictError):
        store.add_write_key("b", "WK_x")
    clock.now += 10
    _, b = store.add_write_key("b", "WK_x")
    assert "WK_x" in b.write_keys
    assert store.write_key_index()["WK_x"].name == "b"


def test_write_key_index_covers_every_active_key(store: WorkspaceStore) -> None:
    a = store.create_source("a", write_key="A1")
    store.add_write_key("a", "A2")
    b = store.create_source("b", write_key="B1", enabled=False)
    index = store.write_key_index()
    assert set(index) == {"A1", "A2", "B1"}
    assert index["A1"] == index["A2"] == store.get_source(a.id)
    assert index["B1"].id == b.id and index["B1"].enabled is False


# --- config version and meta -----------------------------------------------------------------


def test_every_change_bumps_the_config_version(store: WorkspaceStore) -> None:
    versions = [store.config_version()]

    def changed() -> bool:
        versions.append(store.config_version())
        return versions[-1] > versions[-2]

    store.create_source("web", write_key="WK_1")
    assert changed()
    store.update_source("web", enabled=False)
    assert changed()
    store.update_source("web", enabled=False)  # no change, no bump
    assert not changed()
    store.rotate_write_key("web", 60)
    assert changed()
    store.add_write_key("web", "WK_9")
    assert changed()
    store.revoke_write_key("web", "WK_9")
    assert changed()
    store.ensure_workspace("renamed")
    assert changed()
    store.delete_source("web")
    assert changed()


def test_refused_change_does_not_bump(store: WorkspaceStore) -> None:
    store.create_source("web")
    before = store.config_version()
    with pytest.raises(ConflictError):
        store.create_source("web")
    assert store.config_version() == before


def test_meta(store: WorkspaceStore) -> None:
    assert store.get_meta("thing") is None
    store.set_meta("thing", "1")
    store.set_meta("thing", "2")
    assert store.get_meta("thing") == "2"


def test_atomic_rolls_back_everything(store: WorkspaceStore) -> None:
    store.create_source("web")
    before = store.config_version()
    with pytest.raises(ConflictError), store.atomic():
        store.create_source("new")
        store.update_source("web", enabled=False)
        store.create_source("web")
    assert store.get_source("new") is None
    web = store.get_source("web")
    assert web is not None and web.enabled
    assert store.config_version() == before
