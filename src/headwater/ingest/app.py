"""The Tracking API: Segment's ``/v1/*`` routes as a raw ASGI application.

This is the hot path, so it is plain ASGI with no framework: per request it reads the body once,
decodes it once (msgspec), normalises each message, and waits for one group commit. Status
codes follow Segment: 400 only for bodies that cannot be used at all (invalid JSON, nested too
deep, over the size limits, no write key), 200 for everything else — messages that break the
Spec are acknowledged and dropped under Segment's discard code, while their good neighbours are
kept. No exception raised by a client's bytes becomes a 500.
"""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from headwater import reasons
from headwater.clock import Clock
from headwater.config.settings import ServerSettings
from headwater.errors import BodyError, LogUnavailable, UnstorableSubmission
from headwater.ingest.auth import write_key_from_body, write_key_from_header
from headwater.ingest.body import (
    BATCH_LIMIT,
    MAX_DEPTH,
    SINGLE_LIMIT,
    accept_body,
    decode_batch,
    decode_json,
    read_body,
)
from headwater.ingest.committer import GroupCommitter, Submission
from headwater.ingest.normalize import Discard, RequestInfo, normalize
from headwater.ingest.pixel import GIF, pixel_message
from headwater.ingest.ratelimit import RateLimiter
from headwater.ingest.settings_document import PlannedEvents, SourceConsent, settings_document
from headwater.ingest.sources import SourceCache
from headwater.observe.metrics import Metrics
from headwater.store.workspace import SourceInfo
from headwater.timestamps import format_timestamp

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

SINGLE_ROUTES = {
    "identify": "identify",
    "track": "track",
    "page": "page",
    "screen": "screen",
    "group": "group",
    "alias": "alias",
    # analytics.js posts to the first letter of the type.
    "i": "identify",
    "t": "track",
    "p": "page",
    "s": "screen",
    "g": "group",
    "a": "alias",
}
BATCH_ROUTES = {"batch", "b", "import"}
PIXEL_TYPES = {"identify", "track", "page", "screen", "group", "alias"}
MAX_BATCH_ITEMS = 2500
# The POST routes the hot routes' HTTP layer serves itself, with their body limits.
HOT_ROUTES = {
    **{f"/v1/{name}": SINGLE_LIMIT for name in SINGLE_ROUTES},
    **{f"/v1/{name}": BATCH_LIMIT for name in BATCH_ROUTES},
}

logger = logging.getLogger(__name__)

# What a client's bytes can make Python raise. Each is a gap in the checks above, answered 400
# rather than 500: the request is what is wrong, and retrying it cannot help.
_CLIENT_INPUT_ERRORS = (
    RecursionError,
    UnicodeError,
    OverflowError,
    ValueError,
    TypeError,
    msgspec.MsgspecError,
    zlib.error,
)

_encode = msgspec.json.encode
_SUCCESS = b'{"success":true}'
_JSON = (b"content-type", b"application/json")


class TrackingAPI:
    def __init__(
        self,
        *,
        sources: SourceCache,
        committer: GroupCommitter,
        settings: ServerSettings,
        metrics: Metrics,
        rate_limiter: RateLimiter | None = None,
        clock: Clock = time.time,
        planned_events: PlannedEvents | None = None,
        consent: SourceConsent | None = None,
    ) -> None:
        self._clock = clock
        self._consent = consent
        self._sources = sources
        self._planned_events = planned_events
        self._committer = committer
        self._settings = settings
        self._metrics = metrics
        self._rate_limiter = rate_limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = dict(scope["headers"])
        status, body, extra = await self._guarded(
            scope["method"], scope["path"], headers, self._handle(scope, receive, headers)
        )
        await _respond(send, status, body, extra)

    async def post(
        self, path: str, headers: dict[bytes, bytes], body: bytes, client_ip: str | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """A POST to a single or batch route whose body has been read whole: the entry of the
        hot routes' own HTTP layer (``headwater.hot_routes``). Same answers as ``__call__``."""

        async def read(limit: int) -> bytes:
            return accept_body(body, headers, limit)

        return await self._guarded(
            "POST", path, headers, self._post(path, headers, read, client_ip)
        )

    async def _guarded(
        self,
        method: str,
        path: str,
        headers: dict[bytes, bytes],
        answer: Awaitable[tuple[int, bytes, list[tuple[bytes, bytes]]]],
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        """``answer``'s response with CORS headers; a failure on the client's bytes is a 400
        and any other failure a JSON 500, never a dropped connection."""
        cors = _cors_headers(headers)
        try:
            status, body, extra = await answer
        except _CLIENT_INPUT_ERRORS as exc:
            # A gap in our checks: the client's bytes broke a step. Say so to the client (it
            # is its input) and leave a traceback for us; nothing of the request was stored.
            logger.exception("Tracking API: %s %s failed on the client's input", method, path)
            status, extra = 400, []
            body = _error(
                "bad_request",
                "The request could not be processed "
                f"({type(exc).__name__}: {_short(exc)}); nothing of it was stored.",
            )
        except Exception:
            logger.exception("Tracking API: %s %s failed", method, path)
            status, extra = 500, []
            body = _error(
                "server_error", "The server failed; nothing of the request was stored. Retry later."
            )
        return status, body, cors + extra

    async def _handle(
        self, scope: Scope, receive: Receive, headers: dict[bytes, bytes]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        method = scope["method"]
        name = scope["path"][4:]  # after "/v1/"
        if method == "OPTIONS":
            return 204, b"", _preflight_headers(headers)
        if method == "POST":
            if name in SINGLE_ROUTES or name in BATCH_ROUTES:
                client = scope.get("client")

                async def read(limit: int) -> bytes:
                    return await read_body(receive, headers, limit)

                return await self._post(scope["path"], headers, read, client[0] if client else None)
            if name == "m":  # analytics.js's own telemetry: accepted and ignored
                return 200, _SUCCESS, []
        elif method == "GET":
            if name.startswith("pixel/"):
                await self._pixel(scope, name[6:])
                return 200, GIF, [(b"content-type", b"image/gif"), (b"cache-control", b"no-store")]
            if name.startswith("projects/") and name.endswith("/settings"):
                return self._settings_document(name[9:-9])
        return (
            404,
            _error("not_found", f"There is no Tracking API route {method} {scope['path']}."),
            [],
        )

    async def _post(
        self,
        path: str,
        headers: dict[bytes, bytes],
        read: Callable[[int], Awaitable[bytes]],
        client_ip: str | None,
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        name = path[4:]
        if name not in SINGLE_ROUTES and name not in BATCH_ROUTES:
            return 404, _error("not_found", f"There is no Tracking API route POST {path}."), []
        status, body, extra = await self._ingest(read, headers, SINGLE_ROUTES.get(name), client_ip)
        self._metrics.request(status)
        return status, body, extra

    # --- ingest -------------------------------------------------------------------------------

    async def _ingest(
        self,
        read: Callable[[int], Awaitable[bytes]],
        headers: dict[bytes, bytes],
        route_type: str | None,
        client_ip: str | None,
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        received_at = datetime.fromtimestamp(self._clock(), UTC)
        limit = SINGLE_LIMIT if route_type is not None else BATCH_LIMIT
        sizes: list[int] | None = None
        try:
            raw = await read(limit)
            if route_type is None:
                body, sizes = decode_batch(raw)
            else:
                body = decode_json(raw, MAX_DEPTH)
        except BodyError as exc:
            return 400, _error(exc.code, exc.message), []
        if not isinstance(body, dict):
            return 400, _error("invalid_json", "The body must be a JSON object."), []

        write_key = write_key_from_header(headers.get(b"authorization")) or write_key_from_body(
            body
        )
        if write_key is None:
            return (
                400,
                _error(
                    "missing_write_key",
                    "No write key: send it as the HTTP Basic user name or as "
                    '"writeKey" in the body.',
                ),
                [],
            )
        source = self._sources.lookup(write_key)
        if source is None:
            return (
                401,
                _error(
                    "unknown_write_key",
                    "No source has this write key. Copy the write key from the source's settings "
                    "(GET /api/v1/sources) into your SDK's configuration.",
                ),
                [],
            )

        request = RequestInfo(
            received_at=received_at,
            received_at_iso=format_timestamp(received_at),
            client_ip=client_ip,
            batch_context=_object_or_none(body.get("context")) if route_type is None else None,
            batch_integrations=(
                _object_or_none(body.get("integrations")) if route_type is None else None
            ),
            batch_sent_at=body.get("sentAt") if route_type is None else None,
        )
        submission = Submission(
            workspace_id=source.workspace_id,
            source_id=source.id,
            received_at=request.received_at_iso,
            events=[],
            dropped=[],
        )
        if route_type is None:
            count = self._collect_batch(body, sizes, request, source, submission)
        else:
            count = 1
            self._collect(body, request, route_type, source, submission)

        if self._rate_limiter is not None and count:
            wait = self._rate_limiter.admit(source.workspace_id, count)
            if wait:
                seconds = str(wait).encode()
                return (
                    429,
                    _error(
                        "too_many_requests",
                        "The workspace is over its ingest rate limit; "
                        "retry after the given seconds.",
                    ),
                    [(b"retry-after", seconds), (b"x-ratelimit-reset", seconds)],
                )

        metrics = self._metrics
        metrics.received.inc(count)
        for entry in submission.dropped:
            metrics.rejected.labels(entry["reason"]).inc()
        try:
            await self._committer.submit(submission)
        except UnstorableSubmission as exc:
            return (
                400,
                _error(
                    "bad_request",
                    f"The request's messages cannot be stored ({exc}); nothing of it was stored.",
                ),
                [],
            )
        except LogUnavailable:
            return (
                503,
                _error(
                    "unavailable",
                    "The event log cannot take writes right now; nothing was stored. Retry later.",
                ),
                [(b"retry-after", b"5")],
            )
        return 200, _SUCCESS, []

    def _collect_batch(
        self,
        body: dict[str, Any],
        sizes: list[int] | None,
        request: RequestInfo,
        source: SourceInfo,
        sub: Submission,
    ) -> int:
        """Normalise a batch's items into ``sub``; return how many messages it carried.
        ``sizes``: each item's JSON length as sent, when ``decode_batch`` knew them."""
        items = body.get("batch")
        if not isinstance(items, list):
            body.pop("writeKey", None)
            _drop(sub, reasons.BAD_REQUEST, '"batch" must be an array of messages.', body)
            return 1
        if not items:
            _drop(sub, reasons.EMPTY_BATCH, "The batch contained no messages.", {"batch": []})
            return 1
        for index, item in enumerate(items):
            if index >= MAX_BATCH_ITEMS:
                _drop(
                    sub,
                    reasons.TOO_MANY_MESSAGES,
                    f"Only the first {MAX_BATCH_ITEMS} messages of a batch are accepted.",
                    item,
                )
            else:
                self._collect(item, request, None, source, sub, sizes[index] if sizes else None)
        if sub.dropped:
            sub.flags.append(reasons.MULTI_USER_ERROR if sub.events else reasons.EMPTY_BATCH_RESULT)
        return len(items)

    def _collect(
        self,
        item: Any,
        request: RequestInfo,
        route_type: str | None,
        source: SourceInfo,
        sub: Submission,
        size: int | None = None,
    ) -> None:
        if not source.enabled:
            _drop(sub, reasons.SOURCE_DISABLED, "The source is disabled.", item)
            return
        result = normalize(item, request, route_type=route_type, sent_size=size)
        if isinstance(result, Discard):
            _drop(sub, result.code, result.detail, item)
        else:
            sub.events.append(result)

    # --- pixel and settings -------------------------------------------------------------------

    async def _pixel(self, scope: Scope, pixel_type: str) -> None:
        """Ingest the pixel's message if it has one; the GIF goes out whatever happens."""
        if pixel_type not in PIXEL_TYPES:
            return
        try:
            await self._pixel_message(scope, pixel_type)
        except _CLIENT_INPUT_ERRORS:
            logger.exception("Tracking API: a pixel failed on the client's input")

    async def _pixel_message(self, scope: Scope, pixel_type: str) -> None:
        message = pixel_message(scope.get("query_string", b""))
        if message is None:
            return
        key = message.get("writeKey")
        source = self._sources.lookup(key) if isinstance(key, str) else None
        if source is None:
            self._metrics.request(401)
            return
        received_at = datetime.fromtimestamp(self._clock(), UTC)
        client = scope.get("client")
        request = RequestInfo(
            received_at=received_at,
            received_at_iso=format_timestamp(received_at),
            client_ip=client[0] if client else None,
        )
        sub = Submission(source.workspace_id, source.id, request.received_at_iso, [], [])
        self._collect(message, request, pixel_type, source, sub)
        self._metrics.received.inc()
        try:
            await self._committer.submit(sub)
        except UnstorableSubmission:
            self._metrics.request(400)
            return
        except LogUnavailable:
            self._metrics.request(503)
            return
        self._metrics.request(200)

    def _settings_document(self, write_key: str) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        source = self._sources.lookup(write_key)
        if source is None:
            return 404, _error("unknown_write_key", "No source has this write key."), []
        planned = self._planned_events.of(source.id) if self._planned_events else None
        consent = self._consent.of(source.id) if self._consent else None
        document = settings_document(write_key, self._settings.base_url, planned, consent)
        return 200, _encode(document), [(b"cache-control", b"public, max-age=60")]


def _drop(sub: Submission, code: str, detail: str, item: Any) -> None:
    if isinstance(item, dict):
        item.pop("writeKey", None)  # write keys never land in stored messages
    sub.dropped.append({"reason": code, "detail": detail, "message": item})


def _object_or_none(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "…"


def _error(code: str, message: str) -> bytes:
    return _encode({"code": code, "message": message})


def _cors_headers(headers: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    origin = headers.get(b"origin")
    if origin is None:
        return [(b"access-control-allow-origin", b"*")]
    return [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]


def _preflight_headers(headers: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    requested = headers.get(b"access-control-request-headers")
    return [
        (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
        (
            b"access-control-allow-headers",
            requested or b"Content-Type, Authorization, Content-Encoding",
        ),
        (b"access-control-max-age", b"86400"),
    ]


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    content_type = [] if any(h[0] == b"content-type" for h in headers) or not body else [_JSON]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*headers, *content_type, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
