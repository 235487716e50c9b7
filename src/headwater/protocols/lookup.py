"""The Protocols stage's lookup: every source's plan, schema settings and controls, by id.

Built from the state database whenever the configuration's version moves (the stage checks);
a source with nothing to apply is left out, so its records cost the stage one dict probe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from headwater.protocols.connected import SourceProtocols
from headwater.protocols.plans import load_source_protocols
from headwater.protocols.schema_controls import load_schema_controls
from headwater.protocols.stage import Lookup
from headwater.store import schema


def source_lookup(engine: Engine) -> Lookup:
    def load() -> Mapping[str, SourceProtocols]:
        return load_protocols(engine)

    return load


def load_protocols(engine: Engine) -> dict[str, SourceProtocols]:
    """Plans and schema settings (`plans.py`) joined with schema controls (`schema_controls.py`)."""
    found = load_source_protocols(engine)
    controls = load_schema_controls(engine)
    missing = [source_id for source_id in controls if source_id not in found]
    if missing:
        src = schema.sources
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(src.c.id, src.c.name, src.c.slug).where(src.c.id.in_(missing))
            )
            for row in rows:
                found[row.id] = SourceProtocols(row.id, row.name, row.slug)
    for source_id, source_controls in controls.items():
        if source_id in found:
            found[source_id] = dataclasses.replace(found[source_id], controls=source_controls)
    return found
