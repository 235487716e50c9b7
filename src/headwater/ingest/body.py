"""Reading a Tracking API request body within Segment's size limits.

Segment answers 400 when a single call is over 32 KB or a batch over 500 KB (KB = 1024 bytes,
as in its client libraries). Limits apply to the JSON as sent, after gzip is undone; a gzip
body is inflated with a cap so that a small compressed body cannot expand without bound.

A message may nest objects and arrays at most ``MAX_DEPTH`` levels deep. Every later stage
(normalising, filters, mappings, warehouse columns) walks messages recursively, so a limit
here keeps a hostile body from reaching any of them.
"""

from __future__ import annotations

import zlib
from typing import Any

import msgspec

from headwater.errors import BodyError

SINGLE_LIMIT = 32 * 1024
BATCH_LIMIT = 500 * 1024
MAX_DEPTH = 100
BATCH_DEPTH = MAX_DEPTH + 2  # the batch object and its array hold the messages

_decode = msgspec.json.decode
_decode_members = msgspec.json.Decoder(dict[str, msgspec.Raw]).decode
_decode_items = msgspec.json.Decoder(list[msgspec.Raw]).decode
# For the nesting check: brackets of one kind, quotes, and nothing else.
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')


async def read_body(receive: Any, headers: dict[bytes, bytes], limit: int) -> bytes:
    """The request body from ASGI ``receive``, as ``accept_body`` returns it."""
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
    return accept_body(b"".join(chunks), headers, limit)


def accept_body(body: bytes, headers: dict[bytes, bytes], limit: int) -> bytes:
    """A body read whole, inflated if gzip-encoded; BodyError if it is over ``limit``."""
    if len(body) > limit:
        raise _too_large(limit)
    encoding = headers.get(b"content-encoding", b"").strip().lower()
    if encoding in (b"", b"identity"):
        return body
    if encoding in (b"gzip", b"x-gzip", b"deflate"):
        return _inflate(body, encoding, limit)
    raise BodyError(
        "bad_request",
        f"Content-Encoding {encoding.decode(errors='replace')!r} is not supported; "
        "send gzip or no encoding.",
    )


def decode_json(raw: bytes, depth: int = MAX_DEPTH) -> Any:
    """The decoded body; BodyError (``invalid_json``) if it is not JSON or nests too deep."""
    try:
        value = _decode(raw)
    except RecursionError:  # msgspec gives up near Python's recursion limit
        raise BodyError("invalid_json", _too_deep_message()) from None
    except msgspec.DecodeError as exc:
        raise BodyError("invalid_json", f"The body is not valid JSON: {exc}.") from None
    if nested_deeper_than(raw, depth):
        raise BodyError("invalid_json", _too_deep_message())
    return value


def decode_batch(raw: bytes) -> tuple[Any, list[int] | None]:
    """``decode_json`` for a batch body, and the length of each message's JSON as sent
    (None unless ``"batch"`` is an array).

    The messages are decoded one by one from their own bytes: their lengths bound the
    per-message size without encoding each message again, and their bracket counts bound the
    body's nesting without scanning the whole body. Anything unusual (not an object, no
    array, broken JSON) takes ``decode_json``'s path, so every answer stays the same.
    """
    try:
        members = _decode_members(raw)
        batch = members.get("batch")
        if batch is None or bytes(memoryview(batch)[:1]) != b"[":
            return decode_json(raw, BATCH_DEPTH), None
        items: list[Any] = []
        sizes: list[int] = []
        body: dict[str, Any] = {}
        for key, value in members.items():
            if key == "batch":
                body[key] = items  # filled below, in the body's own key order
            elif _brackets(value) > BATCH_DEPTH - 1:
                return decode_json(raw, BATCH_DEPTH), None
            else:
                body[key] = _decode(value)
        for item in _decode_items(batch):
            text = bytes(item)  # one copy, for the counts and the decoding alike
            if text.count(b"[") + text.count(b"{") > BATCH_DEPTH - 2:
                return decode_json(raw, BATCH_DEPTH), None
            items.append(_decode(text))
            sizes.append(len(text))
    except (msgspec.DecodeError, RecursionError):
        return decode_json(raw, BATCH_DEPTH), None  # raises the body's error
    return body, sizes


def _brackets(value: msgspec.Raw) -> int:
    """An upper bound of a JSON value's nesting depth."""
    text = bytes(value)
    return text.count(b"[") + text.count(b"{")


def nested_deeper_than(raw: bytes, depth: int) -> bool:
    """Whether valid JSON text nests objects and arrays more than ``depth`` levels.

    Works on the bytes at C speed (a Python walk of the decoded value costs as much as the
    decoding): drop escaped quotes and backslashes, keep only brackets and quotes, cut the
    strings out, then peel the innermost empty pairs once per level.
    """
    if raw.count(b"[") + raw.count(b"{") <= depth:
        return False
    if b"\\" in raw:
        raw = raw.replace(b"\\\\", b"").replace(b'\\"', b"")
    # Adjacent quotes end one string and start the next (or are an empty string): dropping
    # them merges strings, which changes nothing outside them.
    brackets = raw.translate(_BRACKETS, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in brackets:
        brackets = b"".join(brackets.split(b'"')[::2])
    for _ in range(depth):
        if not brackets:
            return False
        brackets = brackets.replace(b"[]", b"")  # exactly one level: every innermost pair
    return bool(brackets)


def _too_deep_message() -> str:
    return (
        f"The body nests objects and arrays more than {MAX_DEPTH} levels deep (a message "
        f"itself is the first level); flatten it."
    )


def _inflate(body: bytes, encoding: bytes, limit: int) -> bytes:
    """Undo gzip (one or more members, as ``cat a.gz b.gz`` makes) or deflate, up to ``limit``."""
    name = encoding.decode()
    wbits = zlib.MAX_WBITS | 16 if encoding != b"deflate" else zlib.MAX_WBITS
    parts: list[bytes] = []
    size = 0
    rest = body
    while True:
        inflater = zlib.decompressobj(wbits)
        try:
            data = inflater.decompress(rest, limit - size + 1)
        except zlib.error as exc:
            raise _broken(name, f"{exc}") from None
        size += len(data)
        if size > limit:
            raise _too_large(limit)
        if not inflater.eof:
            raise _broken(name, "it ends before the compressed stream does (cut short?)")
        parts.append(data)
        rest = inflater.unused_data
        if not rest.strip(b"\0"):  # gzip(1) also ignores zero padding after the last member
            return b"".join(parts)
        if encoding == b"deflate" or not rest.startswith(b"\x1f\x8b"):
            raise _broken(name, f"{len(rest)} bytes follow the end of the compressed stream")


def _broken(name: str, why: str) -> BodyError:
    return BodyError(
        "bad_request",
        f"The {name} body is broken: {why}. Send the complete {name} data, or send the JSON "
        "without Content-Encoding.",
    )


def _too_large(limit: int) -> BodyError:
    kind = "batch" if limit == BATCH_LIMIT else "single call"
    return BodyError(
        "payload_too_large",
        f"The request is over the {limit // 1024} KB limit for a {kind}. "
        "Send fewer or smaller messages per request.",
    )
