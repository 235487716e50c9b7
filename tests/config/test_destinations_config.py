"""Destinations in headwater.yaml: apply, plan output, export round trip, secrets kept out."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, export_config, plan
from headwater.config.model import parse_config, read_yaml
from headwater.destinations.store import DestinationStore
from headwater.errors import ConfigError
from headwater.store.workspace import WorkspaceStore

CONFIG = """
workspace: acme
sources:
  - name: web
    write_key: WK_web
destinations:
  - name: hook
    type: webhook
    source: web
    settings:
      url: http://127.0.0.1:9000/hook
      shared_secret: ${HOOK_SECRET}
    delivery:
      retry_window_hours: 2
"""


def test_apply_creates_then_nothing_then_export_round_trips(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "from-the-environment")
    store = WorkspaceStore(engine)
    config = parse_config(read_yaml(CONFIG))
    first = plan(store, config)
    text = first.render()
    assert "+ destination hook (type webhook; source web; settings" in text
    assert "from-the-environment" not in text and "[redacted]" in text
    apply(store, first)
    [hook] = DestinationStore(store).list()
    assert hook.settings["shared_secret"] == "from-the-environment"
    assert hook.delivery.retry_window_hours == 2
    assert not plan(store, config)  # idempotent

    exported = export_config(store)
    assert "from-the-environment" not in exported
    assert "shared_secret: '[redacted]'" in exported
    assert not plan(store, parse_config(read_yaml(exported)))  # export, apply: no change

    changed = CONFIG.replace("9000/hook", "9001/hook").replace(
        "retry_window_hours: 2", "retry_window_hours: 3"
    )
    second = plan(store, parse_config(read_yaml(changed)))
    assert second.render().splitlines() == [
        '~ destination hook: settings {"shared_secret": "[redacted]", '
        '"url": "http://127.0.0.1:9000/hook"} → {"shared_secret": "[redacted]", '
        '"url": "http://127.0.0.1:9001/hook"}',
        '~ destination hook: delivery {"retry_window_hours": 2.0} → {"retry_window_hours": 3}',
    ]
    apply(store, second)
    assert (
        DestinationStore(store).require("hook").settings["shared_secret"] == "from-the-environment"
    )

    gone = plan(
        store, parse_config(read_yaml(changed.split("destinations:")[0] + "destinations: []\n"))
    )
    assert gone.render() == "- destination hook"


def test_config_errors_name_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOOK_SECRET", raising=False)
    with pytest.raises(ConfigError) as missing_env:
        parse_config(read_yaml(CONFIG))
    assert "destinations[0].settings: the environment variable HOOK_SECRET is not set" in str(
        missing_env.value
    )
    twice = (
        CONFIG.replace("${HOOK_SECRET}", "x")
        + """  - name: hook
    type: webhook
    source: web
"""
    )
    with pytest.raises(ConfigError) as duplicate:
        parse_config(read_yaml(twice))
    assert "destinations[1]: name 'hook' is already used by destinations[0]" in str(duplicate.value)


def test_store_refuses_bad_settings_and_unknown_types(engine: Engine) -> None:
    from headwater.errors import InvalidError, NotFoundError

    store = WorkspaceStore(engine)
    store.ensure_workspace("acme")
    store.create_source("web")
    destinations = DestinationStore(store)
    with pytest.raises(InvalidError) as unknown:
        destinations.create("x", "no-such-thing", "web")
    assert unknown.value.field == "type"
    with pytest.raises(InvalidError) as bad:
        destinations.create("x", "webhook", "web", settings={"url": "not a url"})
    assert bad.value.field == "settings.url"
    with pytest.raises(NotFoundError) as no_source:
        destinations.create("x", "webhook", "mobile", settings={"url": "http://h/"})
    assert no_source.value.field == "source"
    with pytest.raises(InvalidError) as bad_delivery:
        destinations.create(
            "x",
            "webhook",
            "web",
            settings={"url": "http://h/"},
            delivery={"retry_window_hours": -1},
        )
    assert bad_delivery.value.field == "delivery.retry_window_hours"


FILTERS = """
workspace: acme
sources:
  - name: web
    write_key: WK_web
destinations:
  - name: hook
    type: webhook
    source: web
    settings: {url: "http://127.0.0.1:9000/hook"}
    filters:
      - title: Only tracks
        if: "type != 'track'"
        actions: [{type: DROP}]
      - title: No email
        if: all
        actions: [{type: DROP_PROPERTIES, fields: {properties: [email], context: [ip]}}]
"""


def test_filters_in_the_config_file(engine: Engine) -> None:
    store = WorkspaceStore(engine)
    config = parse_config(read_yaml(FILTERS))
    first = plan(store, config)
    assert "2 filters" in first.render()
    apply(store, first)
    [hook] = DestinationStore(store).list()
    assert [f.title for f in hook.filters] == ["Only tracks", "No email"]
    ids = [f.id for f in hook.filters]
    assert all(i.startswith("df_") for i in ids)
    assert not plan(store, config)  # idempotent
    exported = export_config(store)
    assert "if: type != 'track'" in exported and "df_" not in exported
    assert not plan(store, parse_config(read_yaml(exported)))

    changed = FILTERS.replace("title: No email", "title: No email or IP")
    second = plan(store, parse_config(read_yaml(changed)))
    assert "~ destination hook: filters" in second.render()
    apply(store, second)
    [hook] = DestinationStore(store).list()
    assert [f.id for f in hook.filters] == ids  # a filter keeps its id through edits
    assert hook.filters[1].title == "No email or IP"


@pytest.mark.parametrize(
    ("replace", "message"),
    [
        ("if: \"type != 'track'\"", "destinations[0].filters: [0].if: not valid FQL"),
        (
            "actions: [{type: DROP}]",
            "destinations[0].filters: [0].actions.0: a SAMPLE action needs",
        ),
    ],
)
def test_filter_errors_in_the_config_file_name_the_place(replace: str, message: str) -> None:
    broken = FILTERS.replace(
        replace,
        {
            "if: \"type != 'track'\"": 'if: "type != \'track"',
            "actions: [{type: DROP}]": "actions: [{type: SAMPLE}]",
        }[replace],
        1,
    )
    with pytest.raises(ConfigError) as raised:
        parse_config(read_yaml(broken))
    assert message in str(raised.value)


MAPPINGS = """
workspace: acme
sources:
  - name: web
    write_key: WK_web
destinations:
  - name: orders-hook
    type: webhook-actions
    source: web
    mappings:
      - name: Orders
        enabled: true
        trigger: 'type = "track" and event = "Order Completed"'
        action: send
        fields:
          url: "http://127.0.0.1:9000/orders"
          method: POST
          data: {order: {"@path": "$.properties.order_id"}}
      - name: Later
        trigger: 'type = "identify"'
        action: send
        fields: {url: "http://127.0.0.1:9000/users"}
"""


def test_mappings_in_the_config_file(engine: Engine) -> None:
    store = WorkspaceStore(engine)
    config = parse_config(read_yaml(MAPPINGS))
    first = plan(store, config)
    assert "2 mappings" in first.render()
    apply(store, first)
    [hook] = DestinationStore(store).list()
    assert [(m.name, m.enabled) for m in hook.mappings] == [("Orders", True), ("Later", False)]
    assert not plan(store, config)
    exported = export_config(store)
    assert "map_" not in exported and "enabled: false" in exported
    assert not plan(store, parse_config(read_yaml(exported)))
    with pytest.raises(
        ConfigError, match=r"destinations\[0\]: mappings\[1\]\.action: unknown action"
    ):
        parse_config(
            read_yaml(
                MAPPINGS.replace(
                    "action: send\n        fields: {url", "action: explode\n        fields: {url"
                )
            )
        )
