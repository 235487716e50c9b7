"""The Protocols stage's lookup: every source's plan, schema settings and controls, by id.

Built from the state database whenever the configuration's version moves (the stage checks);
a source with nothing to apply is left out, so its records cost the stage one dict probe.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.engine import Engine

from headwater.protocols.connected import SourceProtocols
from headwater.protocols.plans import load_source_protocols
from headwater.protocols.stage import Lookup


def source_lookup(engine: Engine) -> Lookup:
    def load() -> Mapping[str, SourceProtocols]:
        return load_source_protocols(engine)

    return load
