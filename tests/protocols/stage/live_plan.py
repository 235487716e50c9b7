"""The lookup a live server loads through HEADWATER_PROTOCOLS_LOOKUP in the live test: source
``web`` gets a plan with ``Order Completed`` (``products`` required), unplanned events
blocked, unplanned properties omitted, violations and blocked events forwarded to
``quarantine``."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from headwater.protocols.compiled import Rule, compile_plan
from headwater.protocols.connected import SourceProtocols
from headwater.protocols.enforce import SchemaSettings
from headwater.store.workspace import WorkspaceStore

ORDER = Rule(
    "TRACK",
    "Order Completed",
    {
        "type": "object",
        "properties": {
            "properties": {
                "type": "object",
                "properties": {"products": {"type": "array"}},
                "required": ["products"],
            }
        },
    },
)


def lookup(store: WorkspaceStore) -> Callable[[], Mapping[str, SourceProtocols]]:
    def build() -> Mapping[str, SourceProtocols]:
        web, quarantine = store.get_source("web"), store.get_source("quarantine")
        if web is None or quarantine is None:
            return {}
        settings = SchemaSettings.from_segment(
            {
                "track": {"allowUnplannedEvents": False, "allowUnplannedEventProperties": False},
                "forwardingViolationsTo": quarantine.id,
                "forwardingBlockedEventsTo": quarantine.id,
            }
        )
        plan = compile_plan([ORDER])
        return {
            web.id: SourceProtocols(
                web.id, web.name, web.slug, "tp_live", "Live Plan", plan, settings
            )
        }

    return build
