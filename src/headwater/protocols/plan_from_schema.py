"""A tracking plan's rules from what a source has been seen sending (its Source Schema).

Segment's "import from source": every Track event observed becomes a TRACK rule listing its
properties, and the Identify and Group traits become the IDENTIFY and GROUP rules. The schema
records names, not types, so each property is planned with an empty schema (any value): the
rules say what exists, and a team tightens the types afterwards. Nested paths (`order.id`)
become nested objects and array items (`products.$.id`) an `items` schema, the shapes the
schema records them in.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from headwater.protocols.compiled import Rule
from headwater.protocols.source_schema import GROUP_KIND, IDENTIFY, TRACK, Item

DRAFT_07 = "http://json-schema.org/draft-07/schema#"


def rules_from_schema(items: Iterable[Item]) -> list[Rule]:
    """One rule per observed Track event (Page and Screen calls as `Page Viewed` / `Screen
    Viewed` Track rules), one IDENTIFY and one GROUP rule when traits were seen."""
    events: dict[str, list[str]] = {}
    traits: dict[str, list[str]] = {}
    for item in items:
        if item.archived:
            continue
        if item.kind == TRACK:
            names = events.setdefault(item.event, [])
            if item.property:
                names.append(item.property)
        elif item.kind in (IDENTIFY, GROUP_KIND) and item.property:
            traits.setdefault(item.kind, []).append(item.property)
    rules = [
        Rule("TRACK", name, _rule_schema("properties", paths)) for name, paths in events.items()
    ]
    for kind, rule_type in ((IDENTIFY, "IDENTIFY"), (GROUP_KIND, "GROUP")):
        if kind in traits:
            rules.append(Rule(rule_type, "", _rule_schema("traits", traits[kind])))
    return rules


def _rule_schema(container: str, paths: list[str]) -> dict[str, Any]:
    inner: dict[str, Any] = {"type": "object", "properties": {}}
    for path in sorted(paths):
        _plan_path(inner, path.split("."))
    return {
        "$schema": DRAFT_07,
        "type": "object",
        "properties": {container: inner},
    }


def _plan_path(node: dict[str, Any], parts: list[str]) -> None:
    """Plan one recorded path (`a.b`, `a.$.b`) under an object schema."""
    head, rest = parts[0], parts[1:]
    props = node.setdefault("properties", {})
    child: dict[str, Any] = props.setdefault(head, {})
    if not rest:
        return
    if rest[0] == "$":  # array items
        child["type"] = "array"
        items: dict[str, Any] = child.setdefault("items", {})
        if rest[1:]:
            items["type"] = "object"
            _plan_path(items, rest[1:])
        return
    child["type"] = "object"
    _plan_path(child, rest)
