"""The sandbox protocol's encoding: one JSON object per line, UTF-8, over stdin/stdout.

JSON lines rather than length-prefixed frames: a worker in any language reads them with its
standard library, and a line is never split by a payload because JSON escapes newlines.
msgspec encodes and decodes them several times faster than the standard ``json``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec


def _plain(value: Any) -> Any:
    """msgspec's hook for Mappings and Sequences that are not dicts and lists (settings)."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    raise TypeError(f"cannot send {type(value).__name__} to a function's sandbox")


_encoder = msgspec.json.Encoder(enc_hook=_plain)
_decoder = msgspec.json.Decoder()


def encode(message: Mapping[str, Any]) -> bytes:
    """One message as one line, newline included."""
    buffer = bytearray()
    _encoder.encode_into(message, buffer)
    buffer += b"\n"
    return bytes(buffer)


def encode_many(messages: Sequence[Mapping[str, Any]]) -> bytes:
    """Several messages in one write: a batch costs one pipe round trip."""
    buffer = bytearray()
    for message in messages:
        _encoder.encode_into(message, buffer, len(buffer))
        buffer += b"\n"
    return bytes(buffer)


def decode(line: bytes) -> dict[str, Any]:
    """One line from a worker; a ValueError when it is not a JSON object."""
    try:
        message = _decoder.decode(line)
    except msgspec.DecodeError as error:
        raise ValueError(f"not a JSON line: {line[:200]!r}") from error
    if not isinstance(message, dict):
        raise ValueError(f"not a JSON object: {line[:200]!r}")
    return message
