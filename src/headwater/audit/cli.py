"""``headwater audit``: the audit trail from a terminal, through the REST API."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from headwater.admin_client import call_api

WHAT = "audit"
PAGE = 1000


def show_trail(
    url: str,
    token: str,
    *,
    since: str | None = None,
    resource: str | None = None,
    actor: str | None = None,
    type_: str | None = None,
    limit: int = 100,
    as_json: bool = False,
    changes: bool = False,
    out: TextIO | None = None,
) -> None:
    """Newest first; ``changes`` prints each event's before and after."""
    out = out or sys.stdout  # read at call time: the caller's stdout
    params: dict[str, Any] = {"pagination.count": min(limit, PAGE)}
    for key, value in (("startTime", since), ("resourceId", resource), ("actor", actor)):
        if value:
            params[key] = value
    if type_:
        params["type"] = type_
    events: list[dict[str, Any]] = []
    while len(events) < limit:
        data = call_api("GET", f"{url.rstrip('/')}/api/v1/audit-events", token, WHAT, params=params)
        events += data["auditEvents"]
        following = data["pagination"].get("next")
        if not following:
            break
        params["pagination.cursor"] = following
    events = events[:limit]
    if as_json:
        out.write(json.dumps(events, indent=2) + "\n")
        return
    for event in events:
        who = event.get("actorEmail") or f"{event['actorType']}:{event['actor']}"
        what = event["resourceName"] or event["resourceId"]
        out.write(f"{event['timestamp']}  {event['type']:<32} {what:<24} {who}\n")
        if changes:
            for key in ("before", "after"):
                if key in event:
                    out.write(f"    {key}: {json.dumps(event[key], sort_keys=True)}\n")
    if not events:
        out.write("no changes recorded in the last 90 days\n")
