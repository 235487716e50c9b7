"""Mapping header values in headwater.yaml: exported and planned as ``[redacted]``, and an
exported file applies back without a change and without losing them (issue 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from headwater.config.apply import apply, export_config, plan
from headwater.config.model import parse_config, read_yaml
from headwater.destinations.store import DestinationStore
from headwater.errors import InvalidError
from headwater.store.database import database_url, open_engine
from headwater.store.migrations import migrate
from headwater.store.workspace import WorkspaceStore

CONFIG = """
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
        trigger: 'type = "track"'
        action: send
        fields:
          url: http://127.0.0.1:9/orders
          headers: {X-Api-Key: KEY, X-Trace: {"@template": "t-{{messageId}}"}}
"""


@pytest.fixture
def store(tmp_path: Path) -> WorkspaceStore:
    engine: Engine = open_engine(database_url(tmp_path, None))
    migrate(engine)
    return WorkspaceStore(engine)


def headers(store: WorkspaceStore) -> object:
    return DestinationStore(store).require("orders-hook").mappings[0].fields["headers"]


def test_export_hides_header_values_and_applies_back_unchanged(store: WorkspaceStore) -> None:
    first = plan(store, parse_config(read_yaml(CONFIG.replace("KEY", "k-abc-123"))))
    apply(store, first)
    stored = {"X-Api-Key": "k-abc-123", "X-Trace": {"@template": "t-{{messageId}}"}}
    assert headers(store) == stored

    exported = export_config(store)
    assert "k-abc-123" not in exported and "t-{{messageId}}" not in exported
    assert "X-Api-Key: '[redacted]'" in exported
    again = plan(store, parse_config(read_yaml(exported)))
    assert not again, again.render()  # export, apply: no change
    apply(store, again)
    assert headers(store) == stored

    rotated = plan(store, parse_config(read_yaml(CONFIG.replace("KEY", "k-new-456"))))
    text = rotated.render()
    assert text.startswith("~ destination orders-hook: mappings")
    assert "k-new-456" not in text and "k-abc-123" not in text and "[redacted]" in text
    apply(store, rotated)
    assert headers(store) == {**stored, "X-Api-Key": "k-new-456"}

    # The exported file with one header changed: the others keep their stored values.
    edited = exported.replace("X-Api-Key: '[redacted]'", "X-Api-Key: k-third")
    assert edited != exported
    apply(store, plan(store, parse_config(read_yaml(edited))))
    assert headers(store) == {**stored, "X-Api-Key": "k-third"}


def test_redacted_with_nothing_stored_names_the_header(store: WorkspaceStore) -> None:
    with pytest.raises(InvalidError) as caught:
        apply(store, plan(store, parse_config(read_yaml(CONFIG.replace("KEY", "'[redacted]'")))))
    assert caught.value.field == "mappings.0.fields.headers.X-Api-Key"
    assert "secret" in str(caught.value)
    assert DestinationStore(store).list() == []
