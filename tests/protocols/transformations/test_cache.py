"""The compiled set is rebuilt once per configuration change, and only then."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from headwater.protocols.transformations.store import TransformationCache, TransformationStore
from headwater.store.workspace import WorkspaceStore


def test_recompiled_when_the_config_version_changes(engine: Engine) -> None:
    workspace = WorkspaceStore(engine)
    source = workspace.create_source("web")
    store = TransformationStore(workspace)
    now = [0.0]
    cache = TransformationCache(store, workspace, clock=lambda: now[0])
    first = cache.current()
    assert first.for_source(source.id) is None
    made = store.create(
        {"name": "r", "sourceId": "web", "enabled": True, "if": "event = 'a'", "newEventName": "b"}
    )
    assert cache.current() is first  # checked at most once a second
    now[0] += 1.0
    second = cache.current()
    scope = second.for_source(source.id)
    assert scope is not None
    assert scope.apply({"type": "track", "event": "a"}) == {"type": "track", "event": "b"}
    now[0] += 1.0
    assert cache.current() is second  # no change: the same compiled set
    store.update(made.id, {"enabled": False})
    now[0] += 1.0
    assert cache.current().for_source(source.id) is None
