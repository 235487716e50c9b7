"""A workspace with the sources the Privacy Portal's tests send from: an Android app and an
iOS app (mobile), a web site, a Salesforce object source and a Reverse ETL source."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import Engine

from headwater.store.workspace import WorkspaceStore

SOURCES = {
    "android": {"category": "mobile"},
    "ios": {"category": "mobile"},
    "web": {"category": "web"},
    "salesforce": {"category": "cloud-object"},
    "retl": {"category": "reverse-etl"},
}


@pytest.fixture
def store(engine: Engine) -> WorkspaceStore:
    found = WorkspaceStore(engine)
    found.ensure_workspace("acme")
    for name, settings in SOURCES.items():
        found.create_source(name, settings=settings)
    return found


def source_id(store: WorkspaceStore, name: str) -> str:
    found = store.get_source(name)
    assert found is not None
    return found.id
