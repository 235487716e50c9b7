"""``headwater tail SOURCE``: the Source Debugger in a terminal, one line per message.

It prints the newest few entries, then follows the server's Server-Sent Events stream from the
last one printed, so nothing is missed or printed twice between the two. When the connection
drops (the server restarts, a proxy times out) it reconnects after the last entry it printed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO
from urllib.parse import quote

import httpx
import msgspec

RECONNECT_SECONDS = 1.0
# Longer than the server's 15-second heartbeat, so a silent connection means a dead one.
READ_TIMEOUT_SECONDS = 45.0


def tail(
    base_url: str,
    admin_token: str,
    source: str,
    *,
    follow: bool = True,
    out: TextIO = sys.stdout,
    recent: int = 10,
    count: int | None = None,
) -> None:
    """Print the ``recent`` newest entries, then (``follow``) new ones as they arrive.

    ``count`` stops after that many followed entries (for scripts and tests). Errors the user
    can fix (bad token, unknown source, server down) end with SystemExit and a message.
    """
    base = base_url.rstrip("/") + f"/api/v1/sources/{quote(source, safe='')}/debugger"
    headers = {"authorization": f"Bearer {admin_token}"}
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_SECONDS)
    with httpx.Client(headers=headers, timeout=timeout) as client:
        last_id: int | None = None  # None: the stream starts at whatever is newest then
        if recent > 0 or not follow:
            response = _checked(_get(client, base, params={"limit": str(max(recent, 1))}))
            entries: list[dict[str, Any]] = response.json()["data"]["events"]
            for entry in reversed(entries[:recent]):  # the API answers newest first
                _print(out, entry)
            last_id = max((int(e["id"]) for e in entries), default=0)
        if not follow:
            return
        shown = 0
        while count is None or shown < count:
            params = {} if last_id is None else {"after": str(last_id)}
            try:
                with client.stream("GET", base + "/stream", params=params) as response:
                    _checked(response)
                    for entry in _events(response.iter_lines()):
                        _print(out, entry)
                        last_id = max(last_id or 0, int(entry["id"]))
                        shown += 1
                        if count is not None and shown >= count:
                            return
            except httpx.TransportError as exc:
                print(f"headwater tail: connection lost ({exc}); reconnecting", file=sys.stderr)
            time.sleep(RECONNECT_SECONDS)


def format_entry(entry: dict[str, Any]) -> str:
    """One compact line: time, status/reason, type, event or name, who, messageId."""
    message = entry.get("message")
    msg: dict[str, Any] = message if isinstance(message, dict) else {}
    status = str(entry.get("status", "?"))
    if entry.get("reason"):
        status += f"/{entry['reason']}"
    kind = str(msg.get("type") or "-")
    name = msg.get("event") or msg.get("name") or msg.get("groupId") or msg.get("previousId")
    if msg.get("userId") not in (None, ""):
        who = f"userId={msg['userId']}"
    elif msg.get("anonymousId") not in (None, ""):
        who = f"anonymousId={msg['anonymousId']}"
    else:
        who = "-"
    fields = [
        str(entry.get("receivedAt") or "-"),
        f"{status:<24}",
        f"{kind:<8}",
        _quote(name) if name not in (None, "") else "-",
        who,
        str(msg.get("messageId") or "-"),
    ]
    if not isinstance(message, dict):  # a dropped message that was not even an object
        fields.append(_short(message))
    return " ".join(fields)


def _print(out: TextIO, entry: dict[str, Any]) -> None:
    out.write(format_entry(entry) + "\n")
    out.flush()


def _events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """The JSON ``data`` of each Server-Sent Event; comments and other fields are skipped."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield msgspec.json.decode("\n".join(data))
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def _get(client: httpx.Client, url: str, params: dict[str, str]) -> httpx.Response:
    try:
        return client.get(url, params=params)
    except httpx.TransportError as exc:
        raise SystemExit(f"headwater tail: cannot reach {url}: {exc}") from exc


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code == 200:
        return response
    response.read()
    try:
        detail = response.json()["errors"][0]["message"]
    except (ValueError, KeyError, IndexError, TypeError):
        detail = response.text[:200]
    raise SystemExit(f"headwater tail: the server answered {response.status_code}: {detail}")


def _quote(value: Any) -> str:
    text = str(value)
    return f'"{text}"' if " " in text else text


def _short(value: Any) -> str:
    text = msgspec.json.encode(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."
