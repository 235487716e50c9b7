"""``headwater workspace``: the workspace's deletion from a terminal, through the REST API."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from headwater.admin_client import call_api

WHAT = "workspace"


def _url(url: str) -> str:
    return f"{url.rstrip('/')}/api/v1/workspace/deletion"


def _show(deletion: dict[str, Any], out: TextIO | None) -> None:
    out = out or sys.stdout  # read now: a test's capture may have replaced it
    if deletion.get("status") is None:
        out.write(f"workspace {deletion.get('workspace')!s}: no deletion requested\n")
        return
    out.write(f"workspace {deletion['workspace']}: deletion {deletion['status']}\n")
    out.write(f"  requested      {deletion['requestedAt']}\n")
    if deletion["status"] == "PENDING" and deletion["revocable"]:
        out.write(
            f"  revocable until {deletion['irrevocableAt']} (headwater workspace revoke-deletion)\n"
        )
    elif deletion["status"] in ("PENDING", "PURGING"):
        out.write(
            f"  irreversible since {deletion['irrevocableAt']}; purged by {deletion['purgeBy']}\n"
        )
    for key, label in (("revokedAt", "revoked"), ("finishedAt", "purged")):
        if deletion.get(key):
            out.write(f"  {label:<14} {deletion[key]}\n")


def status(url: str, token: str, *, as_json: bool = False, out: TextIO | None = None) -> None:
    deletion = call_api("GET", _url(url), token, WHAT)["deletion"]
    if as_json:
        (out or sys.stdout).write(json.dumps(deletion, indent=2) + "\n")
    else:
        _show(deletion, out)


def delete(url: str, token: str, confirm: str, *, out: TextIO | None = None) -> None:
    """Request the deletion; ``confirm`` is the workspace's name, as the API asks."""
    deletion = call_api("POST", _url(url), token, WHAT, json={"confirm": confirm})["deletion"]
    _show(deletion, out)


def revoke(url: str, token: str, *, out: TextIO | None = None) -> None:
    deletion = call_api("DELETE", _url(url), token, WHAT)["deletion"]
    _show(deletion, out)
