"""The Pixel API: ``GET /v1/pixel/{type}`` for places that can only load an image (email).

The message comes either as ``?data=<base64 JSON>`` or as plain query parameters whose dotted
names build the object (``properties.subject=Hi&writeKey=…``). The response is always a 1×1
transparent GIF with status 200, even when the message is unusable.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import parse_qsl

from headwater.errors import BodyError
from headwater.ingest.body import MAX_DEPTH, decode_json

# The smallest transparent 1×1 GIF89a.
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")


def pixel_message(query_string: bytes) -> dict[str, Any] | None:
    """The message a pixel request carries, or None when there is none to ingest."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    params = dict(pairs)
    if "data" in params:
        return _decode_data(params["data"])
    message: dict[str, Any] = {}
    for name, value in pairs:
        target = message
        *parents, leaf = name.split(".")
        if len(parents) >= MAX_DEPTH:  # nested as deep as the body of a POST may be
            return None
        for part in parents:
            child = target.get(part)
            if not isinstance(child, dict):
                child = target[part] = {}
            target = child
        target[leaf] = value
    return message or None


def _decode_data(data: str) -> dict[str, Any] | None:
    raw = data.strip().replace(" ", "+")  # '+' may arrive as a space after URL decoding
    raw += "=" * (-len(raw) % 4)
    try:
        decoded = (
            base64.urlsafe_b64decode(raw) if "-" in raw or "_" in raw else base64.b64decode(raw)
        )
        message = decode_json(decoded)
    except (binascii.Error, ValueError, BodyError):
        return None
    return message if isinstance(message, dict) else None
