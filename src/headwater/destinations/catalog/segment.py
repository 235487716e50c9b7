"""Segment: forward messages to a Segment-compatible Tracking API (Segment, or a Headwater).

Messages go in batches to ``POST {endpoint}/v1/batch`` as ``{"batch": [...]}``, with HTTP
Basic auth whose user name is the receiving source's write key and whose password is empty.
Segment's HTTP API limits hold: at most 500 KB per request (taken as 500,000 bytes, so both
readings of "KB" are met), 32 KB per message (32,768 bytes, as Segment's libraries count it;
a bigger message is rejected, not sent to be dropped), 2,500 messages per request.

Messages keep their ``messageId`` (so the receiver deduplicates replays) and their
``timestamp``; what the receiver sets itself is left out: ``receivedAt``, ``version``, and the
inputs of its clock-skew correction, ``originalTimestamp`` and ``sentAt``. With no ``sentAt``
the receiver corrects nothing and takes ``timestamp`` as the event time, so the stored,
already corrected time arrives unchanged. (Sending ``sentAt`` = now would shift it by our
latency and the clocks' difference.)
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Final

import msgspec
from pydantic import Field, HttpUrl

from headwater import __version__
from headwater.destinations.definition import (
    Batching,
    DestinationDefinition,
    DestinationSettings,
    Message,
    Outgoing,
    Rendered,
    Request,
)
from headwater.errors import InvalidSettings

MAX_BATCH_BYTES: Final = 500_000
MAX_MESSAGE_BYTES: Final = 32 * 1024
MAX_BATCH_MESSAGES: Final = 2500
MAX_REGULATION_IDS: Final = 5000  # the Public API's limit a call
# Set by the receiving Tracking API, or inputs of its timestamp correction (see above);
# writeKey / projectId would name our source, not the receiver's.
STRIPPED: Final = frozenset(
    {"receivedAt", "sentAt", "originalTimestamp", "version", "writeKey", "projectId"}
)

_encode = msgspec.json.Encoder().encode
_OPEN: Final = b'{"batch":['
_CLOSE: Final = b"]}"


class SegmentSettings(DestinationSettings):
    write_key: str = Field(min_length=1)
    # Segment's EU workspaces: https://events.eu1.segmentapis.com
    endpoint: HttpUrl = HttpUrl("https://api.segment.io")
    # Deletions go on as regulations of the receiving workspace's Public API (Segment's, or a
    # Headwater's ``…/api/v1``): needed only to forward them.
    public_api_token: str | None = Field(default=None, min_length=1)
    public_api_endpoint: HttpUrl = HttpUrl("https://api.segmentapis.com")

    def url(self) -> str:
        return f"{str(self.endpoint).rstrip('/')}/v1/batch"


def forwarded(message: Message) -> Message:
    """The message as it is sent on: the receiver's own fields left out."""
    return {k: v for k, v in message.items() if k not in STRIPPED}


def render(messages: Sequence[Message], settings: SegmentSettings) -> Rendered:
    rendered = Rendered()
    token = base64.b64encode(f"{settings.write_key}:".encode()).decode()
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Basic {token}",
        "User-Agent": f"headwater/{__version__}",
    }
    url = settings.url()
    batch: list[tuple[int, bytes]] = []
    size = len(_OPEN) + len(_CLOSE)

    def flush() -> None:
        body = _OPEN + b",".join(item for _, item in batch) + _CLOSE
        rendered.outgoing.append(
            Outgoing(Request("POST", url, headers, body), tuple(p for p, _ in batch))
        )

    for position, message in enumerate(messages):
        item = _encode(forwarded(message))
        if len(item) > MAX_MESSAGE_BYTES:
            rendered.reject(
                position,
                f"the message is {len(item)} bytes of JSON; the Tracking "
                f"API takes at most {MAX_MESSAGE_BYTES}",
            )
            continue
        added = len(item) + (1 if batch else 0)
        if batch and (len(batch) == MAX_BATCH_MESSAGES or size + added > MAX_BATCH_BYTES):
            flush()
            batch, size = [], len(_OPEN) + len(_CLOSE)
            added = len(item)
        batch.append((position, item))
        size += added
    if batch:
        flush()
    return rendered


def delete(user_ids: Sequence[str], settings: SegmentSettings) -> list[Request]:
    """A regulation's user ids as ``DELETE_ONLY`` regulations of the receiving workspace: it
    deletes what it received, and its own destinations are asked in turn."""
    if settings.public_api_token is None:
        raise InvalidSettings(
            "forwarding a deletion needs the receiving workspace's Public API token: add "
            "public_api_token to this destination's settings"
        )
    url = f"{str(settings.public_api_endpoint).rstrip('/')}/regulations"
    headers = {
        "Content-Type": "application/json",
        "Authorization": f"Bearer {settings.public_api_token}",
    }
    return [
        Request(
            "POST",
            url,
            headers,
            msgspec.json.encode(
                {
                    "regulationType": "DELETE_ONLY",
                    "subjectType": "USER_ID",
                    "subjectIds": list(user_ids[i : i + MAX_REGULATION_IDS]),
                }
            ),
            secret_headers=frozenset({"Authorization"}),
        )
        for i in range(0, len(user_ids), MAX_REGULATION_IDS)
    ]


DEFINITION = DestinationDefinition(
    type="segment",
    name="Segment",
    metadata_id="6371eee1ae5e324869aa8b1b",
    slug="actions-segment",
    # Segment's own catalog name for this destination; "Segment.io" is a reserved key.
    aliases=("Segment Connections",),
    settings=SegmentSettings,
    render=render,
    secrets=frozenset({"write_key", "public_api_token"}),
    batching=Batching(
        max_events=MAX_BATCH_MESSAGES, max_bytes=MAX_BATCH_BYTES, max_wait_seconds=1.0
    ),
    delete=delete,
    description="Forward every message to a source of Segment or of another Headwater.",
)
