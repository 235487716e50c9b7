"""What the Protocols stage knows about one source, rebuilt once per configuration change.

The stage runs for every event, so everything it needs is gathered here ahead of time: the
connected tracking plan compiled, the source's schema settings (§4.1) and its schema controls
(§6.2: event filters without a plan). A source with none of these is simply absent from the
stage's lookup, which keeps the no-plan path to one dict lookup per record.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from headwater.protocols.compiled import CompiledPlan
from headwater.protocols.enforce import SchemaSettings


@dataclass(frozen=True, slots=True)
class SchemaControls:
    """A source's event filters from its schema page (Segment's Schema Controls, no plan needed)."""

    blocked_track: frozenset[str] = frozenset()  # Track event names blocked at the source
    block_page: bool = False  # every Page call blocked
    block_screen: bool = False  # every Screen call blocked
    omitted_identify_traits: frozenset[str] = frozenset()
    omitted_group_traits: frozenset[str] = frozenset()

    def any(self) -> bool:
        return bool(
            self.blocked_track
            or self.block_page
            or self.block_screen
            or self.omitted_identify_traits
            or self.omitted_group_traits
        )


@dataclass(frozen=True, slots=True)
class SourceProtocols:
    """One source's plan, settings and controls, as the stage applies them."""

    source_id: str
    source_name: str
    source_slug: str
    plan_id: str | None = None
    plan_name: str | None = None
    plan: CompiledPlan | None = None
    settings: SchemaSettings = field(default_factory=SchemaSettings)
    controls: SchemaControls = field(default_factory=SchemaControls)
