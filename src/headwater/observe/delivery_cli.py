"""``headwater delivery DEST`` and ``headwater replay DEST``: Event Delivery and Replay from a
terminal, through the server's REST API (so they work against any process of a deployment)."""

from __future__ import annotations

import json
import sys
from typing import TextIO
from urllib.parse import quote

from headwater.admin_client import call_api


def show_delivery(
    base_url: str, token: str, destination: str, minutes: int, out: TextIO = sys.stdout
) -> None:
    url = f"{base_url.rstrip('/')}/api/v1/destinations/{quote(destination, safe='')}/delivery"
    report = call_api("GET", url, token, "delivery", params={"minutes": str(minutes)})
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
    result = call_api("POST", url, token, "replay", json={"start": start, "end": end})
    out.write(f"Read {result['read']} archived events; queued {result['queued']} for delivery.\n")
    for reason, count in sorted(result["filtered"].items()):
        out.write(f"  filtered {count} ({reason})\n")
    out.write(f"Follow progress with: headwater delivery {destination}\n")
