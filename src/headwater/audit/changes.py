"""What changed between two views of the workspace, as audit events in Segment's words.

A view is ``headwater export``'s document (secrets already ``[redacted]``) plus the ids of the
resources it names. Comparing the view before a change with the view after it gives every
resource created, deleted or modified, whichever door the change came in by (a REST route,
``headwater apply``), without each route having to describe its own change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from headwater.audit.trail import AuditEvent

# Export sections holding named resources: (resource type, the noun of Segment's event names).
SECTIONS: Final[dict[str, tuple[str, str]]] = {
    "sources": ("source", "Source"),
    "destinations": ("destination", "Destination"),
    "warehouses": ("warehouse", "Warehouse"),
    "tracking_plans": ("tracking_plan", "Tracking Plan"),
    "transformations": ("transformation", "Transformation"),
    "functions": ("function", "Function"),
    "consent_categories": ("consent_category", "Consent Category"),
    "spaces": ("space", "Space"),
    "computed_traits": ("computed_trait", "Computed Trait"),
    "audiences": ("audience", "Audience"),
    "sql_traits": ("sql_trait", "SQL Trait"),
    "journeys": ("journey", "Journey"),
}
# Export sections holding one workspace-wide value.
SETTINGS: Final[dict[str, tuple[str, str]]] = {
    "workspace": ("workspace", "Workspace Modified"),
    "privacy": ("privacy", "Privacy Settings Modified"),
    "data_retention": ("data_retention", "Data Retention Modified"),
}
# A change to only this part of a resource has its own name, as Segment's trail does.
_PARTS: Final[dict[str, str]] = {
    "settings": "Settings Modified",
    "filters": "Filters Modified",
    "mappings": "Mappings Modified",
    "rules": "Rules Modified",
}


@dataclass(frozen=True)
class View:
    document: Mapping[str, Any]
    ids: Mapping[tuple[str, str], str] = field(default_factory=dict)  # (type, name) → id


def changes(before: View, after: View) -> list[AuditEvent]:
    events: list[AuditEvent] = []
    for section, (kind, event_type) in SETTINGS.items():
        old, new = before.document.get(section), after.document.get(section)
        if old != new:
            if section == "workspace" and old is None:
                event_type = "Workspace Created"
            events.append(AuditEvent(event_type, kind, None, section, old, new))
    for section, (kind, noun) in SECTIONS.items():
        old_items = _by_key(before.document.get(section))
        new_items = _by_key(after.document.get(section))
        for key in sorted(old_items.keys() | new_items.keys()):
            old_item, new_item = old_items.get(key), new_items.get(key)
            if old_item == new_item:
                continue
            name = key[1]
            resource_id = after.ids.get((kind, name)) or before.ids.get((kind, name))
            verb = _verb(old_item, new_item)
            events.append(AuditEvent(f"{noun} {verb}", kind, resource_id, name, old_item, new_item))
    return events


def _verb(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> str:
    if old is None:
        return "Created"
    if new is None:
        return "Deleted"
    differing = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
    if differing == {"enabled"}:
        return "Disabled" if new.get("enabled") is False else "Enabled"
    if len(differing) == 1:
        (part,) = differing
        if part in _PARTS:
            return _PARTS[part]
    return "Modified"


def _by_key(items: Any) -> dict[tuple[str, str], Mapping[str, Any]]:
    """Items by (space, name): computed traits and audiences are named within their space."""
    if not isinstance(items, list):
        return {}
    found: dict[tuple[str, str], Mapping[str, Any]] = {}
    for item in items:
        if isinstance(item, Mapping) and isinstance(item.get("name"), str):
            found[(str(item.get("space", "")), item["name"])] = item
    return found
