"""Migration 34 on a database made before it: existing destinations keep their insert
function on (the Enable Function toggle defaults to true) and ``function_usage`` appears."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.destinations.store import DestinationStore
from headwater.store import schema
from headwater.store.database import write_transaction
from headwater.store.migrations import migrate
from headwater.store.workspace import WorkspaceStore


def test_existing_destinations_keep_their_insert_function_on(engine: Engine) -> None:
    workspace = WorkspaceStore(engine)
    workspace.ensure_workspace("acme")
    workspace.create_source("web")
    DestinationStore(workspace).create("hook", "webhook", "web", settings={"url": "http://x/"})
    with write_transaction(engine) as conn:
        conn.execute(sa.text("ALTER TABLE destinations DROP COLUMN insert_function_enabled"))
        conn.execute(sa.text("DROP TABLE function_usage"))
        conn.execute(
            sa.delete(schema.schema_migrations).where(schema.schema_migrations.c.version == 34)
        )
    assert migrate(engine) == [34]
    assert DestinationStore(workspace).require("hook").insert_function_enabled is True
    with engine.connect() as conn:
        assert (
            conn.execute(sa.select(sa.func.count()).select_from(schema.function_usage)).scalar()
            == 0
        )
    assert migrate(engine) == []
