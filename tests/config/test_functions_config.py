"""Functions in headwater.yaml (the issue's shape): apply saves and deploys, sources and
destinations run them with their own settings (``${ENV}`` secrets never shown), export writes
them back and applies to no change, a dropped function goes once nothing runs it."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, export_config, plan
from headwater.config.model import parse_config, read_yaml
from headwater.errors import ConfigError
from headwater.functions.store import FunctionStore
from headwater.store.workspace import WorkspaceStore

CONFIG = """
workspace: acme
functions:
  - name: enrich
    kind: insert
    language: javascript
    settings:
      - {name: apiKey, label: API key, type: string, secret: true}
    code: |
      async function onTrack(event, settings) { event.properties.message = 'Enriched'; return event }
      async function onIdentify(event, settings) { throw new DropEvent('no identifies here') }
  - name: stripe-webhook
    kind: source
    language: python
    code: |
      def on_request(request, settings):
          body = request.json()
          segment.track({"event": body["type"], "userId": body["data"]["customer"]})
sources:
  - name: web
    write_key: WK_web
  - name: stripe-in
    function: stripe-webhook
destinations:
  - name: hook
    type: webhook
    source: web
    settings: {url: "http://127.0.0.1:9/hook"}
    insert_function: enrich
    insert_function_settings: {apiKey: "${ENRICH_KEY}"}
"""


def test_apply_plan_export_round_trip(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENRICH_KEY", "key-from-env")
    store = WorkspaceStore(engine)
    config = parse_config(read_yaml(CONFIG))
    first = plan(store, config)
    text = first.render()
    assert "+ function enrich (insert; javascript;" in text
    assert "+ function stripe-webhook (source; python;" in text
    assert "~ source stripe-in: function none → stripe-webhook" in text
    assert (
        '~ destination hook: insert_function none → enrich (settings {"apiKey": "[redacted]"})'
        in text
    )
    assert "key-from-env" not in text
    apply(store, first)
    functions = FunctionStore(store)
    enrich = functions.require("enrich")
    assert (enrich.latest_version, enrich.deployed_version) == (1, 1)
    attached = functions.insert_function("hook")
    assert attached is not None and attached.settings == {"apiKey": "key-from-env"}
    runs = functions.source_function("stripe-in")
    assert runs is not None and runs.function.language == "python"
    assert not plan(store, config)  # idempotent

    exported = export_config(store)
    assert "key-from-env" not in exported
    assert "apiKey: '[redacted]'" in exported
    assert "code: |" in exported and "insert_function: enrich" in exported
    assert "function: stripe-webhook" in exported
    assert not plan(store, parse_config(read_yaml(exported)))  # export, apply: no change

    # New code: a new version, deployed; a new description changes only that.
    changed = CONFIG.replace("'Enriched'", "'Enriched again'")
    second = plan(store, parse_config(read_yaml(changed)))
    assert second.render() == "~ function enrich: code changed (a new version, deployed)"
    apply(store, second)
    enrich = functions.require("enrich")
    assert (enrich.latest_version, enrich.deployed_version) == (2, 2)
    deployed = functions.deployed("enrich")
    assert deployed is not None and "Enriched again" in deployed.source
    assert functions.insert_function("hook") is not None  # secret kept across the apply


def test_a_saved_undeployed_version_is_deployed_by_the_file(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENRICH_KEY", "k")
    store = WorkspaceStore(engine)
    apply(store, plan(store, parse_config(read_yaml(CONFIG))))
    functions = FunctionStore(store)
    latest = functions.latest("enrich").source
    functions.update("enrich", code=latest + "// saved, not deployed\n")
    # The export describes what runs: version 1; applying it changes nothing.
    assert not plan(store, parse_config(read_yaml(export_config(store))))
    saved = CONFIG.replace(
        "no identifies here') }\n", "no identifies here') }\n      // saved, not deployed\n"
    )
    changes = plan(store, parse_config(read_yaml(saved)))
    assert changes.render() == "~ function enrich: deploy version 2 (was 1)"
    apply(store, changes)
    assert functions.require("enrich").deployed_version == 2


def test_dropping_a_function_detaches_then_deletes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENRICH_KEY", "k")
    store = WorkspaceStore(engine)
    apply(store, plan(store, parse_config(read_yaml(CONFIG))))
    without = (
        "workspace: acme\n"
        "functions: []\n"
        "sources:\n  - {name: web, write_key: WK_web}\n  - {name: stripe-in}\n"
        "destinations:\n"
        "  - {name: hook, type: webhook, source: web, settings: {url: 'http://127.0.0.1:9/hook'}}\n"
    )
    changes = plan(store, parse_config(read_yaml(without)))
    assert changes.render().splitlines() == [
        "~ source stripe-in: function stripe-webhook → none",
        "~ destination hook: insert_function enrich → none",
        "- function enrich",
        "- function stripe-webhook",
    ]
    apply(store, changes)
    assert FunctionStore(store).list() == []


def test_code_from_a_file(tmp_path: Path, engine: Engine) -> None:
    (tmp_path / "fn").mkdir()
    (tmp_path / "fn" / "post.js").write_text(
        "async function onTrack(event, settings) { await fetch(settings.url) }\n"
    )
    text = (
        "workspace: acme\n"
        "functions:\n"
        "  - {name: post-to-api, kind: destination, file: fn/post.js,\n"
        "     settings: [{name: url, required: true}]}\n"
    )
    config = parse_config(read_yaml(text), base_dir=tmp_path)
    store = WorkspaceStore(engine)
    apply(store, plan(store, config))
    code = FunctionStore(store).deployed("post-to-api")
    assert code is not None and code.source.startswith("async function onTrack")
    with pytest.raises(ConfigError, match="cannot read"):
        parse_config(read_yaml(text.replace("post.js", "missing.js")), base_dir=tmp_path)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "functions:\n  - {name: f, kind: insert, code: 'x', file: f.js}\n",
            "code or file",
        ),
        ("functions:\n  - {name: f, kind: insert}\n", "give the code"),
        ("functions:\n  - {name: f, kind: nope, code: 'x'}\n", "kind"),
        ("functions:\n  - {name: f, kind: insert, language: ruby, code: 'x'}\n", "language"),
        (
            "functions:\n  - {name: f, kind: source, code: \"fetch('https://fn.segmentapis.com')\"}\n",
            "fn.segmentapis.com",
        ),
        (
            "functions:\n  - {name: f, kind: insert, code: x, settings: [{name: 'a b'}]}\n",
            "settings[0].name",
        ),
        (
            "functions:\n  - {name: f, kind: insert, code: x}\n"
            "sources:\n  - {name: s, function: f}\n",
            "not a source function",
        ),
        (
            "functions: []\nsources:\n  - {name: s, function: nope}\n",
            "no function named 'nope'",
        ),
        (
            "functions:\n  - {name: f, kind: insert, code: x}\n"
            "sources: [{name: web}]\n"
            "destinations:\n  - {name: d, type: 'function:f', source: web}\n",
            "not a destination function",
        ),
        (
            "sources:\n  - {name: s, function_settings: {a: b}}\n",
            "give `function:` too",
        ),
        (
            "functions:\n  - {name: f, kind: insert, code: x}\n  - {name: f, kind: insert, code: y}\n",
            "already used",
        ),
    ],
)
def test_bad_function_sections_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(read_yaml("workspace: acme\n" + text))
    assert problem in str(refused.value)


def test_references_are_checked_against_the_workspace(engine: Engine) -> None:
    """Without a ``functions:`` section, sources and destinations name the stored ones."""
    store = WorkspaceStore(engine)
    FunctionStore(store).create("enrich", "insert", "javascript", "async function onTrack() {}")
    text = "workspace: acme\nsources:\n  - {name: s, function: enrich}\n"
    with pytest.raises(ConfigError, match="not a source function"):
        plan(store, parse_config(read_yaml(text)))
    with pytest.raises(ConfigError, match="no function is named"):
        plan(store, parse_config(read_yaml(text.replace("enrich", "nope"))))


def test_the_limit_comes_from_the_server_section(engine: Engine) -> None:
    """AC-111 through the file: ``server.functions_limit`` (default 25) is the limit."""
    items = "".join(f"  - {{name: f{i}, kind: insert, code: x}}\n" for i in range(3))
    text = f"workspace: acme\nserver: {{functions_limit: 2}}\nfunctions:\n{items}"
    store = WorkspaceStore(engine)
    with pytest.raises(Exception, match="limit"):
        apply(store, plan(store, parse_config(read_yaml(text))))
    assert FunctionStore(store).list() == []  # one transaction: nothing was made
