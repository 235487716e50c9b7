"""Webhooks (Actions): each mapping sends its own request, built by the mapping kit.

As Segment's Webhooks (Actions) destination: ``send`` makes one request per event and
``send-batch`` one per up to ``batch_size`` events (a JSON array of the mapped ``data``), to the
mapping's URL with its method and headers. Keys of ``data`` may be destination-field paths
(``info[0].email``). With a shared secret, ``X-Signature`` carries the hex HMAC-SHA1 of the
body, as the classic Webhooks destination does. Header values in a mapping are secrets (API
keys, tokens): shown as ``[redacted]`` by the API, exports and Event Delivery samples.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec

from headwater.destinations.actions import ActionDefinition
from headwater.destinations.definition import (
    DestinationDefinition,
    DestinationSettings,
    Outgoing,
    Rendered,
    Request,
)
from headwater.destinations.mapping import FieldSpec

DEFAULT_BATCH_SIZE = 1000
MAX_BATCH_SIZE = 4000


class WebhookActionsSettings(DestinationSettings):
    shared_secret: str | None = None


_FIELDS = {
    "url": FieldSpec("string", required=True, description="Where the request goes."),
    "method": FieldSpec(
        "string",
        required=False,
        choices=("POST", "PUT", "PATCH"),
        description="The HTTP method; POST when not mapped.",
    ),
    "headers": FieldSpec("object", required=False, description="Extra request headers."),
    "data": FieldSpec("object", required=False, description="The request body."),
}
_BATCH_FIELDS = {
    **_FIELDS,
    "batch_size": FieldSpec(
        "integer",
        required=False,
        description=f"Events per request (up to {MAX_BATCH_SIZE}; "
        f"{DEFAULT_BATCH_SIZE} when not mapped).",
    ),
}


def _request(payload: Mapping[str, Any], body: bytes, settings: WebhookActionsSettings) -> Request:
    headers = {"User-Agent": "Segment (Actions)", "Content-Type": "application/json"}
    extra = payload.get("headers")
    mapped: dict[str, str] = {}
    if isinstance(extra, Mapping):
        mapped = {str(k): str(v) for k, v in extra.items()}
        headers.update(mapped)
    if settings.shared_secret:
        headers["X-Signature"] = hmac.new(
            settings.shared_secret.encode(), body, hashlib.sha1
        ).hexdigest()
    return Request(
        str(payload.get("method") or "POST"),
        str(payload["url"]),
        headers,
        body,
        secret_headers=frozenset(mapped),
    )


def send(payloads: Sequence[Mapping[str, Any]], settings: WebhookActionsSettings) -> Rendered:
    return Rendered(
        outgoing=[
            Outgoing(_request(p, msgspec.json.encode(p.get("data", {})), settings), (i,))
            for i, p in enumerate(payloads)
        ]
    )


def send_batch(payloads: Sequence[Mapping[str, Any]], settings: WebhookActionsSettings) -> Rendered:
    """Payloads that share a URL, method and headers go together, ``batch_size`` at a time."""
    groups: dict[bytes, list[int]] = {}
    for i, p in enumerate(payloads):
        key = msgspec.json.encode([p["url"], p.get("method") or "POST", p.get("headers") or {}])
        groups.setdefault(key, []).append(i)
    rendered = Rendered()
    for members in groups.values():
        first = payloads[members[0]]
        size = first.get("batch_size") or DEFAULT_BATCH_SIZE
        size = max(1, min(int(size), MAX_BATCH_SIZE))
        for start in range(0, len(members), size):
            chunk = members[start : start + size]
            body = msgspec.json.encode([payloads[i].get("data", {}) for i in chunk])
            rendered.outgoing.append(Outgoing(_request(first, body, settings), tuple(chunk)))
    return rendered


DEFINITION = DestinationDefinition(
    type="webhook-actions",
    name="Webhooks (Actions)",
    metadata_id="614a3c7d791c91c41bae7599",
    slug="actions-webhook",
    settings=WebhookActionsSettings,
    secrets=frozenset({"shared_secret"}),
    timeout_seconds=5.0,
    description="Send mapped data to your own HTTP endpoints, one event or a batch at a time.",
    actions={
        "send": ActionDefinition(
            "send",
            "Send",
            _FIELDS,
            send,
            description="One request per event.",
            keyed_fields=frozenset({"data"}),
            secret_fields=frozenset({"headers"}),
        ),
        "send-batch": ActionDefinition(
            "send-batch",
            "Send Batch",
            _BATCH_FIELDS,
            send_batch,
            description="One request per batch: a JSON array of the events' data.",
            batch_size_field="batch_size",
            keyed_fields=frozenset({"data"}),
            secret_fields=frozenset({"headers"}),
        ),
    },
)
