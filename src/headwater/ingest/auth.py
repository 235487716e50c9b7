"""Finding the write key of a Tracking API request.

Segment accepts the write key as HTTP Basic user name (``key:`` and, for backward
compatibility, bare ``key``), or in the JSON body — top level, or inside batch items as
analytics.js leaves it. The header wins, then the body, then the first batch item that has one.
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from typing import Any


def write_key_from_header(authorization: bytes | None) -> str | None:
    if not authorization:
        return None
    scheme, _, credentials = authorization.strip().partition(b" ")
    if scheme.lower() != b"basic" or not credentials:
        return None
    try:
        decoded = b64decode(credentials.strip(), validate=False).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    key = decoded.split(":", 1)[0]
    return key or None


def write_key_from_body(body: dict[str, Any]) -> str | None:
    key = body.get("writeKey")
    if isinstance(key, str) and key:
        return key
    batch = body.get("batch")
    if isinstance(batch, list):
        for item in batch:
            if isinstance(item, dict):
                key = item.get("writeKey")
                if isinstance(key, str) and key:
                    return key
    return None
