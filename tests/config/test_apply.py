"""headwater.yaml: validation messages, plans, apply, export round trips."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, export_config, plan, server_settings_overrides
from headwater.config.model import ConfigFile, load_config, parse_config, read_yaml
from headwater.config.settings import ServerSettings
from headwater.errors import ConfigError, ConflictError
from headwater.store.database import database_url, open_engine
from headwater.store.migrations import migrate
from headwater.store.workspace import WorkspaceStore
from tests.support.clock import Clock

BASE = """\
workspace: acme
sources:
  - name: web
    write_key: WK_web
  - name: server
    write_keys: [WK_a, WK_b]
    enabled: false
    settings: {region: eu}
server:
  public_url: https://cdp.example.com
  durability: full
  rate_limit_events_per_second: null
"""


@pytest.fixture
def store(engine: Engine, clock: Clock) -> WorkspaceStore:
    return WorkspaceStore(engine, clock=clock)


def config(text: str) -> ConfigFile:
    return parse_config(read_yaml(text))


def apply_text(store: WorkspaceStore, text: str) -> str:
    changes = plan(store, config(text))
    apply(store, changes)
    return changes.render()


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        config(text)
    return exc.value.problems


# --- loading and validation ------------------------------------------------------------------


def test_load_config_from_file(tmp_path: Path) -> None:
    path = tmp_path / "headwater.yaml"
    path.write_text(BASE)
    loaded = load_config(path)
    assert loaded.workspace == "acme"
    assert loaded.sources is not None
    assert [s.name for s in loaded.sources] == ["web", "server"]
    assert [k.key for k in loaded.sources[1].keys or ()] == ["WK_a", "WK_b"]


def test_unknown_top_level_key_is_named(tmp_path: Path) -> None:
    path = tmp_path / "headwater.yaml"
    path.write_text("workspace: acme\nsources: []\ndestination: []\n")
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    [problem] = exc.value.problems
    assert problem.startswith("destination: unknown key 'destination'")
    assert "workspace, sources, destinations, warehouses, tracking_plans, server" in problem
    assert str(path) in str(exc.value)


def test_unknown_nested_key_names_its_path() -> None:
    [problem] = problems("workspace: a\nsources:\n  - name: web\n    writekey: x\n")
    assert problem.startswith("sources[0].writekey: unknown key 'writekey'")
    assert "write_key" in problem


def test_missing_field_names_its_path() -> None:
    assert problems("workspace: a\nsources:\n  - name: web\n  - enabled: true\n") == [
        "sources[1].name: field required"
    ]
    assert problems("sources: []\n") == ["workspace: field required"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("workspace: a\nsources:\n  - {name: web, enabled: maybe}\n", "sources[0].enabled:"),
        ("workspace: a\nsources:\n  - {name: web, slug: Bad Slug}\n", "sources[0].slug:"),
        ("workspace: a\nsources:\n  - {name: web, write_key: 'a:b'}\n", "sources[0].write_key:"),
        (
            "workspace: a\nsources:\n  - {name: web, write_key: a, write_keys: [b]}\n",
            "give write_key or write_keys, not both",
        ),
        ("workspace: a\nsources:\n  - {name: web, write_keys: []}\n", "must not be empty"),
        (
            "workspace: a\nsources:\n  - {name: web, write_keys: [{key: a, when: 1}]}\n",
            "sources[0].write_keys[0].when: unknown key",
        ),
        (
            "workspace: a\nsources:\n  - {name: web}\n  - {name: web}\n",
            "name 'web' is already used by sources[0]",
        ),
        (
            "workspace: a\nsources:\n  - {name: a, write_key: k}\n  - {name: b, write_key: k}\n",
            "write key 'k' is already used by sources[0]",
        ),
        ("workspace: a\nsources:\n", "write `sources: []`"),
        ("workspace: a\nsources: []\nserver: {durability: sometimes}\n", "server.durability:"),
        ("workspace: a\nsources: []\nserver: {port: 0}\n", "server.port:"),
    ],
)
def test_invalid_files(text: str, expected: str) -> None:
    assert any(expected in p for p in problems(text)), problems(text)


def test_not_a_mapping_or_not_yaml(tmp_path: Path) -> None:
    path = tmp_path / "headwater.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
    path.write_text("workspace: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    path.write_text("")
    with pytest.raises(ConfigError, match="empty"):
        load_config(path)


def test_yes_no_on_off_are_strings(tmp_path: Path) -> None:
    # YAML 1.1 reads `off` as false; a source called "off" must stay a string.
    path = tmp_path / "headwater.yaml"
    path.write_text("workspace: no\nsources:\n  - {name: off, enabled: false}\n  - {name: yes}\n")
    loaded = load_config(path)
    assert loaded.workspace == "no"
    assert [(s.name, s.enabled) for s in loaded.sources or ()] == [("off", False), ("yes", True)]
    assert problems("workspace: a\nsources:\n  - {name: web, enabled: on}\n") == [
        "sources[0].enabled: input should be a valid boolean"
    ]


def test_server_settings_overrides() -> None:
    overrides = server_settings_overrides(config(BASE))
    assert overrides == {
        "public_url": "https://cdp.example.com",
        "durability": "full",
        "rate_limit_events_per_second": None,
    }
    settings = replace(ServerSettings(), **overrides)
    assert settings.base_url == "https://cdp.example.com"
    assert settings.durability == "full"
    assert server_settings_overrides(config("workspace: a\n")) == {}


def test_request_redirects_are_server_settings() -> None:
    text = 'workspace: a\nserver:\n  request_redirects: {"https://track.customer.io": "http://127.0.0.1:9000"}\n'
    overrides = server_settings_overrides(config(text))
    assert replace(ServerSettings(), **overrides).request_redirects == {
        "https://track.customer.io": "http://127.0.0.1:9000"
    }
    [problem] = problems(
        'workspace: a\nserver:\n  request_redirects: {"track.customer.io": "http://x:1"}\n'
    )
    assert problem.startswith("server.request_redirects")
    assert "'track.customer.io' is not an http(s) URL prefix" in problem


# --- plan and apply --------------------------------------------------------------------------


def test_first_apply_then_no_changes(store: WorkspaceStore) -> None:
    rendered = apply_text(store, BASE)
    assert rendered.splitlines() == [
        "+ workspace acme",
        "+ source web (write key WK_web)",
        '+ source server (write keys WK_a, WK_b; disabled; settings {"region": "eu"})',
    ]
    server = store.get_source("server")
    assert server is not None
    assert set(server.write_keys) == {"WK_a", "WK_b"}
    assert (server.enabled, server.settings, server.slug) == (False, {"region": "eu"}, "server")
    version = store.config_version()
    assert apply_text(store, BASE) == "No changes."
    assert store.config_version() == version


def test_dry_run_plan_changes_nothing(store: WorkspaceStore) -> None:
    apply_text(store, BASE)
    version = store.config_version()
    edited = BASE.replace("    enabled: false\n", "").replace("[WK_a, WK_b]", "[WK_b, WK_c]")
    edited = edited.replace("  - name: web\n    write_key: WK_web\n", "")
    edited = edited.replace("workspace: acme", "workspace: Acme Inc")
    changes = plan(store, config(edited))
    assert changes.render().splitlines() == [
        "~ workspace: acme → Acme Inc",
        "- source web",
        "~ source server: enabled false → true",
        "- source server: write key WK_a",
        "+ source server: write key WK_c",
    ]
    assert store.config_version() == version  # planning only reads
    apply(store, changes)
    assert plan(store, config(edited)).render() == "No changes."
    assert store.get_source("web") is None


def test_source_without_keys_keeps_its_keys_or_gets_one(store: WorkspaceStore) -> None:
    apply_text(store, "workspace: a\nsources:\n  - name: web\n    write_key: WK_web\n")
    rendered = apply_text(store, "workspace: a\nsources:\n  - name: web\n  - name: app\n")
    assert rendered == "+ source app (write key generated)"
    web, app = store.get_source("web"), store.get_source("app")
    assert web is not None and web.write_keys == ("WK_web",)
    assert app is not None and len(app.write_keys[0]) == 32
    assert apply_text(store, "workspace: a\nsources:\n  - name: web\n  - name: app\n") == (
        "No changes."
    )


def test_settings_and_slug_changes(store: WorkspaceStore) -> None:
    apply_text(store, "workspace: a\nsources:\n  - {name: web, settings: {a: 1}}\n")
    rendered = apply_text(
        store, "workspace: a\nsources:\n  - {name: web, slug: site, settings: {a: 2}}\n"
    )
    assert rendered.splitlines() == [
        "~ source web: slug web → site",
        '~ source web: settings {"a": 1} → {"a": 2}',
    ]
    # Leaving settings out clears them: the file is the whole truth.
    rendered = apply_text(store, "workspace: a\nsources:\n  - {name: web, slug: site}\n")
    assert rendered == '~ source web: settings {"a": 2} → {}'


def test_absent_sources_section_leaves_sources_alone(store: WorkspaceStore) -> None:
    apply_text(store, BASE)
    assert apply_text(store, "workspace: acme\n") == "No changes."
    assert len(store.list_sources().sources) == 2
    assert apply_text(store, "workspace: acme\nsources: []\n").splitlines() == [
        "- source server",
        "- source web",
    ]


def test_rename_keeps_the_source(store: WorkspaceStore) -> None:
    apply_text(store, BASE)
    web = store.get_source("web")
    assert web is not None
    # Matched by its write key: a rename, not a delete and a create.
    renamed = BASE.replace("name: web", "name: website")
    assert apply_text(store, renamed) == "~ source website: name web → website"
    website = store.get_source("website")
    assert website is not None
    assert (website.id, website.slug) == (web.id, "web")
    # Matched by an explicit slug.
    by_slug = renamed.replace("name: website\n    write_key: WK_web", "name: site\n    slug: web")
    assert apply_text(store, by_slug) == "~ source site: name website → site"
    site = store.get_source("site")
    assert site is not None and site.id == web.id


def test_write_key_moves_between_sources(store: WorkspaceStore) -> None:
    apply_text(store, BASE)
    moved = BASE.replace("[WK_a, WK_b]", "[WK_b]")
    moved = moved.replace("write_key: WK_web", "write_keys: [WK_web, WK_a]")
    rendered = apply_text(store, moved)
    assert rendered.splitlines() == [
        "- source server: write key WK_a",
        "+ source web: write key WK_a",
    ]
    assert store.write_key_index()["WK_a"].name == "web"


def test_key_kept_by_another_source_is_refused_before_anything_runs(
    store: WorkspaceStore,
) -> None:
    apply_text(store, "workspace: a\nsources:\n  - {name: web, write_key: WK_web}\n")
    text = "workspace: a\nsources:\n  - {name: web}\n  - {name: app, write_key: WK_web}\n"
    with pytest.raises(ConfigError, match="belongs to source 'web'"):
        plan(store, config(text))


def test_failed_apply_changes_nothing(store: WorkspaceStore) -> None:
    apply_text(store, "workspace: a\nsources:\n  - {name: web, write_key: WK_web}\n")
    changes = plan(store, config("workspace: b\nsources:\n  - {name: web}\n  - {name: app}\n"))
    store.create_source("app")  # someone else got there between plan and apply
    version = store.config_version()
    with pytest.raises(ConflictError):
        apply(store, changes)
    workspace = store.workspace()
    assert workspace is not None and workspace.name == "a"
    assert store.config_version() == version


def test_rotation_in_the_file(store: WorkspaceStore, clock: Clock) -> None:
    apply_text(store, "workspace: a\nsources:\n  - {name: web, write_key: WK_1}\n")
    # Rotating: list both keys, the old one with the time it stops working.
    expires = "2023-11-14T22:23:20Z"  # clock + 10 minutes
    text = (
        "workspace: a\nsources:\n  - name: web\n    write_keys:\n      - WK_2\n"
        f"      - {{key: WK_1, expires_at: '{expires}'}}\n"
    )
    assert apply_text(store, text).splitlines() == [
        "+ source web: write key WK_2",
        f"~ source web: write key WK_1 expires never → {expires}",
    ]
    assert apply_text(store, text) == "No changes."
    clock.now += 600
    assert set(store.write_key_index()) == {"WK_2"}
    # Once past its expiry the old key is neither re-added nor a change.
    assert apply_text(store, text) == "No changes."


# --- export ----------------------------------------------------------------------------------


def test_export_round_trip(store: WorkspaceStore, tmp_path: Path) -> None:
    apply_text(store, BASE)
    store.create_source("Mobile App (iOS)", slug="ios", settings={"nested": {"a": [1, None]}})
    store.update_source("web", name="Website")  # keeps the slug "web", so it is exported
    store.rotate_write_key("server", 3600)
    exported = export_config(store)
    path = tmp_path / "exported.yaml"
    path.write_text(exported)
    loaded = load_config(path)
    assert plan(store, loaded).render() == "No changes."
    data = yaml.safe_load(exported)
    assert data["workspace"] == "acme"
    by_name = {s["name"]: s for s in data["sources"]}
    assert by_name["Website"]["slug"] == "web"
    assert by_name["Website"]["write_key"] == "WK_web"
    assert "slug" not in by_name["server"]
    assert by_name["server"]["enabled"] is False
    assert len(by_name["server"]["write_keys"]) == 3
    assert {"key", "expires_at"} <= set(by_name["server"]["write_keys"][1])
    assert "server" not in data  # server settings are not in the database


def test_export_then_apply_into_an_empty_database(store: WorkspaceStore, tmp_path: Path) -> None:
    apply_text(store, BASE)
    exported = export_config(store)
    other_engine = open_engine(database_url(tmp_path / "other", None))
    migrate(other_engine)
    try:
        other = WorkspaceStore(other_engine)
        apply_text(other, exported)
        assert export_config(other) == exported
    finally:
        other_engine.dispose()


def test_apply_bumps_the_config_version(store: WorkspaceStore) -> None:
    before = store.config_version()
    apply_text(store, BASE)
    after = store.config_version()
    assert after > before
    apply_text(store, BASE.replace("enabled: false", "enabled: true"))
    assert store.config_version() > after
