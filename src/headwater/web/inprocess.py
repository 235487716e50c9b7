"""The REST API called from inside the process, as the signed-in person.

Pages read and change the workspace through the same routes as every other client (principle
5), so each route's checks, errors and audit records hold for the app too. The caller's
identity travels in the ASGI scope (``headwater.principal``), which no HTTP client can set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from starlette.types import ASGIApp, Message

from headwater.iam.access import PRINCIPAL_SCOPE_KEY, Principal


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # the decoded JSON, or None

    @property
    def data(self) -> dict[str, Any]:
        found = self.body.get("data") if isinstance(self.body, dict) else None
        return found if isinstance(found, dict) else {}

    @property
    def error(self) -> str:
        try:
            return str(self.body["errors"][0]["message"])
        except (KeyError, IndexError, TypeError):
            return f"the server answered {self.status}"


class InProcessAPI:
    def __init__(self, api: ASGIApp) -> None:
        self.api = api

    async def call(
        self,
        method: str,
        path: str,
        principal: Principal,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> Answer:
        payload = b"" if body is None else json.dumps(body).encode()
        headers = [(b"host", b"headwater.internal"), (b"accept", b"application/json")]
        if body is not None:
            headers += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ]
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": urlencode(params or {}, doseq=True).encode(),
            "headers": headers,
            "client": ("127.0.0.1", 0),
            "server": ("headwater.internal", 80),
            "state": {},
            PRINCIPAL_SCOPE_KEY: principal,
        }
        sent = False
        status = 500
        chunks: list[bytes] = []

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self.api(scope, receive, send)
        raw = b"".join(chunks)
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
        return Answer(status, decoded)
