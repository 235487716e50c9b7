"""``headwater regulations``: deletion and suppression from a terminal, through the REST API."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO
from urllib.parse import quote

from headwater.admin_client import call_api

WHAT = "regulations"


def _base(url: str) -> str:
    return f"{url.rstrip('/')}/api/v1"


def list_regulations(
    url: str,
    token: str,
    *,
    source: str | None = None,
    status: str | None = None,
    types: Sequence[str] = (),
    as_json: bool = False,
    out: TextIO | None = None,
) -> None:
    out = out or sys.stdout  # read at call time: the caller's stdout
    path = "/regulations" if source is None else f"/regulations/sources/{quote(source, safe='')}"
    params: dict[str, Any] = {"pagination.count": 1000}
    if status:
        params["status"] = status
    if types:
        params["regulationTypes"] = ",".join(types)
    data = call_api("GET", _base(url) + path, token, WHAT, params=params)
    if as_json:
        out.write(json.dumps(data, indent=2) + "\n")
        return
    for item in data["regulations"]:
        subjects = item["subjects"]
        shown = ", ".join(subjects[:3]) + (f" (+{len(subjects) - 3})" if len(subjects) > 3 else "")
        out.write(
            f"{item['id']}  {item['regulationType']:<30} {item['status']:<16} "
            f"{item['createdAt']}  {item['subjectType']}: {shown}\n"
        )


def show_regulation(url: str, token: str, regulation_id: str, out: TextIO | None = None) -> None:
    out = out or sys.stdout  # read at call time: the caller's stdout
    path = f"/regulations/{quote(regulation_id, safe='')}"
    data = call_api("GET", _base(url) + path, token, WHAT)["regulation"]
    out.write(f"{data['id']}  {data['regulationType']}  {data['overallStatus']}\n")
    out.write(f"  created  {data['createdAt']}\n")
    if "finishedAt" in data:
        out.write(f"  finished {data['finishedAt']}\n")
    out.write(f"  {data['subjectType']}: {', '.join(data['subjects'])}\n")
    for stream in data["streamStatus"]:
        for step in stream["destinationStatus"]:
            error = f"  {step['errString']}" if step["errString"] else ""
            out.write(f"  {step['kind']:<12} {step['name']:<24} {step['status']}{error}\n")


def create_regulation(
    url: str,
    token: str,
    regulation_type: str,
    subject_ids: Sequence[str],
    *,
    subject_type: str = "USER_ID",
    source: str | None = None,
    out: TextIO | None = None,
) -> None:
    out = out or sys.stdout  # read at call time: the caller's stdout
    path = "/regulations" if source is None else f"/regulations/sources/{quote(source, safe='')}"
    body = {
        "regulationType": regulation_type,
        "subjectType": subject_type,
        "subjectIds": list(subject_ids),
    }
    data = call_api("POST", _base(url) + path, token, WHAT, json=body)
    out.write(f"{data['regulateId']}\n")


def list_suppressions(
    url: str, token: str, *, source: str | None = None, out: TextIO | None = None
) -> None:
    out = out or sys.stdout  # read at call time: the caller's stdout
    params: dict[str, Any] = {"pagination.count": 1000}
    if source:
        params["sourceId"] = source
    while True:
        data = call_api("GET", _base(url) + "/suppressions", token, WHAT, params=params)
        for subject in data["subjectIds"]:
            out.write(f"{subject}\n")
        following = data["pagination"].get("next")
        if not following:
            return
        params["pagination.cursor"] = following
