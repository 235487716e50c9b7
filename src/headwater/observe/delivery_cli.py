"""``headwater delivery DEST``, ``headwater replay DEST`` and ``headwater test-event DEST FILE``:
Event Delivery, Replay and the Event Tester from a terminal, through the server's REST API (so
they work against any process of a deployment)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO
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
            _payloads(sample, out)
    out.flush()


def _payloads(sample: dict[str, Any], out: TextIO, limit: int | None = 400) -> None:
    """Event Delivery's three payloads of a sample, the ones it has."""
    for label, key in (
        ("You sent", "youSent"),
        ("Request to destination", "requestToDestination"),
        ("Response from destination", "responseFromDestination"),
    ):
        if sample.get(key) is not None:
            text = json.dumps(sample[key], ensure_ascii=False)
            out.write(f"    {label}: {text[:limit]}\n")


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


def send_event_to_tester(
    base_url: str,
    token: str,
    destination: str,
    event_file: str,
    mapping_id: str | None = None,
    out: TextIO = sys.stdout,
) -> bool:
    """Send the message in ``event_file`` ("-": standard input) through the Event Tester and
    show what the destination was sent and answered; whether it was delivered."""
    try:
        text = sys.stdin.read() if event_file == "-" else Path(event_file).read_text()
        event = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SystemExit(
            f"headwater test-event: cannot read a JSON message from {event_file}: {exc}"
        ) from None
    url = f"{base_url.rstrip('/')}/api/v1/destinations/{quote(destination, safe='')}/tester"
    body: dict[str, Any] = {"event": event}
    if mapping_id is not None:
        body["mappingId"] = mapping_id
    answer = call_api("POST", url, token, "test-event", json=body)
    d = answer["destination"]
    out.write(f"{d['name']} ({d['type']}): {answer['summary']}\n")
    for attempt in answer["attempts"]:
        mapping = f" mapping {attempt['mappingName']!r}" if attempt.get("mappingName") else ""
        detail = f": {attempt['detail']}" if attempt.get("detail") else ""
        out.write(f"\n  {attempt['code']}{mapping}{detail}\n")
        _payloads(attempt, out, None)
    out.flush()
    return bool(answer["delivered"])
