"""``headwater violations SOURCE`` and ``headwater mtu SOURCE``: Protocols from a terminal,
through the server's REST API, like ``headwater delivery``."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO
from urllib.parse import quote

from headwater.admin_client import call_api


def show_violations(
    base_url: str,
    token: str,
    source: str,
    window: str,
    as_json: bool,
    out: TextIO = sys.stdout,
) -> None:
    url = f"{base_url.rstrip('/')}/api/v1/violations"
    params = {"source": source, "window": window, "samples": "1" if as_json else "0"}
    data = call_api("GET", url, token, "violations", params=params)
    if as_json:
        out.write(json.dumps(data, indent=2) + "\n")
        return
    found = data["violations"]
    out.write(f"{source}: {len(found)} unique violations in the past {window}\n")
    by_event: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for violation in found:
        by_event.setdefault((violation["eventType"], violation["eventName"]), []).append(violation)
    for (event_type, name), violations in by_event.items():
        out.write(f"\n{name or '(' + event_type + ')'} [{event_type}]\n")
        for v in violations:
            out.write(
                f"  {v['count']:>8}  {v['violationType']:<14} {v['field']}: {v['description']}"
                f"  (last seen {v['lastSeen']})\n"
            )


def show_mtu(
    base_url: str, token: str, source: str, month: str | None, out: TextIO = sys.stdout
) -> None:
    url = f"{base_url.rstrip('/')}/api/v1/sources/{quote(source, safe='')}/mtu"
    data = call_api("GET", url, token, "mtu", params={"month": month} if month else {})
    out.write(
        f"{source} {data['month']}: {data['mtu']} MTUs "
        f"({data['userIds']} userIds, {data['anonymousIds']} anonymousIds without one)\n"
    )
