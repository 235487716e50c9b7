"""Partner ("subscription webhook") destinations: the request Segment's partners receive.

Each message is POSTed as JSON to the partner's endpoint, with the customer's API key as
``Authorization: Basic base64("<api key>:")`` and ``User-Agent: Segment.io/1.0`` (Segment's
"Building a Subscription Webhook" guide); ``type`` is renamed as the partner names it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence

import msgspec

from headwater.destinations.definition import Message, Outgoing, Rendered, Request
from headwater.errors import MessageRejected


def subscription_request(
    message: Message, endpoint: str, api_key: str | None, types: Mapping[str, str]
) -> Request:
    """One message as Segment's subscription webhooks send it, ``type`` renamed by ``types``."""
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in types:
        raise MessageRejected(f"this destination takes {', '.join(types)} calls, not {kind!r}")
    headers = {"Content-Type": "application/json", "User-Agent": "Segment.io/1.0"}
    if api_key:
        token = base64.b64encode(f"{api_key}:".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    body = msgspec.json.encode({**message, "type": types[kind]})
    return Request("POST", endpoint, headers, body)


def render_each(
    messages: Sequence[Message], endpoint: str, api_key: str | None, types: Mapping[str, str]
) -> Rendered:
    """One request per message."""
    return Rendered(
        outgoing=[
            Outgoing(subscription_request(m, endpoint, api_key, types), (i,))
            for i, m in enumerate(messages)
        ]
    )
