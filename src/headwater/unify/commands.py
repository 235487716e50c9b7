"""``headwater insights SPACE``, ``headwater profiles upload|template SPACE`` and ``headwater
subscriptions upload|template|report|get SPACE``: Unify from a terminal, through the running
server's REST API like ``headwater violations``."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import httpx

from headwater.admin_client import answer_data, call_api
from headwater.timestamps import format_timestamp, parse_timestamp

_DURATION = re.compile(r"(\d+)([mhd])")
_UNITS = {"m": 60, "h": 3600, "d": 86_400}


def since_time(text: str, now: float | None = None) -> str:
    """``--since``: an ISO 8601 time, or a duration back from now (``30m``, ``24h``, ``7d``)."""
    match = _DURATION.fullmatch(text.strip())
    if match is not None:
        seconds = int(match.group(1)) * _UNITS[match.group(2)]
        at = datetime.fromtimestamp(time.time() if now is None else now, UTC)
        return format_timestamp(at - timedelta(seconds=seconds))
    parsed = parse_timestamp(text)
    if parsed is None:
        raise SystemExit(
            f"headwater insights: --since {text!r}: give an ISO 8601 time or a duration such "
            "as 30m, 24h or 7d"
        )
    return format_timestamp(parsed)


def _space_url(base_url: str, space: str, tail: str) -> str:
    return f"{base_url.rstrip('/')}/api/v1/spaces/{quote(space, safe='')}/{tail}"


def fetch_insights(
    base_url: str, token: str, space: str, params: dict[str, str]
) -> list[dict[str, Any]]:
    """Every record the filters match, newest first (at most 500), page after page."""
    url = _space_url(base_url, space, "insights")
    found: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, "pagination.count": "200"}
        if cursor:
            query["pagination.cursor"] = cursor
        data = call_api("GET", url, token, "insights", params=query)
        found += data["insights"]
        cursor = data["pagination"].get("next")
        if not cursor:
            return found


def show_insights(
    base_url: str,
    token: str,
    space: str,
    params: dict[str, str],
    as_json: bool,
    out: TextIO | None = None,
) -> None:
    out = out or sys.stdout
    records = fetch_insights(base_url, token, space, params)
    if as_json:
        out.write(json.dumps(records, indent=2) + "\n")
        return
    out.write(f"{space}: {len(records)} records\n")
    for r in records:
        ext = r["externalId"]
        about = f"{ext['type']}:{ext['id']}" if ext else ""
        if r["kind"] == "merge":
            what = f"{r['mergedProfileId']} merged into {r['profileId']}"
        elif r["kind"] == "mapping":
            made = " (new profile)" if r.get("newProfile") else ""
            what = f"{about} mapped to {r['profileId']}{made}"
        else:
            what = f"{r['name']}" + (f": {about}" if about else "")
            if r["profileId"]:
                what += f" (profile {r['profileId']})"
        out.write(
            f"{r['timestamp']}  {r['kind']:<9}  {what}  "
            f"[{r['eventType']} {r['messageId']} from {r['sourceId']}]\n"
        )


# --- profile CSV uploads ------------------------------------------------------------------------

CHUNK_BYTES = 1 << 20


def _file_chunks(path: Path, sent: list[int]) -> Iterator[bytes]:
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            sent[0] += len(chunk)
            yield chunk


def upload_profiles(
    base_url: str,
    token: str,
    space: str,
    path: Path,
    *,
    wait: bool = True,
    poll: float = 0.5,
    out: TextIO | None = None,
    tail: str = "profiles/uploads",
    params: dict[str, str] | None = None,
    command: str = "profiles upload",
) -> dict[str, Any]:
    """Send ``path`` (streamed) to ``tail`` (the profile CSV uploads, or a subscription
    uploader's), then follow the upload until it ends, printing progress; the upload as the
    API last showed it."""
    out = out or sys.stderr
    url = _space_url(base_url, space, tail)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SystemExit(f"headwater {command}: cannot read {path}: {exc}") from None
    sent = [0]
    try:
        response = httpx.post(
            url,
            params={"fileName": path.name, **(params or {})},
            content=_file_chunks(path, sent),
            headers={
                "authorization": f"Bearer {token}",
                "content-type": "text/csv",
                "content-length": str(size),
            },
            timeout=httpx.Timeout(10.0, read=600.0, write=600.0),
        )
    except httpx.TransportError as exc:
        raise SystemExit(
            f"headwater {command}: cannot reach {url}: {exc}. Is the server running? "
            "Pass its address with --url."
        ) from None
    upload: dict[str, Any] = answer_data(response, command)["upload"]
    out.write(f"{path.name}: {upload['rows']} rows accepted as upload {upload['id']}\n")
    if not wait:
        return upload
    kind = "subscriptions" if upload.get("kind") == "subscriptions" else "profiles"
    one = _space_url(base_url, space, f"{kind}/uploads/{quote(upload['id'], safe='')}")
    shown = -1
    while upload["status"] == "processing":
        if upload["appendedRows"] != shown:
            shown = upload["appendedRows"]
            out.write(f"  {shown}/{upload['rows']} rows sent as Identify calls\n")
        time.sleep(poll)
        upload = call_api("GET", one, token, command)["upload"]
    if upload["status"] == "succeeded":
        out.write(f"  {upload['appendedRows']}/{upload['rows']} rows sent: done\n")
    else:
        out.write(f"  failed: {upload['error']}\n")
    if upload.get("errorRows"):
        out.write(
            f"  {upload['errorRows']} rows in the error report so far (identity resolution may "
            f"add more): headwater subscriptions report {space} {upload['id']}\n"
        )
    return upload


def show_template(
    base_url: str,
    token: str,
    space: str,
    out: TextIO | None = None,
    tail: str = "profiles/uploads/template",
    command: str = "profiles template",
) -> None:
    """Print a CSV the API serves (a template, an error report)."""
    out = out or sys.stdout
    url = _space_url(base_url, space, tail)
    try:
        response = httpx.get(url, headers={"authorization": f"Bearer {token}"}, timeout=30.0)
    except httpx.TransportError as exc:
        raise SystemExit(f"headwater {command}: cannot reach {url}: {exc}") from None
    if response.status_code >= 400:
        answer_data(response, command)  # exits with the API's message
    out.write(response.text)


# --- user subscriptions -------------------------------------------------------------------------


def show_states(
    base_url: str,
    token: str,
    space: str,
    vectors: list[tuple[str, str]],
    as_json: bool,
    out: TextIO | None = None,
) -> None:
    """The subscription states of ``(type, key)`` contact vectors."""
    out = out or sys.stdout
    url = _space_url(base_url, space, "messaging-subscriptions/batch")
    body = {"subscriptions": [{"type": t, "key": k} for t, k in vectors]}
    data = call_api("POST", url, token, "subscriptions get", json=body)
    if as_json:
        out.write(json.dumps(data, indent=2) + "\n")
        return
    for found in data["successes"]:
        status = found.get("status", "(no subscription status)")
        out.write(f"{found['type']:<8}  {found['key']}  {status}\n")
        for group in found.get("groups", []):
            out.write(f"          group {group['name']}: {group['status']}\n")
    for failed in data["failures"]:
        error = failed["errors"][0]
        out.write(f"{failed['type']:<8}  {failed['key']}  {error['code']}: {error['message']}\n")
