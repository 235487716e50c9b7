"""Reading a Tracking API request body within Segment's size limits.

Segment answers 400 when a single call is over 32 KB or a batch over 500 KB (KB = 1024 bytes,
as in its client libraries). Limits apply to the JSON as sent, after gzip is undone; a gzip
body is inflated with a cap so that a small compressed body cannot expand without bound.
"""

from __future__ import annotations

import zlib
from typing import Any

from headwater.errors import BodyError

SINGLE_LIMIT = 32 * 1024
BATCH_LIMIT = 500 * 1024


async def read_body(receive: Any, headers: dict[bytes, bytes], limit: int) -> bytes:
    """The request body, inflated if gzip-encoded; BodyError if it is over ``limit``."""
    encoding = headers.get(b"content-encoding", b"").strip().lower()
    declared = headers.get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks: list[bytes] = []
    size = 0
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise BodyError("bad_request", "The client disconnected before sending the body.")
        chunk = message.get("body", b"")
        more = message.get("more_body", False)
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    body = b"".join(chunks)
    if encoding in (b"", b"identity"):
        return body
    if encoding in (b"gzip", b"x-gzip", b"deflate"):
        return _inflate(body, encoding, limit)
    raise BodyError(
        "bad_request", f"Content-Encoding {encoding.decode(errors='replace')!r} is not supported; "
        "send gzip or no encoding."
    )


def _inflate(body: bytes, encoding: bytes, limit: int) -> bytes:
    wbits = zlib.MAX_WBITS | 16 if encoding != b"deflate" else zlib.MAX_WBITS
    inflater = zlib.decompressobj(wbits)
    try:
        data = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BodyError("bad_request", f"The body is not valid {encoding.decode()}: {exc}") from exc
    if len(data) > limit:
        raise _too_large(limit)
    return data


def _too_large(limit: int) -> BodyError:
    kind = "batch" if limit == BATCH_LIMIT else "single call"
    return BodyError(
        "payload_too_large",
        f"The request is over the {limit // 1024} KB limit for a {kind}. "
        "Send fewer or smaller messages per request.",
    )
