"""The CLI's side of the REST API: one authenticated call, and errors that say what to do.

`headwater delivery`, `replay`, `violations`, `mtu`, `typewriter` and `warehouse sync` talk to a
running server rather than its database, so they work against any process of a deployment.
"""

from __future__ import annotations

from typing import Any

import httpx

TIMEOUT = httpx.Timeout(10.0, read=600.0)  # a replay or a sync may take minutes to answer


def call_api(
    method: str, url: str, token: str, what: str, *, timeout: httpx.Timeout = TIMEOUT, **kwargs: Any
) -> dict[str, Any]:
    """The `data` object of the answer; any failure ends the command with its reason."""
    try:
        response = httpx.request(
            method, url, headers={"authorization": f"Bearer {token}"}, timeout=timeout, **kwargs
        )
    except httpx.TransportError as exc:
        raise SystemExit(
            f"headwater {what}: cannot reach {url}: {exc}. Is the server running? "
            "Pass its address with --url."
        ) from None
    return answer_data(response, what)


def answer_data(response: httpx.Response, what: str) -> dict[str, Any]:
    """The `data` object of a REST answer, or the command ended with the API's own message."""
    if response.status_code >= 400:
        try:
            message = response.json()["errors"][0]["message"]
        except (ValueError, KeyError, IndexError, TypeError):
            message = response.text[:200]
        hint = " Check HEADWATER_ADMIN_TOKEN." if response.status_code == 401 else ""
        raise SystemExit(f"headwater {what}: {response.status_code}: {message}.{hint}")
    try:
        body = response.json()
    except ValueError:
        body = None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise SystemExit(f"headwater {what}: {response.url} answered without a data object")
    return data
