"""Warehouse syncs apply the source-scoped transformations that existed when each event
arrived (not retroactive), never the destination-scoped ones; on DuckDB and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from headwater.protocols.transformations.store import TransformationStore
from headwater.store.workspace import WorkspaceStore
from headwater.warehouse.sync import SUCCESS
from tests.warehouse.test_sync import NOW, World, kind, track, warehouse_of, world

__all__ = ["kind", "world"]


def test_source_scope_applies_from_its_creation_on(
    world: World, kind: str, request: pytest.FixtureRequest
) -> None:
    wh = warehouse_of(world, kind, request)
    created = NOW - timedelta(hours=2)
    at_creation = WorkspaceStore(world.workspace.engine, clock=created.timestamp)
    store = TransformationStore(at_creation)
    base = {"sourceId": world.source_id, "enabled": True, "if": "event = 'order_completed'"}
    store.create({**base, "name": "source", "newEventName": "Order Completed"})
    store.create(
        {
            **base,
            "name": "hook only",
            "destinationMetadataId": "webhook",
            "propertyValueTransformations": [
                {"propertyPaths": ["properties.total"], "propertyValue": 0}
            ],
        }
    )
    world.archive(
        track("order_completed", NOW - timedelta(hours=3), user="before", total=5),
        track("order_completed", NOW - timedelta(hours=1), user="after", total=7),
    )
    result = world.sync(wh)
    assert result.status == SUCCESS, result
    assert world.rows(wh, "SELECT user_id, event_text FROM web_app.tracks") == [
        ("after", "Order Completed"),
        ("before", "order_completed"),
    ]
    assert world.rows(wh, "SELECT user_id, total FROM web_app.order_completed") == [
        ("after", 7),
        ("before", 5),
    ]
