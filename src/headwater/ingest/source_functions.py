"""A source function's webhook: ``POST /v1/functions/<source name or id>`` (§11.2).

Authenticated as Segment's webhook URL is: the source's write key as HTTP Basic user name, or
in the ``b`` query parameter as ``base64("<writeKey>:")``. Only POST, only JSON and form
bodies, at most 512 KiB. The request is stored (``functions/requests.py``) before the answer
goes out, and the worker runs the source's function on it; so the caller learns only that the
request was taken (200) or refused (4xx), never what the function did or returned, as in
Segment. Raw ASGI like the rest of the Tracking API: no framework on a vendor's webhook path.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import parse_qs, unquote

import msgspec
from sqlalchemy.exc import OperationalError

from headwater.clock import Clock
from headwater.errors import BodyError
from headwater.functions.requests import FunctionRequests
from headwater.ingest.auth import write_key_from_header
from headwater.ingest.body import read_body
from headwater.ingest.sources import SourceCache
from headwater.store.workspace import SourceInfo

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PREFIX: Final = "/v1/functions/"
MAX_BODY: Final = 512 * 1024  # "The maximum payload size for an incoming webhook payload"
CONTENT_TYPES: Final = ("application/json", "application/x-www-form-urlencoded")
# Segment's discard reasons for a webhook URL that names no source (``unknown_source``).
NO_WRITE_KEY: Final = "Could not read write key from url"
UNKNOWN_KEY: Final = "Could not find source from write key"

logger = logging.getLogger(__name__)
_encode = msgspec.json.encode


class SourceFunctionEndpoint:
    """Takes a source function's webhook requests and stores them for the worker.

    ``runs_function(source_id)``: whether the source runs a deployed source function."""

    def __init__(
        self,
        sources: SourceCache,
        requests: FunctionRequests,
        runs_function: Callable[[str], bool],
        *,
        clock: Clock,
    ) -> None:
        self._sources = sources
        self._requests = requests
        self._runs_function = runs_function
        self._clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            status, body, extra = await self._handle(scope, receive)
        except Exception:
            logger.exception("source function endpoint: %s failed", scope.get("path"))
            status, extra = 500, []
            body = _error("server_error", "The server failed; the request was not kept. Retry.")
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    *extra,
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _handle(
        self, scope: Scope, receive: Receive
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        if scope["method"] != "POST":
            return (
                405,
                _error(
                    "method_not_allowed",
                    f"{scope['method']} requests are not supported; a source function only "
                    "receives POST requests.",
                ),
                [(b"allow", b"POST")],
            )
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            headers.setdefault(bytes(name).lower(), bytes(value))
        query = bytes(scope.get("query_string", b"")).decode("latin-1")
        from_header = write_key_from_header(headers.get(b"authorization"))
        write_key = from_header or _write_key_from_query(query)
        if write_key is None:
            return 401, _error("unknown_source", NO_WRITE_KEY), [(b"www-authenticate", b"Basic")]
        source = await asyncio.to_thread(self._sources.lookup, write_key)
        named = unquote(scope["path"][len(PREFIX) :])
        if source is None or not _names(source, named):
            return 401, _error("unknown_source", UNKNOWN_KEY), [(b"www-authenticate", b"Basic")]
        if not await asyncio.to_thread(self._runs_function, source.id):
            return (
                404,
                _error(
                    "unknown_source",
                    f"Source {source.name!r} does not run a source function; attach a deployed "
                    "source function to it first.",
                ),
                [],
            )
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower().decode("latin-1")
        if media not in CONTENT_TYPES:
            shown = media or "none"
            return (
                400,
                _error(
                    "BAD_REQUEST",
                    f"Unsupported content-type: {shown}; send application/json or "
                    "application/x-www-form-urlencoded.",
                ),
                [],
            )
        try:
            raw = await read_body(receive, headers, MAX_BODY)
        except BodyError as exc:
            if exc.code == "payload_too_large":
                return (
                    413,
                    _error(
                        "payload_too_large",
                        "The request is over the 512 KiB limit for a source function's webhook "
                        "payload.",
                    ),
                    [],
                )
            return 400, _error(exc.code, exc.message), []
        request = {
            "method": "POST",
            "url": _url(scope, headers),
            # The write key stays with the endpoint: the code gets the vendor's headers.
            "headers": [
                [name.decode("latin-1"), value.decode("latin-1")]
                for name, value in scope["headers"]
                if not (from_header and bytes(name).lower() == b"authorization")
            ],
            **_body(raw),
        }
        try:
            await asyncio.to_thread(
                self._requests.add, source.workspace_id, source.id, request, self._clock()
            )
        except OperationalError as exc:
            logger.warning("source function endpoint: cannot keep a request: %s", exc)
            return (
                503,
                _error("unavailable", "The request cannot be kept right now; retry later."),
                [(b"retry-after", b"5")],
            )
        return 200, b'{"success":true}', []


def _write_key_from_query(query: str) -> str | None:
    """``?b=<base64("writeKey:")>``, Segment's webhook URL form (padding optional)."""
    values = parse_qs(query).get("b")
    if not values:
        return None
    encoded = values[0].strip()
    try:
        decoded = base64.b64decode(encoded + "=" * (-len(encoded) % 4), altchars=b"-_")
        key = decoded.decode("utf-8").split(":", 1)[0]
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return key or None


def _names(source: SourceInfo, named: str) -> bool:
    return named in (source.id, source.name, source.slug)


def _url(scope: Scope, headers: dict[bytes, bytes]) -> str:
    host = headers.get(b"host", b"localhost").decode("latin-1")
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    scheme = scope.get("scheme", "http")
    return f"{scheme}://{host}{scope['path']}" + (f"?{query}" if query else "")


def _body(raw: bytes) -> dict[str, str]:
    """The body as text when it is UTF-8 (what a regulation's eraser reads), else base64."""
    try:
        return {"body": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"body_base64": base64.b64encode(raw).decode("ascii")}


def _error(code: str, message: str) -> bytes:
    return _encode({"code": code, "message": message})
