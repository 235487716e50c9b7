"""``headwater functions``: list, logs, test, versions, restore and deploy from a terminal,
through the REST API (``/api/v1/functions``), so they work against any process of a deployment.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from headwater.admin_client import call_api

WHAT = "functions"


def _base(url: str, name: str | None = None) -> str:
    base = f"{url.rstrip('/')}/api/v1/functions"
    return base if name is None else f"{base}/{quote(name, safe='')}"


def list_functions(
    url: str, token: str, *, as_json: bool = False, out: TextIO | None = None
) -> None:
    out = out or sys.stdout
    data = call_api("GET", _base(url), token, WHAT)
    if as_json:
        out.write(json.dumps(data, indent=2) + "\n")
        return
    for f in data["functions"]:
        deployed = f["deployedVersion"] if f["deployedVersion"] is not None else "-"
        out.write(
            f"{f['name']:<32} {f['kind']:<12} {f['language']:<11} "
            f"latest {f['latestVersion']:<4} deployed {deployed}\n"
        )
    out.write(f"{len(data['functions'])} of {data['limit']} functions\n")


def show_logs(
    url: str,
    token: str,
    name: str,
    *,
    count: int = 100,
    as_json: bool = False,
    out: TextIO | None = None,
) -> None:
    """The function's most recent errors and logs, newest first."""
    out = out or sys.stdout
    data = call_api("GET", _base(url, name) + "/logs", token, WHAT, params={"count": count})
    if as_json:
        out.write(json.dumps(data, indent=2) + "\n")
        return
    for entry in data["logs"]:
        where = f" {entry['instanceId']}" if entry["instanceId"] else ""
        outcome = f"{entry['error']}: {entry['message']}" if entry["error"] else "ok"
        out.write(f"{entry['at']}  v{entry['version']}{where}  {outcome}\n")
        for level, text in entry["logs"]:
            out.write(f"    [{level}] {text}\n")
    if not data["logs"]:
        out.write("no errors or logs in the last 30 days\n")


def test_function(
    url: str,
    token: str,
    name: str,
    *,
    event_file: str | None = None,
    request_file: str | None = None,
    settings_file: str | None = None,
    out: TextIO | None = None,
) -> bool:
    """Run LATEST on a sample event (a JSON object; a JSON array runs ``onBatch``) or, for a
    source function, a request (``{"method", "headers", "body"}``); print what it did. True
    when it did not throw."""
    out = out or sys.stdout
    if (event_file is None) == (request_file is None):
        raise SystemExit("headwater functions test: give --event FILE or --request FILE")
    body: dict[str, Any] = {}
    if event_file is not None:
        sample = _json(event_file, "--event")
        body["events" if isinstance(sample, list) else "event"] = sample
    else:
        body["request"] = _json(request_file or "", "--request")
    if settings_file is not None:
        body["settings"] = _json(settings_file, "--settings")
    data = call_api("POST", _base(url, name) + "/test", token, WHAT, json=body)
    out.write(f"version {data['version']}, {data['handler']}, {data['durationMs']:.0f} ms\n")
    for level, text in data["logs"]:
        out.write(f"[{level}] {text}\n")
    for request in data["requests"]:
        status = request["status"] if request["status"] is not None else request["error"]
        out.write(f"-> {request['method']} {request['url']}  {status}\n")
    for call in data["emitted"]:
        out.write(f"emitted {json.dumps(call, sort_keys=True)}\n")
    error = data["error"]
    if error is not None:
        out.write(f"error {error['type']}: {error['message']} ({error['code']})\n")
        return False
    out.write(f"output {json.dumps(data['output'], sort_keys=True)}\n")
    return True


def list_versions(url: str, token: str, name: str, *, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    data = call_api("GET", _base(url, name) + "/versions", token, WHAT)
    for version in data["versions"]:
        labels = " ".join(version["labels"])
        out.write(f"{version['version']:<6} {version['createdAt']}  {labels}\n".rstrip() + "\n")


def restore(
    url: str,
    token: str,
    name: str,
    version: int,
    *,
    deploy: bool = False,
    out: TextIO | None = None,
) -> None:
    """A new version with ``version``'s code (deployed with ``deploy``)."""
    out = out or sys.stdout
    path = f"{_base(url, name)}/versions/{version}/restore"
    data = call_api("POST", path, token, WHAT, json={"deploy": deploy})["function"]
    out.write(_labels(data))


def deploy(
    url: str, token: str, name: str, version: int | None = None, *, out: TextIO | None = None
) -> None:
    """Every instance runs ``version`` (LATEST when None) from now on."""
    out = out or sys.stdout
    body = {} if version is None else {"version": version}
    data = call_api("POST", _base(url, name) + "/deploy", token, WHAT, json=body)["function"]
    out.write(_labels(data))


def _labels(function: dict[str, Any]) -> str:
    return (
        f"{function['name']}: latest {function['latestVersion']}, "
        f"deployed {function['deployedVersion']}\n"
    )


def _json(path: str, option: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SystemExit(f"headwater functions test: cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise SystemExit(f"headwater functions test: {option} {path} is not JSON: {exc}") from None
