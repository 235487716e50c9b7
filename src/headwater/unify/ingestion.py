"""Unify's ingestion limits: events Segment drops before identity resolution (§2.6, A-UE-11).

Segment drops these silently and Profiles Insights does not show them; Headwater returns a code
of its own (``reasons.UNIFY_*``) so the caller can count them. Traits are counted at the top
level of ``traits``; an identify is refused from 300 traits ("rejects Identify events with 300
or more traits"), any other event past 300 properties or traits (§21 #3).
"""

from __future__ import annotations

from typing import Any, Final

from headwater import reasons

MAX_MESSAGE_ID: Final = 100
MAX_GROUP_ID: Final = 500
MAX_PROPERTIES: Final = 300
MAX_IDENTIFY_TRAITS: Final = 299  # 300 or more refused
MAX_TRAITS: Final = 300


def _length(value: object) -> int:
    return len(value) if type(value) is dict or type(value) is str else 0


def drop_reason(event: dict[str, Any]) -> str | None:
    """Why Unify drops ``event`` before resolving it, or None."""
    kind = event.get("type")
    if _length(event.get("messageId")) > MAX_MESSAGE_ID:
        return reasons.UNIFY_MESSAGE_ID_TOO_LONG
    context = event.get("context")
    group_ids = [event.get("groupId")] if kind == "group" else []
    if type(context) is dict and "groupId" in context:
        group_ids.append(context["groupId"])
    for group_id in group_ids:
        if group_id == "" or (group_id is None and kind == "group"):
            return reasons.UNIFY_GROUP_ID_EMPTY
        if _length(group_id) > MAX_GROUP_ID:
            return reasons.UNIFY_GROUP_ID_TOO_LONG
    if _length(event.get("properties")) > MAX_PROPERTIES:
        return reasons.UNIFY_TOO_MANY_PROPERTIES
    traits = _length(event.get("traits"))
    if traits > (MAX_IDENTIFY_TRAITS if kind == "identify" else MAX_TRAITS):
        return reasons.UNIFY_TOO_MANY_TRAITS
    return None
