"""headwater.yaml's ``spaces:``: Unify spaces with their sources, Profile API access tokens and
Profiles Sync; apply, export with ``[redacted]`` tokens, apply again: nothing changes."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.cli import main
from headwater.config.apply import apply, export_config, plan
from headwater.config.bootstrap import bootstrap
from headwater.config.model import parse_config, read_yaml
from headwater.config.settings import ServerSettings
from headwater.errors import ConfigError
from headwater.store import schema
from headwater.store.database import database_url, open_engine
from headwater.store.workspace import WorkspaceStore
from headwater.unify.spaces import SpaceStore
from tests.support.clock import Clock

SITE_TOKEN = "site-token-0123456789abcdef"

FILE = """\
workspace: acme
sources:
  - name: web
    write_key: WK_web
  - name: ios
    write_key: WK_ios
warehouses:
  - name: default
    type: duckdb
spaces:
  - name: main
    sources: [web, ios]
    access_tokens:
      - {name: site, token: "${PROFILE_TOKEN}"}
      - {name: marketing_site/production}
    profiles_sync: {warehouse: default}
"""


@pytest.fixture
def store(engine: Engine, clock: Clock) -> WorkspaceStore:
    return WorkspaceStore(engine, clock=clock)


@pytest.fixture(autouse=True)
def profile_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROFILE_TOKEN", SITE_TOKEN)


def run(store: WorkspaceStore, text: str) -> tuple[str, list[str]]:
    """Apply a file: (the plan as shown, the notes shown after it)."""
    changes = plan(store, parse_config(read_yaml(text)))
    return changes.render(), apply(store, changes)


def generated_token(notes: list[str], name: str) -> str:
    [note] = [n for n in notes if f"Access token {name!r}" in n]
    return note.rsplit(": ", 1)[1]


def every_stored_value(engine: Engine) -> str:
    """Every row of every table, as text."""
    with engine.connect() as conn:
        return "\n".join(
            repr(tuple(row))
            for table in schema.metadata.sorted_tables
            for row in conn.execute(sa.select(table))
        )


def test_apply_export_apply_changes_nothing_and_tokens_authenticate(
    store: WorkspaceStore, tmp_path: Path
) -> None:
    shown, notes = run(store, FILE)
    assert "+ space main (sources web, ios; profiles sync to warehouse default)" in shown
    assert "+ space main: access token site (given)" in shown
    assert "access token marketing_site/production (generated, shown once applied)" in shown
    assert SITE_TOKEN not in shown and SITE_TOKEN not in "\n".join(notes)
    generated = generated_token(notes, "marketing_site/production")
    assert generated not in shown

    spaces = SpaceStore(store)
    space = spaces.require("main")
    assert space.id.startswith("spa_") and space.slug == "main"
    assert [s.name for s in spaces.sources("main")] == ["ios", "web"]
    assert space.profiles_sync is not None
    assert (space.profiles_sync.warehouse_name, space.profiles_sync.schema) == ("default", "main")
    # the token from ${PROFILE_TOKEN} and the generated one both open the space, by id or name
    assert spaces.authenticate("main", SITE_TOKEN) == space
    assert spaces.authenticate(space.id, generated) == space
    assert spaces.authenticate("main", SITE_TOKEN + "x") is None
    assert spaces.authenticate("other", SITE_TOKEN) is None

    exported = export_config(store)
    assert SITE_TOKEN not in exported and generated not in exported
    written = read_yaml(exported)["spaces"]
    assert written == [
        {
            "name": "main",
            "sources": ["ios", "web"],
            "access_tokens": [
                {"name": "marketing_site/production", "token": "[redacted]"},
                {"name": "site", "token": "[redacted]"},
            ],
            "profiles_sync": {"warehouse": "default"},
        }
    ]
    version = store.config_version()
    again, notes = run(store, exported)
    assert again == "No changes." and notes == []
    assert run(store, FILE) == ("No changes.", [])  # the file as first written, too
    assert store.config_version() == version
    # the [redacted] apply kept both tokens as they were
    assert spaces.authenticate("main", SITE_TOKEN) == space
    assert spaces.authenticate("main", generated) == space


def test_tokens_are_stored_as_digests_only(store: WorkspaceStore, tmp_path: Path) -> None:
    _, notes = run(store, FILE)
    generated = generated_token(notes, "marketing_site/production")
    stored = every_stored_value(store.engine)
    assert "marketing_site/production" in stored  # the name is kept, in clear
    assert generated not in stored and SITE_TOKEN not in stored
    if store.engine.dialect.name == "sqlite":
        store.engine.dispose()
        files = [p for p in tmp_path.iterdir() if p.name.startswith("state.db")]
        assert files
        for path in files:
            content = path.read_bytes()
            assert generated.encode() not in content and SITE_TOKEN.encode() not in content


def test_a_changed_token_replaces_the_stored_one_and_a_left_out_one_is_revoked(
    store: WorkspaceStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, notes = run(store, FILE)
    generated = generated_token(notes, "marketing_site/production")
    monkeypatch.setenv("PROFILE_TOKEN", "rotated-token-0123456789")
    shown, notes = run(store, FILE.replace("      - {name: marketing_site/production}\n", ""))
    assert shown.splitlines() == [
        "- space main: access token marketing_site/production",
        "- space main: access token site",
        "+ space main: access token site (given)",
    ]
    spaces = SpaceStore(store)
    assert spaces.authenticate("main", "rotated-token-0123456789") is not None
    assert spaces.authenticate("main", SITE_TOKEN) is None  # revoked: no longer opens it
    assert spaces.authenticate("main", generated) is None
    # no `access_tokens:` key: the tokens stay as they are
    without = FILE.split("    access_tokens:")[0] + "    profiles_sync: {warehouse: default}\n"
    assert run(store, without) == ("No changes.", [])
    assert [t.name for t in spaces.access_tokens("main")] == ["site"]
    # `access_tokens: []`: none
    run(store, without.replace("    profiles_sync", "    access_tokens: []\n    profiles_sync"))
    assert spaces.access_tokens("main") == []


def test_redacted_with_nothing_stored_is_refused(store: WorkspaceStore) -> None:
    text = FILE.replace('"${PROFILE_TOKEN}"', '"[redacted]"')
    with pytest.raises(ConfigError) as exc:
        run(store, text)
    assert exc.value.problems == [
        "space 'main': access_tokens[0].token: [redacted] keeps a stored token, but there is no"
        " token named 'site': give the token, or leave `token` out to have one generated"
    ]
    assert SpaceStore(store).list() == []


def test_sources_and_profiles_sync_change_and_spaces_go(store: WorkspaceStore) -> None:
    run(store, FILE)
    spaces = SpaceStore(store)
    slug_schema = FILE.replace("[web, ios]", "[web]").replace(
        "{warehouse: default}", "{warehouse: default, schema: profiles_main}"
    )
    shown, _ = run(store, slug_schema)
    assert shown.splitlines() == [
        "~ space main: sources ios, web → web",
        "~ space main: profiles_sync profiles sync to warehouse default (schema main) → "
        "profiles sync to warehouse default (schema profiles_main)",
    ]
    space = spaces.require("main")
    assert len(space.source_ids) == 1 and space.profiles_sync is not None
    assert space.profiles_sync.schema == "profiles_main"
    assert read_yaml(export_config(store))["spaces"][0]["profiles_sync"] == {
        "warehouse": "default",
        "schema": "profiles_main",
    }
    assert run(store, export_config(store))[0] == "No changes."
    # a source deleted by the file leaves the space; a space left out of the file is deleted
    shown, _ = run(
        store,
        FILE.split("spaces:")[0].replace("  - name: ios\n    write_key: WK_ios\n", "")
        + "spaces: []\n",
    )
    assert shown.splitlines() == ["- source ios", "- space main"]
    assert spaces.list() == []


def test_a_source_in_several_spaces(store: WorkspaceStore) -> None:
    text = FILE + "  - name: dev\n    sources: [web]\n"
    run(store, text)
    spaces = SpaceStore(store)
    web = store.get_source("web")
    assert web is not None
    assert [s.name for s in spaces.spaces_of_source(web.id)] == ["dev", "main"]
    assert run(store, export_config(store))[0] == "No changes."


POSTGRES = "type: postgres\n    settings: {host: 127.0.0.1, database: dw, user: loader}"


def test_a_warehouse_made_again_is_connected_again(store: WorkspaceStore) -> None:
    run(store, FILE)
    shown, _ = run(store, FILE.replace("type: duckdb", POSTGRES))
    assert "- warehouse default" in shown
    assert "~ space main: profiles_sync off → profiles sync to warehouse default (schema main)" in (
        shown
    ), shown


def test_unknown_names_are_clear_errors(store: WorkspaceStore) -> None:
    text = FILE.replace("[web, ios]", "[web, android]").replace(
        "{warehouse: default}", "{warehouse: lake}"
    )
    with pytest.raises(ConfigError) as exc:
        parse_config(read_yaml(text))
    assert exc.value.problems == [
        "spaces[0].sources[1]: no source named 'android'; "
        "spaces[0].profiles_sync.warehouse: no warehouse named 'lake'"
    ]
    # a file without sources: and warehouses: names stored ones, checked when planned
    run(store, FILE)
    only_spaces = "workspace: acme\nspaces:\n" + text.split("spaces:\n")[1]
    with pytest.raises(ConfigError) as exc:
        plan(store, parse_config(read_yaml(only_spaces)))
    assert exc.value.problems == [
        "spaces[0].sources[1]: no source named 'android'",
        "spaces[0].profiles_sync.warehouse: no warehouse named 'lake'",
    ]
    assert (
        plan(
            store,
            parse_config(read_yaml("workspace: acme\nspaces:\n" + FILE.split("spaces:\n")[1])),
        ).render()
        == "No changes."
    )


@pytest.mark.parametrize(
    ("fragment", "replacement", "problem"),
    [
        ("[web, ios]", "[web, web]", "spaces[0]: sources[1]: 'web' is listed twice"),
        (
            '"${PROFILE_TOKEN}"',
            '"${NOT_SET_ANYWHERE}"',
            "the environment variable NOT_SET_ANYWHERE",
        ),
        ('"${PROFILE_TOKEN}"', '"short"', "must be 16 to 200 characters long"),
        ('"${PROFILE_TOKEN}"', '"has:colon-0123456789"', "without spaces or ':'"),
        ("{warehouse: default}", "{warehouse: default, schema: Main}", "profiles_sync.schema"),
        ("{warehouse: default}", "{warehouse: default, mode: x}", "unknown key 'mode'"),
        (
            "    profiles_sync: {warehouse: default}\n",
            "    profiles_sync: {warehouse: default}\n  - name: main\n",
            "spaces[1]: name 'main' is already used by spaces[0]",
        ),
        ("{name: marketing_site/production}", "{name: site}", "access_tokens[1]: the name"),
    ],
)
def test_bad_space_entries_are_named(fragment: str, replacement: str, problem: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_config(read_yaml(FILE.replace(fragment, replacement)))
    assert any(problem in p for p in exc.value.problems), exc.value.problems


def test_first_start_can_name_the_embedded_warehouse(tmp_path: Path) -> None:
    """`headwater serve --config` on an empty data directory: the DuckDB warehouse 'default'
    is made before the file is applied, and a generated token is among the notes, once."""
    text = FILE.replace("warehouses:\n  - name: default\n    type: duckdb\n", "")
    prepared = bootstrap(ServerSettings(data_dir=tmp_path), parse_config(read_yaml(text)))
    [note] = [n for n in prepared.notes if "Access token" in n]
    token = note.rsplit(": ", 1)[1]
    engine = open_engine(database_url(tmp_path, None))
    try:
        spaces = SpaceStore(WorkspaceStore(engine))
        space = spaces.authenticate("main", token)
        assert space is not None and space.profiles_sync is not None
        assert space.profiles_sync.warehouse_name == "default"
        again = bootstrap(ServerSettings(data_dir=tmp_path), parse_config(read_yaml(text)))
        assert "No changes." in again.notes and not [n for n in again.notes if token in n]
    finally:
        engine.dispose()


def test_headwater_apply_prints_a_generated_token_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "headwater.yaml"
    config.write_text(FILE)
    data = str(tmp_path / "data")

    def headwater(*argv: str) -> str:
        with pytest.raises(SystemExit) as exit_:
            main(list(argv))
        assert exit_.value.code == 0
        return capsys.readouterr().out

    out = headwater("apply", str(config), "--data-dir", data)
    [line] = [n for n in out.splitlines() if n.startswith("Access token")]
    token = line.rsplit(": ", 1)[1]
    assert out.count(token) == 1 and SITE_TOKEN not in out
    assert headwater("apply", str(config), "--data-dir", data) == "No changes.\n"
    exported = headwater("export", "--data-dir", data)
    assert token not in exported and SITE_TOKEN not in exported
    engine = open_engine(database_url(tmp_path / "data", None))
    try:
        assert SpaceStore(WorkspaceStore(engine)).authenticate("main", token) is not None
    finally:
        engine.dispose()


def test_a_refused_first_start_leaves_nothing(tmp_path: Path) -> None:
    text = FILE.replace("warehouses:\n  - name: default\n    type: duckdb\n", "").replace(
        '"${PROFILE_TOKEN}"', '"[redacted]"'
    )
    with pytest.raises(ConfigError):
        bootstrap(ServerSettings(data_dir=tmp_path), parse_config(read_yaml(text)))
    engine = open_engine(database_url(tmp_path, None))
    try:
        assert WorkspaceStore(engine).workspace() is None
    finally:
        engine.dispose()
