"""``transformations:`` in headwater.yaml: apply, idempotence, export round trip, edits,
deletes, and refusals that name the entry."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, export_config, plan
from headwater.config.model import parse_config, read_yaml
from headwater.errors import ConfigError
from headwater.protocols.transformations.store import TransformationStore
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
transformations:
  - name: Fix order_completed
    source: web
    if: "event = 'order_completed'"
    newEventName: Order Completed
  - name: Currency for the hook
    source: web
    destination: hook
    if: "event = 'Order Completed'"
    propertyValueTransformations:
      - propertyPaths: [properties.currency]
        propertyValue: USD
    propertyRenames:
      - {oldName: properties.order.id, newName: properties.order_id}
"""


def test_apply_export_round_trip_and_edits(engine: Engine) -> None:
    store = WorkspaceStore(engine)
    config = parse_config(read_yaml(CONFIG))
    first = plan(store, config)
    assert "+ transformation Fix order_completed (source web; source scope;" in first.render()
    apply(store, first)
    stored = sorted(TransformationStore(store).list(), key=lambda t: t.name, reverse=True)
    assert [(t.name, t.destination_metadata_id) for t in stored] == [
        ("Fix order_completed", None),
        ("Currency for the hook", "webhook"),
    ]
    assert stored[0].source_id == store.get_source("web").id  # type: ignore[union-attr]
    assert not plan(store, config)  # idempotent

    exported = export_config(store)
    assert "destination: hook" in exported
    assert not plan(store, parse_config(read_yaml(exported)))  # export, apply: no change

    # A new result name is an update in place (same id); a dropped entry is a delete.
    edited = CONFIG.replace("newEventName: Order Completed", "newEventName: Order Done")
    edited = edited[: edited.index("  - name: Currency")]
    changes = plan(store, parse_config(read_yaml(edited)))
    assert sorted(line[0] for line in changes.render().splitlines()) == ["-", "~"]
    apply(store, changes)
    [kept] = TransformationStore(store).list()
    assert kept.id == stored[0].id and kept.new_event_name == "Order Done"


def test_a_tr_2_in_the_file_and_bad_entries(engine: Engine) -> None:
    store = WorkspaceStore(engine)
    twice = CONFIG + (
        "  - name: Again\n    source: web\n    if: \"event = 'order_completed'\"\n"
        "    newEventName: Other\n"
    )
    with pytest.raises(ConfigError) as caught:
        apply(store, plan(store, parse_config(read_yaml(twice))))
    assert "already exists" in str(caught.value)
    assert TransformationStore(store).list() == []  # one transaction: nothing applied
    bad = CONFIG.replace("properties.order.id", "properties.products.$.id")
    with pytest.raises(ConfigError) as caught:
        parse_config(read_yaml(bad))
    assert "transformations[1]" in str(caught.value) and ".$." in str(caught.value)
    unknown = CONFIG.replace("destination: hook", "destination: nowhere")
    with pytest.raises(ConfigError) as caught:
        plan(store, parse_config(read_yaml(unknown)))
    assert "nowhere" in str(caught.value)
