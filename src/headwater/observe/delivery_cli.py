"""``headwater delivery DEST`` and ``headwater replay DEST``: Event Delivery and Replay from a
terminal, through the server's REST API (so they work against any process of a deployment)."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO
from urllib.parse import quote

import httpx


def _call(method: str, url: str, token: str, what: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = httpx.request(
            method,
            url,
            headers={"authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(10.0, read=600.0),
            **kwargs,
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


def show_delivery(
    base_url: str, token: str, destination: str, minutes: int, out: TextIO = sys.stdout
) -> None:
    url = f"{base_url.rstrip('/')}/api/v1/destinations/{quote(destination, safe='')}/delivery"
    report = _call("GET", url, token, "delivery", params={"minutes": str(minutes)})
    d = report["destination"]
    state = "enabled" if d["enabled"] else "disabled"
    p95 = report["p95LatencyMs"]
    out.write(f"{d['name']} ({d['type']}, {state}) — last {minutes} min\n")
    out.write(f"  delivered      {report['delivered']}\n")
    out.write(f"  not delivered  {report['notDelivered']}\n")
    out.write(f"  retrying       {report['retrying']} (queued {report['pending']})\n")
    out.write(f"  p95 latency    {'-' if p95 is None else f'{p95} ms'}\n")
    for reason, count in sorted(report["filtered"].items()):
        out.write(f"  filtered       {count} {reason}\n")
    for error in report["errors"]:
        out.write(f"\n  {error['count']} × {error['code']} ({error['status']})\n")
        for sample in error["samples"][:1]:
            for label, key in (
                ("You sent", "youSent"),
                ("Request to destination", "requestToDestination"),
                ("Response from destination", "responseFromDestination"),
            ):
                if sample.get(key) is not None:
                    text = json.dumps(sample[key], ensure_ascii=False)
                    out.write(f"    {label}: {text[:400]}\n")
    out.flush()


def start_replay(
    base_url: str, token: str, destination: str, start: str, end: str, out: TextIO = sys.stdout
) -> None:
    url = f"{base_url.rstrip('/')}/api/v1/destinations/{quote(destination, safe='')}/replay"
    out.write(f"Replaying {start} … {end} to {destination} (reading the archive)…\n")
    out.flush()
    result = _call("POST", url, token, "replay", json={"start": start, "end": end})
    out.write(f"Read {result['read']} archived events; queued {result['queued']} for delivery.\n")
    for reason, count in sorted(result["filtered"].items()):
        out.write(f"  filtered {count} ({reason})\n")
    out.write(f"Follow progress with: headwater delivery {destination}\n")
