"""The REST API called from inside the process, as the signed-in person.

Pages read and change the workspace through the same routes as every other client (principle
5), so each route's checks, errors and audit records hold for the app too. The caller's
identity travels in the ASGI scope (``headwater.principal``), which no HTTP client can set.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, Sequence
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

    @property
    def form_status(self) -> int:
        """A refused form shows again with the API's 4xx; anything else is the server's fault."""
        return self.status if 400 <= self.status < 500 else 502


@dataclass(frozen=True)
class Stream:
    """A streamed answer: its status and headers at once, then the body as the API sends it."""

    status: int
    headers: list[tuple[bytes, bytes]]
    chunks: AsyncGenerator[bytes, None]


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
        content: bytes | None = None,
    ) -> Answer:
        """``content``: a body sent as it is (a CSV upload) instead of ``body`` as JSON."""
        payload = b"" if body is None else json.dumps(body).encode()
        if content is not None:
            payload = content
        sends = body is not None or content is not None
        scope = _scope(method, path, principal, params, payload if sends else None)
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

    async def stream(
        self,
        path: str,
        principal: Principal,
        *,
        params: dict[str, Any] | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> Stream:
        """A GET whose body arrives piece by piece (Server-Sent Events). The route runs in a task
        of its own until its body ends or the caller stops reading, which tells the route the
        client went away, as a closed connection would."""
        scope = _scope("GET", path, principal, params, None, headers)
        messages: asyncio.Queue[Message | None] = asyncio.Queue()
        gone = asyncio.Event()
        asked = False

        async def receive() -> Message:
            nonlocal asked
            if not asked:
                asked = True
                return {"type": "http.request", "body": b"", "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def run() -> None:
            try:
                await self.api(scope, receive, messages.put)
            finally:
                messages.put_nowait(None)

        task = asyncio.create_task(run())
        start = await messages.get()
        if start is None or start["type"] != "http.response.start":
            await _finish(task)
            return Stream(500, [], _no_chunks())

        async def chunks() -> AsyncGenerator[bytes, None]:
            try:
                while (message := await messages.get()) is not None:
                    if message["type"] != "http.response.body":
                        continue
                    if message.get("body"):
                        yield message["body"]
                    if not message.get("more_body", False):
                        return
            finally:
                gone.set()
                await _finish(task)

        return Stream(start["status"], list(start.get("headers", [])), chunks())


def _scope(
    method: str,
    path: str,
    principal: Principal,
    params: dict[str, Any] | None,
    payload: bytes | None,
    extra: Sequence[tuple[bytes, bytes]] = (),
) -> dict[str, Any]:
    headers = [(b"host", b"headwater.internal"), (b"accept", b"application/json"), *extra]
    if payload is not None:
        headers += [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ]
    return {
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


async def _finish(task: asyncio.Task[None]) -> None:
    """Stop the route's task; what it raised was already answered (or logged) by the API."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def _no_chunks() -> AsyncGenerator[bytes, None]:
    return
    yield
