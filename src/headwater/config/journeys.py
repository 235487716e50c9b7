"""The ``journeys:`` section of ``headwater.yaml``: a space's journeys by key, each with its
definition (the shape ``headwater.engage.journeys.model`` reads, send step keys included once
exported) and the status its live version should have.

    journeys:
      - space: main
        name: First Purchase              # key: first_purchase (``key:`` keeps it on a rename)
        status: published                 # draft, published, paused or archived
        definition:
          entry: {audience: signed_up}
          steps:
            - {name: Wait 5 days, delay: {days: 5}}
            - {name: Opened email, send: {destinations: [{name: engage-hook}]}}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, StrictStr

from headwater.engage.journeys.model import journey_name, parse, step_id
from headwater.errors import InputError

Status = Literal["draft", "published", "paused", "archived"]


class JourneyConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    space: StrictStr
    name: StrictStr
    key: StrictStr | None = None
    description: StrictStr = ""
    status: Status = "published"
    definition: dict[str, Any]

    @property
    def journey_key(self) -> str:
        return self.key if self.key is not None else step_id(self.name)


def journey_problems(journeys: Sequence[JourneyConfig], spaces: set[str] | None) -> list[str]:
    """Names, definitions, keys unique per space, and spaces of the file (when it lists
    them; else the planner checks the stored ones)."""
    problems: list[str] = []
    keys: dict[tuple[str, str], str] = {}
    for i, entry in enumerate(journeys):
        where = f"journeys[{i}]"
        if spaces is not None and entry.space not in spaces:
            problems.append(f"{where}.space: no space named {entry.space!r}")
        try:
            journey_name(entry.name)
            parse(entry.definition)
        except InputError as exc:
            problems.append(f"{where}.{exc.field or 'definition'}: {exc.message}")
            continue
        first = keys.setdefault((entry.space, entry.journey_key), where)
        if first != where:
            problems.append(f"{where}: the key {entry.journey_key!r} is already used by {first}")
    return problems
