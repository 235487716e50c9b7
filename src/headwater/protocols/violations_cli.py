"""``headwater violations SOURCE`` and ``headwater mtu SOURCE``: Protocols from a terminal,
through the server's REST API, like ``headwater delivery``."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO
from urllib.parse import quote

import httpx


def _get(url: str, token: str, what: str, params: dict[str, str]) -> dict[str, Any]:
    try:
        response = httpx.get(
            url, params=params, headers={"authorization": f"Bearer {token}"}, timeout=30.0
        )
    except httpx.TransportError as exc:
        raise SystemExit(
            f"headwater {what}: cannot reach {url}: {exc}. Is the server running? "
            "Pass its address with --url."
        ) from None
    if response.status_code >= 400:
        try:
            message = response.json()["errors"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            message = response.text[:200]
        hint = " Check HEADWATER_ADMIN_TOKEN." if response.status_code == 401 else ""
        raise SystemExit(f"headwater {what}: {response.status_code}: {message}.{hint}")
    data: dict[str, Any] = response.json()["data"]
    return data


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
    data = _get(url, token, "violations", params)
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
    data = _get(url, token, "mtu", {"month": month} if month else {})
    out.write(
        f"{source} {data['month']}: {data['mtu']} MTUs "
        f"({data['userIds']} userIds, {data['anonymousIds']} anonymousIds without one)\n"
    )
