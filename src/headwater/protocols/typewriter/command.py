"""``headwater typewriter PLAN``: write a typed client for a plan, from a running server's
REST API or from a file of rules (Segment's Typewriter needs a token and Segment; this needs
neither when the rules are in a file, e.g. the `plan.json` a previous build wrote)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from headwater.admin_client import call_api
from headwater.protocols.compiled import PlanError, Rule, compile_plan
from headwater.protocols.typewriter import Language, generate, rules_from_api

_PAGE = 200  # the Public API's largest page of rules


def rules_from_file(path: str) -> list[Rule]:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text("utf-8")
        return rules_from_api(json.loads(text))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SystemExit(f"headwater typewriter: cannot read rules from {path}: {exc}") from None


def rules_from_server(base_url: str, token: str, plan: str) -> list[Rule]:
    """Every page of `GET /api/v1/tracking-plans/{plan}/rules`."""
    url = f"{base_url.rstrip('/')}/api/v1/tracking-plans/{quote(plan, safe='')}/rules"
    items: list[Any] = []
    cursor: str | None = None
    while True:
        params = {"pagination.count": str(_PAGE)}
        if cursor:
            params["pagination.cursor"] = cursor
        data = call_api("GET", url, token, "typewriter", params=params)
        page = data.get("rules")
        if not isinstance(page, list):
            raise SystemExit(f"headwater typewriter: {url} answered without a rules list")
        items += page
        pagination = data.get("pagination")
        cursor = pagination.get("next") if isinstance(pagination, dict) else None
        if not cursor:
            break
    try:
        return rules_from_api(items)
    except ValueError as exc:
        raise SystemExit(f"headwater typewriter: {url}: {exc}") from None


def write_client(
    plan: str, rules: list[Rule], language: Language, out: Path, report: TextIO | None = None
) -> list[Path]:
    """Check the plan compiles (a client for a plan the server refuses helps nobody), then
    write the files."""
    try:
        compile_plan(rules)
    except PlanError as exc:
        raise SystemExit(f"headwater typewriter: {exc}") from None
    files = generate(plan, rules, language)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in sorted(files.items()):
        path = out / name
        path.write_text(text, "utf-8")
        written.append(path)
    report = report or sys.stdout
    events = len({r.key for r in rules if r.type == "TRACK"})
    report.write(f"{language} client for {plan!r} ({events} events) in {out}:\n")
    for path in written:
        report.write(f"  {path.name}\n")
    return written
